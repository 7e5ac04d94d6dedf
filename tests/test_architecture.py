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


def _task_functions(path: Path) -> list[tuple[str, int]]:
    """(name, body statements without the docstring) of every ``@task`` in ``path``."""
    import ast

    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        names = {
            getattr(getattr(d, "func", d), "id", None) or getattr(getattr(d, "func", d), "attr", "")
            for d in node.decorator_list
        }
        if "task" not in names:
            continue
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body = body[1:]
        found.append((node.name, len(body)))
    return found


def test_task_wrappers_are_thin_and_all_in_tasks_steps() -> None:
    """Every ``@task`` sits in tasks/steps and only hands over to its core (<= 3 lines)."""
    steps = ROOT / "tasks" / "steps"
    wrappers = [w for p in sorted(steps.glob("*.py")) for w in _task_functions(p)]
    assert len(wrappers) >= 25, wrappers
    fat = [(name, n) for name, n in wrappers if n > 3]
    assert not fat, f"task wrappers longer than 3 statements: {fat}"
    elsewhere = [
        f"{p.relative_to(ROOT)}:{name}"
        for folder in ("tasks", "flows")
        for p in sorted((ROOT / folder).rglob("*.py"))
        if steps not in p.parents
        for name, _ in _task_functions(p)
    ]
    assert not elsewhere, f"@task defined outside tasks/steps: {elsewhere}"
