"""`shipyard stack`: real services come up healthy, `up` is idempotent, `down` leaves
no process behind, and problems are one clear line."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from shipyard.core.errors import ConfigError
from shipyard.stack import StackLayout, stack_down, stack_status, stack_up
from shipyard.stack.model import DEFAULT_PORTS
from shipyard.stack.runner import read_env_file
from shipyard.stack.services import require
from tests.fixtures.services import Stack

SHIPYARD = [sys.executable, "-m", "shipyard.cli.main"]


def test_session_stack_is_healthy_and_env_is_complete(stack: Stack) -> None:
    report = stack_status(stack.layout)
    assert report.healthy, report.to_dict()
    names = {s.name for s in report.services}
    assert {"prefect", "registry", "docker", "s3", "git"} <= names
    env = stack.env
    for key in ("PREFECT_API_URL", "DOCKER_HOST", "SHIPYARD_REGISTRY", "SHIPYARD_S3_ENDPOINT"):
        assert env[key]
    assert httpx.get(f"{env['PREFECT_API_URL']}/health").json() is True
    assert httpx.get(f"http://{env['SHIPYARD_REGISTRY']}/v2/").status_code == 200


def test_up_again_is_idempotent(stack: Stack) -> None:
    # `up` starts the stack's services; the bridge and worker (optional) are the demo's
    before = {s.name: s.pid for s in stack_status(stack.layout).services if not s.optional}
    report = stack_up(stack.layout)
    assert report.healthy
    assert {s.name: s.pid for s in report.services} == before
    assert report.seconds < 10


def test_status_cli_json(stack: Stack) -> None:
    result = subprocess.run(
        [*SHIPYARD, "stack", "status", "--state-dir", str(stack.layout.root), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["healthy"] is True
    assert {s["name"] for s in data["services"]} >= {"prefect", "registry", "s3"}


def test_status_of_a_stack_never_started(tmp_path: Path) -> None:
    result = subprocess.run(
        [*SHIPYARD, "stack", "status", "--state-dir", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"shipyard: no stack at {tmp_path / 'none'}: run 'shipyard stack up' in the project "
        "(or pass --state-dir)"
    ]


def test_port_taken_is_a_clear_error_and_starts_nothing(tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        layout = StackLayout(tmp_path / "st")
        ports = dict.fromkeys(DEFAULT_PORTS, 0)
        ports["prefect"] = taken
        with pytest.raises(ConfigError, match=f"port {taken} for prefect is taken"):
            stack_up(layout, ports=ports)
    assert not any(layout.root.glob("run/*.pid"))


def test_missing_program_names_the_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="apt-get install -y docker-registry"):
        require("docker-registry")


def test_cli_error_is_one_line_exit_2(tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        env = {**os.environ, "SHIPYARD_PORT_PREFECT": str(blocker.getsockname()[1])}
        for name in DEFAULT_PORTS:
            if name != "prefect":
                env[f"SHIPYARD_PORT_{name.upper()}"] = "0"
        result = subprocess.run(
            [*SHIPYARD, "stack", "up", "--state-dir", str(tmp_path / "st")],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("shipyard: port "), result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_down_leaves_no_process_behind(tmp_path: Path) -> None:
    layout = StackLayout(tmp_path / "st")
    report = stack_up(layout, ports=dict.fromkeys(DEFAULT_PORTS, 0))
    assert report.healthy
    pids = [s.pid for s in report.services if s.pid]
    assert len(pids) >= 5
    env = read_env_file(layout)
    down = stack_down(layout)
    assert {s.name for s in down.services if s.note == "stopped"} >= {"prefect", "registry", "s3"}
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{env['PREFECT_API_URL']}/health", timeout=1)
    assert not layout.env_file.exists()
    assert stack_down(layout).services  # down twice is fine
