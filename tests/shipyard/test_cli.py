"""Every command has --help; unknown input is one line and exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import typer.main

from shipyard.cli.main import build_app
from tests.fixtures.services import Stack

SHIPYARD = [sys.executable, "-m", "shipyard.cli.main"]


def _command_paths() -> list[list[str]]:
    root = typer.main.get_command(build_app())
    paths: list[list[str]] = []

    def walk(cmd: Any, prefix: list[str]) -> None:
        paths.append(prefix)
        # typer vendors its own click; a group is anything with sub-commands.
        if isinstance(getattr(cmd, "commands", None), dict):
            for name, sub in cmd.commands.items():
                walk(sub, [*prefix, name])

    walk(root, [])
    return paths


def test_every_command_has_help() -> None:
    paths = _command_paths()
    assert ["stack", "up"] in paths
    for path in paths:
        result = subprocess.run(
            [*SHIPYARD, *path, "--help"], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, (path, result.stderr)
        assert "Usage" in result.stdout


def test_unknown_command_exits_2() -> None:
    result = subprocess.run([*SHIPYARD, "nope"], capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def _check_env(stack: Stack, tmp_path: Path, prefect_api_url: str) -> dict[str, str]:
    """Only the registry and S3 named; no stack env file to fill in the rest."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHIPYARD_", "PREFECT_"))}
    env.pop("DOCKER_HOST", None)
    env.pop("KUBECONFIG", None)
    return {
        **env,
        "SHIPYARD_STATE_DIR": str(tmp_path / "no-stack"),
        "SHIPYARD_REGISTRY": stack.registry,
        "SHIPYARD_S3_ENDPOINT": stack.s3_endpoint,
        "PREFECT_API_URL": prefect_api_url,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
    }


def test_check_runs_directly_without_a_prefect_api(stack: Stack, tmp_path: Path) -> None:
    started = time.monotonic()
    result = subprocess.run(
        [*SHIPYARD, "check", "--json"],
        env=_check_env(stack, tmp_path, "http://127.0.0.1:1/api"),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert {r["service"]: r["ok"] for r in json.loads(result.stdout)} == {
        "registry": True,
        "s3": True,
    }
    assert time.monotonic() - started < 30  # no temporary Prefect server was started
    assert not (tmp_path / "prefect-home" / "prefect.db").exists()


def test_check_is_a_flow_run_when_prefect_answers(
    stack: Stack, prefect_api: str, tmp_path: Path
) -> None:
    result = subprocess.run(
        [*SHIPYARD, "check", "--json"],
        env=_check_env(stack, tmp_path, prefect_api),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # run logs go to the API, not the terminal
    assert [r["service"] for r in json.loads(result.stdout)] == ["registry", "s3"]
    runs = httpx.post(
        f"{prefect_api}/flow_runs/filter",
        json={"flows": {"name": {"any_": ["check-stack"]}}, "limit": 50},
    ).json()
    assert any(
        r["parameters"].get("addresses") == {"registry": stack.registry, "s3": stack.s3_endpoint}
        for r in runs
    )


def test_a_failed_check_is_one_line(stack: Stack, tmp_path: Path) -> None:
    env = {
        **_check_env(stack, tmp_path, "http://127.0.0.1:1/api"),
        "SHIPYARD_REGISTRY": "127.0.0.1:1",
    }
    result = subprocess.run(
        [*SHIPYARD, "check"], env=env, capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == "shipyard: services not answering: registry"
