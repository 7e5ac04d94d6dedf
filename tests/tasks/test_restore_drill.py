"""Backup and restore drill end to end: the simulator's Kubernetes API and moto's S3."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from shipyard.core.errors import ConfigError
from shipyard.core.kube import KubeClient
from shipyard.core.s3 import S3Store, s3_client
from tasks.backup_export import BackupConfig, run_backup
from tasks.backup_manifest import backup_key, backup_root, read_manifest
from tasks.drill_report import (
    DrillConfig,
    drill_history,
    record_drill,
    render_report,
    trend_rows,
)
from tasks.restore_backup_drill import run_drill
from tests.fixtures.services import Stack
from tests.fixtures.simcluster import SimClusterHandle

SECRET_VALUE = "c3VwZXItc2VjcmV0LXBhc3N3b3Jk"  # base64 of a password; must never be shown

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "applications.argoproj.io"},
    "spec": {
        "group": "argoproj.io",
        "scope": "Namespaced",
        "names": {"plural": "applications", "singular": "application", "kind": "Application"},
        "versions": [
            {
                "name": "v1alpha1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
            }
        ],
    },
}


def seed_namespace(kube: KubeClient, ns: str, *, deployments: int = 1) -> int:
    """Create a small app in ``ns``; returns how many objects a backup should hold."""
    kube.request("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
    base = f"/api/v1/namespaces/{ns}"
    kube.request(
        "POST", f"{base}/configmaps", {"metadata": {"name": "settings"}, "data": {"mode": "prod"}}
    )
    kube.request(
        "POST",
        f"{base}/secrets",
        {"metadata": {"name": "db"}, "type": "Opaque", "data": {"password": SECRET_VALUE}},
    )
    kube.request("POST", f"{base}/serviceaccounts", {"metadata": {"name": "app"}})
    kube.request(
        "POST",
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
        {
            "metadata": {"name": "app-view"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "view",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "app", "namespace": ns}],
        },
    )
    for i in range(deployments):
        labels = {"app": f"web{i}"}
        kube.request(
            "POST",
            f"/apis/apps/v1/namespaces/{ns}/deployments",
            {
                "metadata": {"name": f"web{i}", "labels": labels},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {"containers": [{"name": "web", "image": "shop/web:1.0"}]},
                    },
                },
            },
        )
        kube.request(
            "POST",
            f"{base}/services",
            {
                "metadata": {"name": f"web{i}"},
                "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]},
            },
        )
    kube.request(
        "POST",
        f"/apis/argoproj.io/v1alpha1/namespaces/{ns}/applications",
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {"name": "shop"},
            "spec": {"project": "default", "destination": {"namespace": ns}},
        },
    )
    # namespace, configmap, secret, sa, rolebinding, app + 2 per deployment (+ the CRD)
    return 6 + 2 * deployments + 1


@pytest.fixture(scope="module")
def kube(sim_cluster: SimClusterHandle) -> KubeClient:
    api = KubeClient(sim_cluster.api_client())
    if (
        api.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/applications.argoproj.io")
        is None
    ):
        api.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", CRD)
        deadline = time.monotonic() + 10
        while api.get("/apis/argoproj.io/v1alpha1") is None and time.monotonic() < deadline:
            time.sleep(0.05)
    return api


@pytest.fixture
def store(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Store]:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(key, stack.env[key])
    name = f"dr-{uuid.uuid4().hex[:12]}"
    client = s3_client(stack.s3_endpoint)
    client.create_bucket(Bucket=name)
    yield S3Store(client, name)


@pytest.fixture
def app_ns(kube: KubeClient) -> Iterator[str]:
    ns = f"shop-{uuid.uuid4().hex[:6]}"
    seed_namespace(kube, ns)
    yield ns
    kube.request("DELETE", f"/api/v1/namespaces/{ns}")


def drill_namespaces(kube: KubeClient) -> list[str]:
    items = (kube.get("/api/v1/namespaces") or {}).get("items") or []
    return [o["metadata"]["name"] for o in items if "-drill-" in o["metadata"]["name"]]


def wait_settled(kube: KubeClient, ns: str) -> None:
    """Let the controllers create pods/replicasets so the backup has something to skip."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pods = (kube.get(f"/api/v1/namespaces/{ns}/pods") or {}).get("items") or []
        if pods:
            return
        time.sleep(0.05)


def test_backup_and_drill_with_full_parity(kube: KubeClient, store: S3Store, app_ns: str) -> None:
    wait_settled(kube, app_ns)
    backup = run_backup(
        kube, store, BackupConfig(namespaces=[app_ns], gitops_revision="abc123"), prefix="bk"
    )
    assert backup.objects == 6 + 2 + 1
    assert backup.counts["CustomResourceDefinition"] == 1
    assert "Pod" not in backup.counts and "ReplicaSet" not in backup.counts
    manifest = read_manifest(store, "bk", "default", backup.backup_id)
    assert manifest.gitops_revision == "abc123"
    assert manifest.cluster_version.startswith("v1.")
    assert manifest.skipped.get("Pod", 0) >= 1
    secret_entry = next(e for e in manifest.objects if e.kind == "Secret")
    assert secret_entry.secret
    head = store.client.head_object(
        Bucket=store.bucket,
        Key=backup_key(backup_root("bk", "default", backup.backup_id), secret_entry.path),
    )
    assert head["ServerSideEncryption"] == "AES256"

    result = run_drill(kube, store, DrillConfig(rto_target_seconds=60), prefix="bk")
    assert result.passed, result.failures
    assert result.parity == 1.0
    assert result.objects == backup.objects
    assert result.restored == backup.objects - 1  # the CRD already exists: left alone
    assert result.rto_seconds > 0 and result.rpo_seconds > 0
    assert result.namespaces == {app_ns: f"{app_ns}-drill-{result.drill_id}"}
    assert drill_namespaces(kube) == []
    assert kube.get(
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/applications.argoproj.io"
    )
    assert SECRET_VALUE not in result.model_dump_json()
    assert SECRET_VALUE not in render_report(result)
    assert set(result.cli_json()) == {
        "passed",
        "backup_id",
        "objects",
        "restored",
        "parity",
        "rto_seconds",
        "rpo_seconds",
        "mismatches",
    }


