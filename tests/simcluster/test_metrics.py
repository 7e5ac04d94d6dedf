"""The simulator's ``GET /metrics``: kube-state-metrics and Argo CD series, checked by
parsing the text with prometheus_client and by a real Prometheus scraping it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families
from simcluster.config import SimConfig

from tests.fakes.operators.crds import CRDS
from tests.fixtures.real_prometheus import start_prometheus
from tests.fixtures.simcluster import SimClusterHandle, fast_config, start_sim_cluster
from tests.simcluster.helpers import eventually

NS = "shop"
APP_GROUP = ("argoproj.io", "v1alpha1")
OVERCOMMIT = (
    'sum(kube_pod_container_resource_limits{resource="cpu"})'
    ' / sum(kube_node_status_allocatable{resource="cpu"})'
)


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimClusterHandle]:
    """A private simulator (two 4-core nodes), so sums see only this module's objects."""
    config = fast_config()
    config = SimConfig(**{**config.__dict__, "nodes": 2, "node_cpu": "4", "node_memory": "8Gi"})
    handle = start_sim_cluster(tmp_path_factory.mktemp("simmetrics"), config)
    core = client.CoreV1Api(handle.api_client())
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NS)))
    apps = client.AppsV1Api(handle.api_client())
    container = client.V1Container(
        name="app",
        image="web:1",
        resources=client.V1ResourceRequirements(
            requests={"cpu": "500m", "memory": "128Mi"}, limits={"cpu": "1", "memory": "256Mi"}
        ),
    )
    apps.create_namespaced_deployment(
        NS,
        client.V1Deployment(
            metadata=client.V1ObjectMeta(name="web"),
            spec=client.V1DeploymentSpec(
                replicas=2,
                selector=client.V1LabelSelector(match_labels={"app": "web"}),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels={"app": "web"}),
                    spec=client.V1PodSpec(containers=[container]),
                ),
            ),
        ),
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "batch", "namespace": NS},
        "spec": {
            "containers": [
                {
                    "name": "worker",
                    "image": "batch:1",
                    "resources": {"limits": {"cpu": "2", "memory": "1Gi"}},
                }
            ]
        },
    }
    handle.kubectl("apply", "-f", "-", input=json.dumps(pod))
    handle.kubectl("apply", "-f", "-", input=json.dumps(CRDS[0]))
    try:
        yield handle
    finally:
        handle.cluster.stop()


def scrape(sim: SimClusterHandle) -> dict[str, list[Any]]:
    """Sample name -> samples of one scrape, parsed by prometheus_client."""
    response = httpx.get(f"{sim.url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    out: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def value(samples: dict[str, list[Any]], metric: str, /, **labels: str) -> float:
    """The one sample of ``metric`` whose labels include ``labels``."""
    found = [
        s for s in samples.get(metric, []) if all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) == 1, f"{metric}{labels}: {len(found)} samples"
    return float(found[0].value)


def test_nodes_pods_and_deployments(sim: SimClusterHandle) -> None:
    def ready() -> dict[str, list[Any]]:
        s = scrape(sim)
        assert (
            value(s, "kube_deployment_status_replicas_available", namespace=NS, deployment="web")
            == 2
        )
        return s

    s = eventually(ready)
    assert value(s, "kube_node_status_allocatable", node="sim-node-2", resource="cpu") == 4
    assert value(s, "kube_node_status_capacity", node="sim-node-1", resource="memory") == 8 * 2**30
    alloc = [x for x in s["kube_node_status_allocatable"] if x.labels["resource"] == "cpu"]
    assert {x.labels["unit"] for x in alloc} == {"core"}
    assert value(s, "kube_node_info", node="sim-node-1") == 1
    assert value(s, "kube_deployment_spec_replicas", namespace=NS, deployment="web") == 2
    assert value(s, "kube_deployment_status_replicas_updated", namespace=NS, deployment="web") == 2
    generation = value(s, "kube_deployment_metadata_generation", namespace=NS, deployment="web")
    observed = value(
        s, "kube_deployment_status_observed_generation", namespace=NS, deployment="web"
    )
    assert generation == observed == 1

    web_pods = [p for p in s["kube_pod_info"] if p.labels["created_by_kind"] == "ReplicaSet"]
    assert len(web_pods) == 2 and all(p.labels["node"].startswith("sim-node-") for p in web_pods)
    pod = web_pods[0].labels["pod"]
    phases = {
        x.labels["phase"]: x.value for x in s["kube_pod_status_phase"] if x.labels["pod"] == pod
    }
    assert phases == {"Pending": 0, "Succeeded": 0, "Failed": 0, "Unknown": 0, "Running": 1}
    meta = client.CoreV1Api(sim.api_client()).read_namespaced_pod(pod, NS).metadata
    assert meta is not None
    uid = str(meta.uid)
    assert value(s, "kube_pod_status_phase", pod=pod, phase="Running", uid=uid) == 1
    assert (
        value(s, "kube_pod_container_resource_requests", pod=pod, resource="cpu", unit="core")
        == 0.5
    )
    assert value(
        s, "kube_pod_container_resource_limits", pod=pod, resource="memory", unit="byte"
    ) == (256 * 2**20)
    limits = value(s, "kube_pod_container_resource_limits", pod="batch", resource="cpu")
    assert limits == 2
    # A container with limits only requests its limits (the API server's defaulting).
    assert value(s, "kube_pod_container_resource_requests", pod="batch", resource="cpu") == 2
    assert value(s, "kube_namespace_status_phase", namespace=NS, phase="Active") == 1
    assert value(s, "kube_namespace_status_phase", namespace=NS, phase="Terminating") == 0


def test_metrics_is_unauthenticated_and_get_only(sim: SimClusterHandle) -> None:
    assert httpx.get(f"{sim.url}/metrics", headers={}).status_code == 200
    assert httpx.post(f"{sim.url}/metrics").status_code == 404


def _application(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "project": "shop",
            "source": {"repoURL": "https://git.example/shop.git", "path": "cart/dev"},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": NS},
        },
    }


