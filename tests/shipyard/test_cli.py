"""Every command has --help; unknown input is one line and exit 2."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import typer.main

from shipyard.cli.main import build_app

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