def _backup(kube: KubeClient, store: S3Store, ns: str) -> tuple[str, Any]:
    backup = run_backup(kube, store, BackupConfig(namespaces=[ns]), prefix="bk")
    return backup.backup_id, read_manifest(store, "bk", "default", backup.backup_id)


def test_tampered_object_fails_naming_it_and_touches_nothing(
    kube: KubeClient, store: S3Store, app_ns: str
) -> None:
    backup_id, manifest = _backup(kube, store, app_ns)
    root = backup_root("bk", "default", backup_id)
    target = next(e for e in manifest.objects if e.kind == "ConfigMap")
    key = backup_key(root, target.path)
    data = store.get(key)
    assert data is not None
    store.client.put_object(Bucket=store.bucket, Key=key, Body=data.replace(b"prod", b"evil"))
    before = drill_namespaces(kube)
    result = run_drill(kube, store, DrillConfig(), prefix="bk")
    assert not result.passed
    assert any(target.path in f and "checksum mismatch" in f for f in result.failures)
    assert result.restored == 0
    assert drill_namespaces(kube) == before == []


def test_missing_object_fails_naming_it(kube: KubeClient, store: S3Store, app_ns: str) -> None:
    backup_id, manifest = _backup(kube, store, app_ns)
    target = next(e for e in manifest.objects if e.kind == "Secret")
    store.client.delete_object(
        Bucket=store.bucket, Key=backup_key(backup_root("bk", "default", backup_id), target.path)
    )
    result = run_drill(kube, store, DrillConfig(backup=backup_id), prefix="bk")
    assert not result.passed
    assert result.mismatches == result.failures
    assert f"{target.path}: missing" in result.failures[0]
    assert drill_namespaces(kube) == []


def test_failed_restore_still_cleans_up(
    kube: KubeClient, store: S3Store, app_ns: str, sim_cluster: SimClusterHandle
) -> None:
    _backup(kube, store, app_ns)
    sim_cluster.faults.add(kind="500", verb="create", resource="services")
    try:
        result = run_drill(kube, store, DrillConfig(drill_id="fail01"), prefix="bk")
    finally:
        sim_cluster.faults.clear()
    assert not result.passed
    assert any("restore failed" in f for f in result.failures), result.failures
    assert result.restored > 0  # it got part of the way: namespaces, config, workloads
    assert result.cleanup_left == []
    assert drill_namespaces(kube) == []


def test_targets_missed_fail_the_drill(kube: KubeClient, store: S3Store, app_ns: str) -> None:
    _backup(kube, store, app_ns)
    time.sleep(0.2)
    result = run_drill(
        kube, store, DrillConfig(rto_target_seconds=0.001, rpo_target_seconds=0.01), prefix="bk"
    )
    assert not result.passed
    assert result.parity == 1.0
    assert any(f.startswith("RTO") for f in result.failures)
    assert any(f.startswith("RPO") for f in result.failures)
    assert drill_namespaces(kube) == []


def test_existing_policy_skip_and_fail(kube: KubeClient, store: S3Store, app_ns: str) -> None:
    _backup(kube, store, app_ns)
    drill_ns = f"{app_ns}-drill-pol001"
    kube.request("POST", "/api/v1/namespaces", {"metadata": {"name": drill_ns}})
    kube.request(
        "POST",
        f"/api/v1/namespaces/{drill_ns}/configmaps",
        {"metadata": {"name": "settings"}, "data": {"mode": "stale"}},
    )
    failed = run_drill(kube, store, DrillConfig(drill_id="pol001"), prefix="bk")
    assert not failed.passed
    assert any("already exists" in f for f in failed.failures)
    assert drill_namespaces(kube) == []
    # with "update" the stale object is overwritten and parity holds
    kube.request("POST", "/api/v1/namespaces", {"metadata": {"name": drill_ns}})
    kube.request(
        "POST",
        f"/api/v1/namespaces/{drill_ns}/configmaps",
        {"metadata": {"name": "settings"}, "data": {"mode": "stale"}},
    )
    updated = run_drill(kube, store, DrillConfig(drill_id="pol001", existing="update"), prefix="bk")
    assert updated.passed, updated.failures
    assert drill_namespaces(kube) == []


def test_unknown_backup_id_is_a_config_error(kube: KubeClient, store: S3Store, app_ns: str) -> None:
    _backup(kube, store, app_ns)
    with pytest.raises(ConfigError, match="unknown backup id"):
        run_drill(kube, store, DrillConfig(backup="20200101T000000Z-000000"), prefix="bk")


def test_drill_history_and_trend(kube: KubeClient, store: S3Store, app_ns: str) -> None:
    _backup(kube, store, app_ns)
    results = [run_drill(kube, store, DrillConfig(), prefix="bk") for _ in range(2)]
    for r in results:
        record_drill(store, "bk", r)
    history = drill_history(store, "bk", "default")
    assert [h.drill_id for h in history] == [r.drill_id for r in results]
    rows = trend_rows(history)
    assert rows[0]["passed"] is True and rows[0]["parity"] == 1.0
