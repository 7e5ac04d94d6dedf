"""`backup` and `restore-drill` as Prefect flow runs on the real server, through the CLI."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

# The flows (and so Prefect, with its console log handler) load at collection, before
# any test captures stdout: a handler created under capsys would write to a closed file
# in the next test. The CLI itself loads them lazily.
from flows.restore_drill import restore_from_git_drill
from shipyard.cli.main import main
from shipyard.core.kube import KubeClient
from shipyard.core.s3 import S3Store, s3_client
from tasks.backup_manifest import backup_key, backup_root, read_manifest
from tests.fixtures.services import Stack
from tests.fixtures.simcluster import SimClusterHandle
from tests.tasks.test_restore_drill import CRD, SECRET_VALUE, seed_namespace

pytestmark = pytest.mark.slow


@pytest.fixture
def env(
    stack: Stack, prefect_api: str, sim_cluster: SimClusterHandle, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """AWS credentials for moto, a fresh bucket, and a seeded namespace in the simulator."""
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(key, stack.env[key])
    bucket = f"dr-{uuid.uuid4().hex[:12]}"
    s3_client(stack.s3_endpoint).create_bucket(Bucket=bucket)
    kube = KubeClient(sim_cluster.api_client())
    if (
        kube.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/applications.argoproj.io")
        is None
    ):
        kube.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", CRD)
        time.sleep(0.3)
    ns = f"app-{uuid.uuid4().hex[:6]}"
    seed_namespace(kube, ns)
    yield {
        "bucket": bucket,
        "ns": ns,
        "kubeconfig": str(sim_cluster.kubeconfig),
        "s3": stack.s3_endpoint,
        "api": prefect_api,
    }
    kube.request("DELETE", f"/api/v1/namespaces/{ns}")


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, Any, str]:
    """Run the shipyard CLI in-process; returns (exit code, parsed JSON stdout, stderr)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(args)
    out, err = capsys.readouterr()
    lines = [line for line in out.splitlines() if line.startswith("{")]
    return int(exc.value.code or 0), (json.loads(lines[-1]) if lines else None), err


def common(env: dict[str, str]) -> list[str]:
    return [
        "--kubeconfig",
        env["kubeconfig"],
        "--bucket",
        env["bucket"],
        "--s3-endpoint",
        env["s3"],
    ]


def test_cli_backup_then_drill_passes(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, backup, err = run_cli(
        ["backup", *common(env), "--namespaces", env["ns"], "--json"], capsys
    )
    assert code == 0, err
    assert set(backup) == {"backup_id", "objects", "bytes"}
    assert backup["objects"] == 9 and backup["bytes"] > 0

    code, drill, err = run_cli(
        ["restore-drill", *common(env), "--backup", "latest", "--rto-target", "120", "--json"],
        capsys,
    )
    assert code == 0, err
    assert list(drill) == [
        "passed",
        "backup_id",
        "objects",
        "restored",
        "parity",
        "rto_seconds",
        "rpo_seconds",
        "mismatches",
    ]
    assert drill["passed"] is True and drill["parity"] == 1.0
    assert drill["backup_id"] == backup["backup_id"]
    assert drill["objects"] == 9 and drill["restored"] == 8
    assert drill["rto_seconds"] > 0 and drill["rpo_seconds"] > 0

    report = _artifact(env["api"], "restore-drill-report")
    assert "Restore drill PASSED" in report["data"]
    assert SECRET_VALUE not in report["data"]
    trend = _artifact(env["api"], "restore-drill-trend")
    assert backup["backup_id"] in json.dumps(trend["data"])
    assert _event_seen(env["api"], "shipyard.drill.passed", backup["backup_id"])


def test_cli_drill_of_tampered_backup_exits_1(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, backup, err = run_cli(
        ["backup", *common(env), "--namespaces", env["ns"], "--json"], capsys
    )
    assert code == 0, err
    store = S3Store(s3_client(env["s3"]), env["bucket"])
    manifest = read_manifest(store, "shipyard-backups", "default", backup["backup_id"])
    entry = next(e for e in manifest.objects if e.kind == "Deployment")
    key = backup_key(backup_root("shipyard-backups", "default", backup["backup_id"]), entry.path)
    store.client.put_object(Bucket=env["bucket"], Key=key, Body=b'{"tampered":true}')

    code, drill, err = run_cli(["restore-drill", *common(env), "--json"], capsys)
    assert code == 1, err
    assert drill["passed"] is False
    assert any(entry.path in m for m in drill["mismatches"])
    assert _event_seen(env["api"], "shipyard.drill.failed", backup["backup_id"])


def test_cli_unusable_input_exits_2(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(["restore-drill", *common(env), "--backup", "nope", "--json"], capsys)
    assert code == 2 and "no complete backups" in err
    run_cli(["backup", *common(env), "--namespaces", env["ns"], "--json"], capsys)
    code, _, err = run_cli(
        ["restore-drill", *common(env), "--backup", "20200101T000000Z-000000"], capsys
    )
    assert code == 2 and "unknown backup id" in err
    args = ["--kubeconfig", env["kubeconfig"], "--s3-endpoint", env["s3"]]
    code, _, err = run_cli(["restore-drill", *args, "--bucket", "no-such-bucket-dr"], capsys)
    assert code == 2 and "does not exist" in err
    code, _, err = run_cli(
        ["backup", *common(env), "--namespaces", "no-such-namespace", "--json"], capsys
    )
    assert code == 2 and "namespaces not found" in err


def _artifact(api: str, key: str) -> dict[str, Any]:
    response = httpx.post(
        f"{api}/artifacts/latest/filter", json={"artifacts": {"key": {"any_": [key]}}}
    )
    response.raise_for_status()
    found = response.json()
    assert found, f"no artifact {key}"
    return dict(found[0])


def _event_seen(api: str, name: str, backup_id: str, timeout: float = 15.0) -> bool:
    """Poll the server's event store for ``name`` about ``backup_id``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = httpx.post(
            f"{api}/events/filter",
            json={"filter": {"event": {"name": [name]}}, "limit": 50},
        )
        if response.status_code == 200:
            for event in response.json().get("events", []):
                if event.get("payload", {}).get("backup_id") == backup_id:
                    return True
        time.sleep(0.5)
    return False


def test_restore_from_git_drill_flow(
    env: dict[str, str], sim_cluster: SimClusterHandle, tmp_path: Any
) -> None:
    """Rebuild a live namespace from a real git repository (file:// clone)."""
    import subprocess

    from tasks.drill_report import GitDrillResult
    from tasks.restore_git_drill import render_env
    from tests.tasks.test_restore_git import write_env

    kube = KubeClient(sim_cluster.api_client())
    live = f"live-{uuid.uuid4().hex[:6]}"
    src = tmp_path / "src"
    env_dir = write_env(src, live)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q", "-b", "main", str(src)], check=True)
    subprocess.run([*git, "-C", str(src), "add", "."], check=True)
    subprocess.run([*git, "-C", str(src), "commit", "-qm", "env"], check=True)
    kube.request("POST", "/api/v1/namespaces", {"metadata": {"name": live}})
    paths = {"Deployment": "/apis/apps/v1", "Service": "/api/v1", "ConfigMap": "/api/v1"}
    for obj in render_env(env_dir):
        plural = obj["kind"].lower() + "s"
        kube.request("POST", f"{paths[obj['kind']]}/namespaces/{live}/{plural}", obj)
    try:
        result = restore_from_git_drill(
            env_path="envs/prod",
            live_namespace=live,
            repo_url=f"file://{src}",
            kubeconfig=env["kubeconfig"],
            ready_timeout_seconds=30,
        )
        assert isinstance(result, GitDrillResult)
        assert result.passed and result.parity == 1.0 and result.objects == 3
        kube.request("DELETE", f"/api/v1/namespaces/{live}/configmaps/settings")
        state = restore_from_git_drill(
            env_path="envs/prod",
            live_namespace=live,
            repo_url=f"file://{src}",
            kubeconfig=env["kubeconfig"],
            ready_timeout_seconds=30,
            return_state=True,
        )
        assert state.is_failed()
        failed = state.result(raise_on_failure=False)
        assert isinstance(failed, GitDrillResult)
        assert failed.only_in_git == ["ConfigMap/settings"]
    finally:
        kube.request("DELETE", f"/api/v1/namespaces/{live}")