def test_argocd_app_info_and_sync_total(sim: SimClusterHandle) -> None:
    custom = client.CustomObjectsApi(sim.api_client())
    group, version = APP_GROUP
    custom.create_namespaced_custom_object(
        group, version, "default", "applications", _application("cart")
    )

    def status(state: dict[str, Any], sync: str = "Synced", health: str = "Healthy") -> None:
        body = {
            "status": {
                "operationState": state,
                "sync": {"status": sync},
                "health": {"status": health},
            }
        }
        custom.patch_namespaced_custom_object(
            group, version, "default", "applications", "cart", body
        )

    s = scrape(sim)
    info = value(s, "argocd_app_info", name="cart", sync_status="Unknown", health_status="Unknown")
    assert info == 1
    assert not [x for x in s.get("argocd_app_sync_total", []) if x.labels["name"] == "cart"]

    t1, t2 = "2026-11-30T10:00:00Z", "2026-11-30T10:05:00Z"
    status({"phase": "Running", "startedAt": t1}, sync="OutOfSync", health="Progressing")
    status({"phase": "Succeeded", "startedAt": t1, "finishedAt": t1})
    status({"phase": "Succeeded", "startedAt": t1, "finishedAt": t1}, health="Degraded")
    s = scrape(sim)
    labels = {
        "name": "cart",
        "namespace": "default",
        "project": "shop",
        "dest_server": "https://kubernetes.default.svc",
    }
    assert value(s, "argocd_app_sync_total", **labels, phase="Succeeded") == 1
    info_labels = {**labels, "dest_namespace": NS, "repo": "https://git.example/shop.git"}
    assert (
        value(s, "argocd_app_info", **info_labels, sync_status="Synced", health_status="Degraded")
        == 1
    )
    assert len([x for x in s["argocd_app_info"] if x.labels["name"] == "cart"]) == 1

    status({"phase": "Running", "startedAt": t2}, sync="OutOfSync")
    status({"phase": "Failed", "startedAt": t2, "message": "boom"}, sync="OutOfSync")
    sim.kubectl(
        "annotate", "applications.argoproj.io", "cart", "-n", "default", "touched=yes"
    )  # another write with the same finished operation: not counted again
    s = scrape(sim)
    assert value(s, "argocd_app_sync_total", **labels, phase="Succeeded") == 1
    assert value(s, "argocd_app_sync_total", **labels, phase="Failed") == 1
    assert value(s, "argocd_app_info", name="cart", sync_status="OutOfSync") == 1


def test_real_prometheus_scrapes_and_evaluates_overcommit(
    sim: SimClusterHandle, tmp_path: Path
) -> None:
    host_port = sim.url.removeprefix("http://")
    prom = start_prometheus({"simcluster": [host_port]}, labels={"simcluster": {"cluster": "sim"}})
    try:
        prom.wait_up(1)

        # limits: 2 web pods x 1 core + batch 2 cores = 4; allocatable: 2 nodes x 4 = 8.
        def overcommit() -> float:
            result = prom.query(OVERCOMMIT)["result"]
            assert result, "no sample yet"
            return float(result[0]["value"][1])

        assert eventually(lambda: overcommit() == 0.5, timeout=15)
        assert prom.query(OVERCOMMIT + " > 0.9")["result"] == []
        up = prom.query('kube_deployment_status_replicas_available{cluster="sim",deployment="web"}')
        assert [float(r["value"][1]) for r in up["result"]] == [2.0]
    finally:
        prom.stop()
