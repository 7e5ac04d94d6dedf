"""CLI habits (issue 12, item 7), through the real ``shipyard`` entry point on the
session's real stack: the stack is found from any subdirectory, no temporary Prefect
server, one way to find the kubeconfig, image references refused locally with exit 2,
a missing namespace named at once, a user error inside a flow run as one line, and the
bridge and worker in ``stack status``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard.core.kube import KubeClient, api_client
from shipyard.stack import process, stack_status
from shipyard.stack.model import ServiceSpec, StackLayout, find_state_dir
from shipyard.stack.probes import http_ok
from tests.fixtures.services import Stack
from tests.tasks.k8s_objects import deployment

SHIPYARD = str(Path(sys.executable).parent / "shipyard")  # the installed entry point


def _clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a new shell: nothing of Shipyard, Prefect or a cluster set."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SHIPYARD_", "PREFECT_", "AWS_"))
        and k not in {"KUBECONFIG", "DOCKER_HOST"}
    }
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    env["HOME"] = str(tmp_path / "home")
    return {**env, **extra}


def _shipyard(
    *args: str, cwd: Path, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SHIPYARD, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.fixture
def project(stack: Stack, tmp_path: Path) -> Path:
    """A project whose ``.shipyard/`` is the session stack's state, and a subdirectory."""
    root = tmp_path / "project"
    (root / "docs" / "deep").mkdir(parents=True)
    (root / ".shipyard").symlink_to(stack.layout.root, target_is_directory=True)
    return root / "docs" / "deep"


# --- the stack is found by walking up ---------------------------------------------------


def test_state_dir_is_found_walking_up(tmp_path: Path) -> None:
    (tmp_path / "a" / ".git").mkdir(parents=True)
    (tmp_path / "a" / "b" / "c").mkdir(parents=True)
    # before any `stack up`: the top of the git work tree
    assert find_state_dir(tmp_path / "a" / "b" / "c") == tmp_path / "a" / ".shipyard"
    (tmp_path / "a" / "b" / ".shipyard").mkdir()
    assert find_state_dir(tmp_path / "a" / "b" / "c") == tmp_path / "a" / "b" / ".shipyard"
    assert find_state_dir(tmp_path / "x-none") == tmp_path / "x-none" / ".shipyard"


def test_status_check_and_verify_from_a_subdirectory(
    stack: Stack, project: Path, tmp_path: Path
) -> None:
    env = _clean_env(tmp_path)
    status = _shipyard("stack", "status", "--json", cwd=project, env=env)
    assert status.returncode == 0, status.stdout + status.stderr
    report = json.loads(status.stdout)
    assert report["healthy"] is True
    assert {"prefect", "registry", "s3", "git", "kube"} <= {s["name"] for s in report["services"]}

    check = _shipyard("check", "--json", cwd=project, env=env)
    assert check.returncode == 0, check.stderr
    assert {r["service"] for r in json.loads(check.stdout)} >= {"registry", "s3", "kubernetes"}

    namespace = f"sub-{uuid.uuid4().hex[:6]}"
    with api_client(stack.env["KUBECONFIG"]) as api:
        kube = KubeClient(api)
        kube.request("POST", "/api/v1/namespaces", {"metadata": {"name": namespace}})
        try:
            obj = deployment("web", namespace, "shop/web:1")
            kube.apply(kube.resource("apps/v1", "Deployment"), obj, "test")
            verify = _shipyard(
                "verify",
                "--namespace",
                namespace,
                "--workload",
                "deployment/web",
                "--timeout",
                "60",
                "--json",
                cwd=project,
                env=env,
            )
        finally:
            kube.request("DELETE", f"/api/v1/namespaces/{namespace}")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert json.loads(verify.stdout)["healthy"] is True


def test_check_outside_a_project_is_fast_and_one_line(tmp_path: Path) -> None:
    started = time.monotonic()
    result = _shipyard("check", cwd=tmp_path, env=_clean_env(tmp_path))
    seconds = time.monotonic() - started
    assert result.returncode == 2
    assert _one_line(result.stderr).startswith("shipyard: no stack found from ")
    assert seconds < 8, seconds  # no temporary Prefect server
    assert not (tmp_path / "prefect-home" / "prefect.db").exists()


# --- one kubeconfig rule ------------------------------------------------------------------


def test_verify_on_a_missing_namespace_fails_at_once_naming_it(
    project: Path, tmp_path: Path
) -> None:
    started = time.monotonic()
    result = _shipyard(
        "verify",
        "--namespace",
        "no-such-ns",
        "--workload",
        "deployment/web",
        "--timeout",
        "120",
        cwd=project,
        env=_clean_env(tmp_path),
    )
    assert time.monotonic() - started < 30
    assert result.returncode == 2, result.stdout + result.stderr
    assert "namespace 'no-such-ns' does not exist" in _one_line(result.stderr)


