"""The floors of docs/architecture.md hold at run time, not only in import-linter's graph.

A step's core and the foundation must be importable without Prefect: the CLI, the bridge
and anyone scripting a step pay for Prefect only when they run a flow. Each module is
imported in a fresh interpreter, because a module imported earlier in this test session
would hide a Prefect import behind ``sys.modules``.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _modules(package: str) -> list[str]:
    """Every module of ``package`` (a top-level folder or shipyard.core), steps excluded."""
    path = ROOT.joinpath(*package.split("."))
    names = [package]
    for info in pkgutil.walk_packages([str(path)], prefix=f"{package}."):
        if info.name == "tasks.steps" or info.name.startswith("tasks.steps."):
            continue  # the @task wrappers: the one place in tasks/ that imports Prefect
        names.append(info.name)
    return sorted(names)


CORE_MODULES = _modules("shipyard.core") + _modules("tasks")

PROBE = """
import importlib, sys
name = sys.argv[1]
importlib.import_module(name)
loaded = sorted(m for m in sys.modules if m == "prefect" or m.startswith("prefect."))
print(len(loaded))
"""


def test_the_list_of_core_modules_is_not_empty() -> None:
    assert "shipyard.core.errors" in CORE_MODULES
    assert "tasks.set_image" in CORE_MODULES
    assert not any(name.startswith("tasks.steps") for name in CORE_MODULES)


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_module_imports_without_prefect(module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, module],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0", f"importing {module} loads Prefect"


def test_simulator_is_a_separate_distribution() -> None:
    """Production packages do not ship the simulator; it has a pyproject of its own."""
    assert not (ROOT / "simcluster").exists()
    assert (ROOT / "packages" / "simcluster" / "pyproject.toml").is_file()
    import simcluster

    assert Path(simcluster.__file__).resolve().is_relative_to(ROOT / "packages" / "simcluster")
