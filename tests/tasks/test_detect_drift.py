"""The drift step's core: pure comparison, and detection against the simulator."""

from __future__ import annotations

from pathlib import Path

from shipyard.core.kube import KubeClient
from tasks.detect_drift import DriftConfig, compare_objects, detect_drift
from tasks.sync.render import object_key
from tasks.sync_app import SyncConfig, sync
from tests.fixtures.simcluster import SimClusterHandle
from tests.tasks.k8s_objects import GitOpsRepo, kustomize_env


def test_compare_ignores_status_defaults_and_ownership() -> None:
    desired = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "n"},
        "data": {"k": "v"},
    }
    live = {
        **desired,
        "metadata": {
            **desired["metadata"],
            "uid": "1",
            "resourceVersion": "9",
            "labels": {"app.shipyard.dev/app": "web"},
        },
        "status": {},
    }
    assert compare_objects([desired], {object_key(desired): live}) == []
    changed = {**live, "data": {"k": "w"}}
    items = compare_objects([desired], {object_key(desired): changed})
    assert items[0].change == "modified" and ".data.k" in items[0].differences[0]
    assert compare_objects([desired], {object_key(desired): None})[0].change == "missing"
    extra = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "old", "namespace": "n"}}
    assert [i.object for i in compare_objects([desired], {object_key(desired): live}, [extra])] == [
        "ConfigMap/old"
    ]


def test_secret_values_never_appear() -> None:
    desired = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s", "namespace": "n"},
        "data": {"p": "c2VjcmV0"},
    }
    live = {**desired, "data": {"p": "b3RoZXI="}}
    items = compare_objects([desired], {object_key(desired): live})
    assert "c2VjcmV0" not in str(items) and "b3RoZXI=" not in str(items)


def test_detect_drift_in_the_simulator(
    sim_cluster: SimClusterHandle, sim_namespace: str, tmp_path: Path
) -> None:
    gitops = GitOpsRepo(tmp_path)
    gitops.commit(kustomize_env("shop/web", "1"), "v1")
    kube = KubeClient(sim_cluster.api_client())
    sync(
        SyncConfig(
            driver="apply", repo=gitops.url, path="envs/dev", namespace=sim_namespace, app="web"
        ),
        kube=kube,
    )
    cfg = DriftConfig(repo=gitops.url, path="envs/dev", namespace=sim_namespace, app="web")
    assert detect_drift(kube, cfg).items == []
    kube.merge_patch(
        f"/api/v1/namespaces/{sim_namespace}/configmaps/web-config", {"data": {"k": "hand-edited"}}
    )
    kube.merge_patch(
        f"/apis/apps/v1/namespaces/{sim_namespace}/deployments/web", {"spec": {"replicas": 3}}
    )
    report = detect_drift(kube, cfg)
    assert {(i.object, i.change) for i in report.items} == {
        ("ConfigMap/web-config", "modified"),
        ("Deployment/web", "modified"),
    }
