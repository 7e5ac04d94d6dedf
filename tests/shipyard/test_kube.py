"""Shipyard's one Kubernetes client (shipyard.core.kube) against the cluster simulator:
discovery, listing, the error split, and building it from a kubeconfig."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.core.errors import ConfigError, TransientError
from shipyard.core.kube import KubeClient, KubeConflict, Retry, api_client
from tests.fixtures.simcluster import SimClusterHandle


def _configmap(name: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {}}


def test_built_from_a_kubeconfig(sim_cluster: SimClusterHandle) -> None:
    kube = KubeClient.from_kubeconfig(str(sim_cluster.kubeconfig))
    assert kube.get("/api/v1/namespaces/default") is not None
    assert isinstance(kube.version(), str)


def test_missing_kubeconfig_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no kubeconfig"):
        api_client(str(tmp_path / "nope"))


def test_discovery_and_listing(sim_cluster: SimClusterHandle, sim_namespace: str) -> None:
    kube = KubeClient(sim_cluster.api_client())
    served = {(r.api_version, r.kind) for r in kube.discover()}
    assert {("v1", "ConfigMap"), ("apps/v1", "Deployment")} <= served
    configmaps = kube.resource("v1", "ConfigMap")
    assert configmaps.path(sim_namespace, "a") == f"/api/v1/namespaces/{sim_namespace}/configmaps/a"
    for name in ("a", "b"):
        kube.request("POST", configmaps.path(sim_namespace), _configmap(name))
    listed = kube.list_objects(configmaps, sim_namespace)
    names = {o["metadata"]["name"] for o in listed}
    assert {"a", "b"} <= names
    assert all(o["kind"] == "ConfigMap" and o["apiVersion"] == "v1" for o in listed)
    with pytest.raises(ConfigError, match="serves no"):
        kube.resource("v1", "NoSuchKind")


def test_error_split(sim_cluster: SimClusterHandle, sim_namespace: str) -> None:
    kube = KubeClient(sim_cluster.api_client(), retry=Retry(attempts=2, backoff=0.01))
    collection = f"/api/v1/namespaces/{sim_namespace}/configmaps"
    kube.request("POST", collection, _configmap("dup"))
    with pytest.raises(KubeConflict):
        kube.request("POST", collection, _configmap("dup"))
    assert kube.get(f"{collection}/missing") is None
    assert kube.delete(f"{collection}/dup") is True
    assert kube.delete(f"{collection}/dup") is False
    sim_cluster.faults.add(kind="500", verb="create", resource="configmaps")
    try:
        with pytest.raises(TransientError):
            kube.request("POST", collection, _configmap("later"))
    finally:
        sim_cluster.faults.clear()
