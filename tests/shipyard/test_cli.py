"""Every command has --help; unknown input is one line and exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import typer.main

from shipyard.cli.main import build_app
from tests.fixtures.services import Stack
from tests.fixtures.simcluster import SimClusterHandle

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


DEPLOY = (
    "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: cart\nspec:\n  template:\n"
    "    spec:\n      containers:\n        - name: cart\n          image: shop/cart:1.0\n"
)


def _gitops_tree(root: Path) -> Path:
    """A GitOps working tree with one deployment, committed."""
    (root / "apps" / "cart").mkdir(parents=True)
    (root / "apps" / "cart" / "deploy.yaml").write_text(DEPLOY)
    git = ["git", "-C", str(root)]
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
    subprocess.run([*git, "config", "user.name", "Tester"], check=True)
    subprocess.run([*git, "config", "user.email", "t@example.com"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "init"], check=True)
    return root


def _set_image(root: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    args = ["--repo-dir", str(root), "--path", "apps/cart", "--image", "shop/cart"]
    return subprocess.run(
        [*SHIPYARD, "set-image", *args, "--tag", "1.1", "--commit", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def _head(root: Path) -> str:
    return subprocess.run(
        ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_set_image_commit_runs_directly_without_a_prefect_api(stack: Stack, tmp_path: Path) -> None:
    root = _gitops_tree(tmp_path / "gitops")
    result = _set_image(root, _check_env(stack, tmp_path, "http://127.0.0.1:1/api"))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["commit"] == _head(root)
    assert not (tmp_path / "prefect-home" / "prefect.db").exists()


def test_set_image_commit_is_a_flow_run_when_prefect_answers(
    stack: Stack, prefect_api: str, tmp_path: Path
) -> None:
    root = _gitops_tree(tmp_path / "gitops")
    result = _set_image(root, _check_env(stack, tmp_path, prefect_api))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    sha = json.loads(result.stdout)["commit"]
    assert sha == _head(root)
    runs = httpx.post(
        f"{prefect_api}/flow_runs/filter",
        json={"flows": {"name": {"any_": ["set-image"]}}, "limit": 50},
    ).json()
    run = next(r for r in runs if r["parameters"].get("repo_dir") == str(root))
    assert run["state_type"] == "COMPLETED"
    tasks = httpx.post(
        f"{prefect_api}/task_runs/filter",
        json={"flow_runs": {"id": {"any_": [run["id"]]}}},
    ).json()
    assert sorted(t["task_key"].split("-")[0] for t in tasks) == sorted(
        ["commit_local_change", "set_image_in_tree"]
    )


def test_backup_and_drill_run_directly_without_a_prefect_api(
    stack: Stack, sim_cluster: SimClusterHandle, tmp_path: Path
) -> None:
    """The DR commands' direct path: same tasks, drill history recorded, no server."""
    from shipyard.core.kube import KubeClient
    from shipyard.core.s3 import s3_client
    from tasks.backup_manifest import DRILLS_DIR
    from tests.tasks.test_restore_drill import CRD, seed_namespace

    kube = KubeClient(sim_cluster.api_client())
    crd = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    if kube.get(f"{crd}/applications.argoproj.io") is None:
        kube.request("POST", crd, CRD)
        time.sleep(0.3)
    ns = f"app-{uuid.uuid4().hex[:6]}"
    seed_namespace(kube, ns)
    bucket = f"dr-{uuid.uuid4().hex[:12]}"
    s3_client(stack.s3_endpoint).create_bucket(Bucket=bucket)
    env = {
        **_check_env(stack, tmp_path, "http://127.0.0.1:1/api"),
        **{k: stack.env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")},
        "AWS_DEFAULT_REGION": stack.env["AWS_DEFAULT_REGION"],
    }
    where = ["--kubeconfig", str(sim_cluster.kubeconfig), "--bucket", bucket]
    where += ["--s3-endpoint", stack.s3_endpoint]

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*SHIPYARD, *args, *where, "--json"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )

    try:
        backup = cli("backup", "--namespaces", ns)
        assert backup.returncode == 0, backup.stderr
        backup_id = json.loads(backup.stdout)["backup_id"]
        drill = cli("restore-drill", "--backup", backup_id)
        assert drill.returncode == 0, drill.stderr
        assert json.loads(drill.stdout)["passed"] is True
        history = s3_client(stack.s3_endpoint).list_objects_v2(Bucket=bucket)["Contents"]
        assert any(f"{DRILLS_DIR}/" in o["Key"] for o in history)  # the trend
        assert not (tmp_path / "prefect-home" / "prefect.db").exists()
    finally:
        kube.request("DELETE", f"/api/v1/namespaces/{ns}")