@pytest.fixture(scope="module")
def backed_up(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A bucket holding one backup, made by `shipyard backup` run from a project
    subdirectory without --kubeconfig (the stack's is found)."""
    from shipyard.core.s3 import s3_client

    tmp = tmp_path_factory.mktemp("backed-up")
    root = tmp / "project"
    (root / "sub").mkdir(parents=True)
    (root / ".shipyard").symlink_to(stack.layout.root, target_is_directory=True)
    bucket = f"habits-{uuid.uuid4().hex[:10]}"
    s3_client(stack.s3_endpoint).create_bucket(Bucket=bucket)
    backup = _shipyard(
        "backup",
        "--namespaces",
        "default",
        "--bucket",
        bucket,
        "--json",
        cwd=root / "sub",
        env=_clean_env(tmp, PREFECT_API_URL="http://127.0.0.1:1/api"),
        timeout=300,
    )
    assert backup.returncode == 0, backup.stderr
    assert json.loads(backup.stdout)["backup_id"]
    return bucket


def test_kubeconfig_flag_then_env_then_stack(
    stack: Stack, project: Path, tmp_path: Path, backed_up: str
) -> None:
    """`backup` and `verify` read the kubeconfig alike: flag > $KUBECONFIG > the stack's
    (the `backed_up` fixture ran `backup` without the flag, which it used to require)."""
    bad = str(tmp_path / "absent-kubeconfig")
    args = ["verify", "--namespace", "no-such-ns", "--workload", "deployment/web"]
    via_env = _shipyard(*args, cwd=project, env=_clean_env(tmp_path, KUBECONFIG=bad))
    assert "KUBECONFIG=" in _one_line(via_env.stderr) and via_env.returncode == 2
    via_flag = _shipyard(
        *args,
        "--kubeconfig",
        stack.env["KUBECONFIG"],
        cwd=project,
        env=_clean_env(tmp_path, KUBECONFIG=bad),
    )
    assert "namespace 'no-such-ns'" in _one_line(via_flag.stderr)  # reached the cluster
    backup = _shipyard(
        "backup",
        "--namespaces",
        "default",
        "--bucket",
        backed_up,
        cwd=project,
        env=_clean_env(tmp_path, KUBECONFIG=bad),
    )
    assert backup.returncode == 2 and "KUBECONFIG=" in _one_line(backup.stderr)


# --- image references are checked locally -----------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["scan", "not a ref!!"],
        ["scan", "127.0.0.1:5000/shop/cart:bad!tag"],
        ["scan", "127.0.0.1:5000/shop/cart@md5:abc"],
        ["push", "Shop/Cart", "--tag", "1"],
        ["push", "127.0.0.1:5000/shop/cart", "--tag", "no tags with spaces"],
        ["build", "--repo", "git://x/y", "--commit", "0" * 40, "--image", "Shop/Cart"],
    ],
)
def test_bad_image_references_exit_2(args: list[str], tmp_path: Path) -> None:
    started = time.monotonic()
    result = _shipyard(*args, cwd=tmp_path, env=_clean_env(tmp_path))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "invalid" in _one_line(result.stderr)
    assert time.monotonic() - started < 8  # decided locally: no trivy, no registry


# --- a user error inside a flow run -------------------------------------------------------


def test_user_error_inside_a_flow_run_is_one_line(
    stack: Stack, project: Path, tmp_path: Path, backed_up: str
) -> None:
    import httpx

    result = _shipyard(
        "restore-drill",
        "--bucket",
        backed_up,
        "--backup",
        "no-such-backup",
        cwd=project,
        env=_clean_env(tmp_path),
        timeout=300,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no-such-backup" in _one_line(result.stderr)
    runs = httpx.post(
        f"{stack.prefect_api_url}/flow_runs/filter",
        json={"flows": {"name": {"any_": ["restore-drill"]}}, "limit": 200},
    ).json()
    mine = [r for r in runs if r["parameters"].get("bucket") == backed_up]
    assert [r["state_type"] for r in mine] == ["FAILED"]  # it ran as a flow run


# --- stack status lists the bridge and the worker ----------------------------------------


@pytest.fixture
def dry_bridge(stack: Stack) -> Iterator[StackLayout]:
    """A dry-run bridge under the session stack's state dir, stopped afterwards (the
    platform fixture starts the real one only when no bridge answers)."""
    layout = stack.layout
    url = stack.env["SHIPYARD_BRIDGE_URL"]
    port = url.rsplit(":", 1)[1]
    spec = ServiceSpec(
        name="bridge",
        argv=[
            SHIPYARD,
            "bridge",
            "serve",
            "--port",
            port,
            "--dry-run",
            "--insecure-no-auth",
            "--spool-dir",
            str(layout.data_dir("bridge") / "spool"),
        ],
        health=lambda: http_ok(f"{url}/healthz"),
    )
    process.spawn(layout, spec)
    deadline = time.monotonic() + 60
    while not spec.health():
        assert time.monotonic() < deadline, process.tail(layout.log_file("bridge"))
        time.sleep(0.2)
    try:
        yield layout
    finally:
        process.stop(layout, "bridge")


def test_status_lists_bridge_and_worker(stack: Stack) -> None:
    report = stack_status(stack.layout)
    rows = {s.name: s for s in report.services}
    assert {"bridge", "worker"} <= rows.keys()
    if rows["bridge"].running is False:
        assert rows["bridge"].note.startswith("not started")
        assert report.healthy  # optional services that are not running are no failure


def test_status_shows_a_running_bridge(
    dry_bridge: StackLayout, project: Path, tmp_path: Path
) -> None:
    result = _shipyard("stack", "status", "--json", cwd=project, env=_clean_env(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {s["name"]: s for s in json.loads(result.stdout)["services"]}
    assert rows["bridge"]["running"] and rows["bridge"]["healthy"], rows["bridge"]
    assert rows["bridge"]["pid"] == process.read_pid(dry_bridge, "bridge")
    assert rows["worker"]["optional"] is True
