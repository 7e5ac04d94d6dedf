"""Shared pieces of the monitoring tests: the promtool binary, or a clear skip."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from shipyard.stack.monitoring_rules import MONITORING_DIR

RULE_TESTS_DIR = MONITORING_DIR / "tests"


@pytest.fixture(scope="session")
def promtool() -> str:
    """Path of ``promtool`` (Debian package ``prometheus``; scripts/setup.sh installs it)."""
    found = shutil.which("promtool")
    if not found:
        pytest.skip("promtool is not installed (apt-get install prometheus, or scripts/setup.sh)")
    return found


def run_promtool(promtool: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """``promtool args...`` with its output captured; never raises on a non-zero exit."""
    return subprocess.run(
        [promtool, *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )
