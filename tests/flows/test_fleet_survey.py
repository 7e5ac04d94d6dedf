"""`drift-check --fleet` and `backup --fleet` across four simulated clusters (one simulator
each), a real git repo, a real S3 (the stack's moto) and the stack's Prefect server:
one row and one task run per cluster, an unreachable cluster reported while the others
run, per-cluster backup keys, and a restore drill of one cluster's backup."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

# The flows load at collection (see tests/flows/test_dr_flows.py for why).
from flows.backup import backup_fleet
from shipyard.cli.main import main
from shipyard.core.s3 import S3Store, s3_client
from tasks.backup_manifest import MANIFEST_NAME, backup_key, backup_root, complete_backups
from tasks.sync_app import SyncConfig, sync
from tests.fixtures.services import Stack
from tests.tasks.fleet_env import Fleet4, all_images, start_fleet4

pytestmark = pytest.mark.slow

ONE_WAVE: list[dict[str, Any]] = [{"name": "all"}]  # waves do not matter here


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet4]:
    handle = start_fleet4(tmp_path_factory.mktemp("fleet-survey"))
    try:
        yield handle
    finally:
        handle.stop()


def deploy(fleet: Fleet4, ns: str) -> str:
    """Commit a good image per cluster and apply each cluster's path into ``ns``."""
    rev = fleet.repo.commit(all_images(1), f"v1 {ns}")
    for name in fleet.sims:
        sync(
            SyncConfig(
                driver="apply",
                repo=str(fleet.repo.root),
                path=f"envs/{name}/api",
                namespace=ns,
                app="api",
                revision=rev,
            ),
            kube=fleet.kube(name),
        )
    return rev


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, Any, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(args)
    out, err = capsys.readouterr()
    lines = [line for line in out.splitlines() if line.startswith("{")]
    return int(exc.value.code or 0), (json.loads(lines[-1]) if lines else None), err


def statuses(report: dict[str, Any]) -> dict[str, str]:
    return {c["cluster"]: c["status"] for c in report["clusters"]}


def test_drift_check_fleet_without_prefect(
    fleet: Fleet4,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("SHIPYARD_STATE_DIR", str(tmp_path / "no-stack"))
    ns = fleet.namespace()
    rev = deploy(fleet, ns)
    fleet_file = fleet.fleet_file(ns, ONE_WAVE)
    args = ["drift-check", "--fleet", str(fleet_file), "--repo", str(fleet.repo.root), "--json"]

    code, report, err = run_cli(args, capsys)
    assert code == 0, err
    assert report["passed"] is True and report["action"] == "drift-check"
    assert [c["cluster"] for c in report["clusters"]] == list(fleet.sims)
    assert set(statuses(report).values()) == {"clean"}
    assert {c["revision"] for c in report["clusters"]} == {rev}

    # one cluster, without a fleet file
    one = [
        "drift-check",
        "--repo",
        str(fleet.repo.root),
        "--path",
        "envs/canary/api",
        "--namespace",
        ns,
        "--kubeconfig",
        str(fleet.kubeconfigs["canary"]),
        "--json",
    ]
    code, single, err = run_cli(one, capsys)
    assert code == 0, err
    assert single["drifted"] is False and single["revision"] == rev and single["items"] == []

    # eu-1 drifts (a hand edit), us-1 goes away: both reported, the others still checked
    fleet.kube("eu-1").merge_patch(
        f"/apis/apps/v1/namespaces/{ns}/deployments/api", {"spec": {"replicas": 5}}
    )
    fleet.break_cluster("us-1")
    try:
        code, report, _ = run_cli([*args, "--max-parallel", "2"], capsys)
    finally:
        fleet.heal_cluster("us-1")
    assert code == 1
    assert statuses(report) == {
        "canary": "clean",
        "eu-1": "drifted",
        "eu-2": "clean",
        "us-1": "unreachable",
    }
    eu1 = next(c for c in report["clusters"] if c["cluster"] == "eu-1")
    assert eu1["drifted"] == ["Deployment/api (modified)"]
    assert report["passed"] is False

    # bad input: exit 2, one line
    code, _, err = run_cli([*args[:-1], "--path", "envs/x"], capsys)
    assert code == 2 and err.count("\n") == 1


def _artifact(api: str, key: str) -> dict[str, Any]:
    response = httpx.post(
        f"{api}/artifacts/latest/filter", json={"artifacts": {"key": {"any_": [key]}}}
    )
    response.raise_for_status()
    found = response.json()
    assert found, f"no artifact {key}"
    return dict(found[0])


def _events(api: str, name: str, fleet_name: str, timeout: float = 15.0) -> dict[str, str]:
    """cluster -> resource id of events ``name`` about ``fleet_name`` (polled)."""
    deadline = time.monotonic() + timeout
    seen: dict[str, str] = {}
    while time.monotonic() < deadline:
        response = httpx.post(
            f"{api}/events/filter", json={"filter": {"event": {"name": [name]}}, "limit": 50}
        )
        if response.status_code == 200:
            for event in response.json().get("events", []):
                if event.get("payload", {}).get("fleet") == fleet_name:
                    seen[event["payload"]["cluster"]] = event["resource"]["prefect.resource.id"]
        if seen:
            return seen
        time.sleep(0.5)
    return seen


def _task_runs(api: str, prefix: str) -> list[str]:
    response = httpx.post(
        f"{api}/task_runs/filter",
        json={"task_runs": {"name": {"like_": prefix}}, "limit": 50},
    )
    response.raise_for_status()
    return [str(r["name"]) for r in response.json()]


def test_backup_fleet_flow_keys_per_cluster_and_drill_of_one(
    fleet: Fleet4,
    stack: Stack,
    prefect_api: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(key, stack.env[key])
    bucket = f"fleet-{uuid.uuid4().hex[:12]}"
    s3 = s3_client(stack.s3_endpoint)
    s3.create_bucket(Bucket=bucket)
    store = S3Store(s3, bucket)
    ns = fleet.namespace()
    deploy(fleet, ns)
    fleet_file = fleet.fleet_file(ns, ONE_WAVE)
    common = ["--bucket", bucket, "--s3-endpoint", stack.s3_endpoint, "--prefix", "bk"]

    fleet.break_cluster("eu-2")
    try:
        code, report, err = run_cli(
            ["backup", "--fleet", str(fleet_file), *common, "--max-parallel", "2", "--json"],
            capsys,
        )
    finally:
        fleet.heal_cluster("eu-2")
    assert code == 1, err
    assert statuses(report) == {
        "canary": "backed-up",
        "eu-1": "backed-up",
        "eu-2": "unreachable",
        "us-1": "backed-up",
    }
    for row in report["clusters"]:
        if row["status"] != "backed-up":
            continue
        root = backup_root("bk", row["cluster"], row["backup_id"])
        assert row["backup_key"] == backup_key(root, MANIFEST_NAME)
        assert store.exists(row["backup_key"])
        assert complete_backups(store, "bk", row["cluster"]) == [row["backup_id"]]
        assert row["objects"] > 0
    assert complete_backups(store, "bk", "eu-2") == []

    table = _artifact(prefect_api, f"backup-fleet-{ns}")
    rows = {r["cluster"]: r for r in json.loads(table["data"])}
    assert rows["canary"]["status"] == "backed-up"
    assert rows["canary"]["found"].startswith("bk/canary/")
    assert rows["eu-2"]["status"] == "unreachable"
    names = _task_runs(prefect_api, "backup-")
    assert {"backup-canary", "backup-eu-1", "backup-eu-2", "backup-us-1"} <= set(names)
    completed = _events(prefect_api, "shipyard.backup.completed", ns)
    assert completed.get("canary") == f"shipyard.backup.{ns}.canary"
    failed = _events(prefect_api, "shipyard.backup.failed", ns)
    assert failed.get("eu-2") == f"shipyard.backup.{ns}.eu-2"

    # a restore drill picks one cluster's backups by name
    canary_id = next(c["backup_id"] for c in report["clusters"] if c["cluster"] == "canary")
    code, drill, err = run_cli(
        ["restore-drill", "--fleet", str(fleet_file), "--cluster", "canary", *common, "--json"],
        capsys,
    )
    assert code == 0, err
    assert drill["backup_id"] == canary_id and drill["passed"] is True


def test_drift_check_fleet_flow_publishes_per_cluster(
    fleet: Fleet4, prefect_api: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ns = fleet.namespace()
    deploy(fleet, ns)
    fleet.kube("canary").delete(f"/apis/apps/v1/namespaces/{ns}/deployments/api")
    fleet_file = fleet.fleet_file(ns, ONE_WAVE)
    code, report, err = run_cli(
        ["drift-check", "--fleet", str(fleet_file), "--repo", str(fleet.repo.root), "--json"],
        capsys,
    )
    assert code == 1, err
    assert report["passed"] is True  # every cluster was checked; one drifted
    assert statuses(report)["canary"] == "drifted"
    table = json.loads(_artifact(prefect_api, f"drift-fleet-{ns}")["data"])
    assert [r["cluster"] for r in table] == list(fleet.sims)
    assert table[0]["found"] == "Deployment/api (missing)"
    assert {"drift-canary", "drift-us-1"} <= set(_task_runs(prefect_api, "drift-"))
    detected = _events(prefect_api, "shipyard.drift.detected", ns)
    assert detected == {"canary": f"shipyard.app.api.{ns}.cluster.canary"}


def test_drift_and_backup_of_a_catalog_fleet_environment(
    fleet: Fleet4, stack: Stack, prefect_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A catalog environment with ``fleet:`` (labelled cluster blocks) instead of a file."""
    from blocks.cluster import KubernetesCluster
    from blocks.gitops import GitOpsRepository
    from flows.drift_check import drift_check_fleet
    from shipyard.cli.runner import outcome
    from tests.tasks.fleet_env import LABELS

    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(key, stack.env[key])
    ns = fleet.namespace()
    catalog = {
        "apiVersion": "shipyard.dev/v1",
        "apps": [
            {
                "name": "api",
                "image": "shop/api",
                "environments": [
                    {
                        "name": "prod",
                        "path": "envs/canary/api",
                        "namespace": ns,
                        "fleet": {
                            "selector": {"matchLabels": {"survey": ns}},
                            "waves": [{"name": "all"}],
                        },
                        "verify": {"workloads": ["deployment/api"]},
                    }
                ],
            }
        ],
    }
    (fleet.repo.root / "shipyard-catalog.yaml").write_text(json.dumps(catalog))
    deploy(fleet, ns)  # commits the catalog too
    GitOpsRepository(url=str(fleet.repo.root)).save(f"gitops-{ns}", overwrite=True)
    for name in ("canary", "eu-1", "us-1"):  # eu-2 stays out of this fleet
        KubernetesCluster(
            name=f"{ns}-{name}",
            kubeconfig_path=str(fleet.kubeconfigs[name]),
            labels={**LABELS[name], "survey": ns},
        ).save(f"{ns}-{name}", overwrite=True)
    fleet.kube("us-1").delete(f"/apis/apps/v1/namespaces/{ns}/deployments/api")
    where = {"app": "api", "environment": "prod", "gitops_block": f"gitops-{ns}"}

    drift = outcome(drift_check_fleet(return_state=True, **where))
    assert drift.fleet == "api-prod"
    assert {c.cluster: c.status for c in drift.clusters} == {
        f"{ns}-canary": "clean",
        f"{ns}-eu-1": "clean",
        f"{ns}-us-1": "drifted",
    }

    bucket = f"fleet-{uuid.uuid4().hex[:12]}"
    s3_client(stack.s3_endpoint).create_bucket(Bucket=bucket)
    backups = outcome(
        backup_fleet(
            return_state=True, bucket=bucket, prefix="cat", s3_endpoint=stack.s3_endpoint, **where
        )
    )
    assert backups.passed
    assert [c.backup_key.split("/")[1] for c in backups.clusters] == [
        f"{ns}-canary",
        f"{ns}-eu-1",
        f"{ns}-us-1",
    ]
