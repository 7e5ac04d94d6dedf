"""Cluster-facing scenarios of issue 13 part 2 (EndpointSlices, HPA bounds, namespace
termination), for the simulator and a real cluster alike (see ``test_scenarios.py``)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.simcluster.helpers import eventually
from tests.simcluster.scenarios import IMAGE


def _sleeper(name: str, replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 0,
                    "containers": [
                        {
                            "name": "app",
                            "image": IMAGE,
                            "command": ["sleep", "3600"],
                            "ports": [{"name": "http", "containerPort": 8080}],
                        }
                    ],
                },
            },
        },
    }


def service_endpoint_slices(api: client.ApiClient, ns: str) -> None:
    client.AppsV1Api(api).create_namespaced_deployment(ns, _sleeper("web", 2))
    core = client.CoreV1Api(api)
    svc = core.create_namespaced_service(
        ns,
        {
            "metadata": {"name": "web"},
            "spec": {
                "selector": {"app": "web"},
                "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
            },
        },
    )
    disc = client.DiscoveryV1Api(api)

    def ready_slices() -> list[Any]:
        items = disc.list_namespaced_endpoint_slice(
            ns, label_selector="kubernetes.io/service-name=web"
        ).items
        eps = [e for s in items for e in s.endpoints or []]
        return items if len(eps) == 2 and all(e.conditions.ready for e in eps) else []

    (sl,) = eventually(ready_slices, timeout=120)
    assert sl.address_type == "IPv4"
    assert sl.metadata.labels["endpointslice.kubernetes.io/managed-by"] == (
        "endpointslice-controller.k8s.io"
    )
    (ref,) = sl.metadata.owner_references
    assert (ref.kind, ref.name, ref.uid, ref.controller) == (
        "Service",
        "web",
        svc.metadata.uid,
        True,
    )
    assert [(p.name, p.port, p.protocol) for p in sl.ports] == [("http", 8080, "TCP")]
    for e in sl.endpoints:
        assert (e.conditions.ready, e.conditions.serving, e.conditions.terminating) == (
            True,
            True,
            False,
        )
        assert e.target_ref.kind == "Pod" and e.node_name
    ep = core.read_namespaced_endpoints("web", ns)
    assert len(ep.subsets[0].addresses) == 2 and ep.subsets[0].ports[0].port == 8080


def hpa_bounds_replicas(api: client.ApiClient, ns: str) -> None:
    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment(ns, _sleeper("api", 1))
    client.AutoscalingV2Api(api).create_namespaced_horizontal_pod_autoscaler(
        ns,
        {
            "metadata": {"name": "api"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api"},
                "minReplicas": 2,
                "maxReplicas": 3,
            },
        },
    )
    eventually(lambda: apps.read_namespaced_deployment("api", ns).spec.replicas == 2, timeout=90)

    def status() -> Any:
        hpa = client.AutoscalingV2Api(api).read_namespaced_horizontal_pod_autoscaler("api", ns)
        return hpa.status if hpa.status and hpa.status.desired_replicas == 2 else None

    st = eventually(status, timeout=90)
    conds = {c.type: c for c in st.conditions}
    assert conds["AbleToScale"].status == "True"


def namespace_terminating(api: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(api)
    name = f"{ns}-t"
    core.create_namespace({"metadata": {"name": name}})
    core.create_namespaced_config_map(
        name, {"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}
    )
    core.delete_namespace(name)
    try:

        def held() -> Any:
            got = core.read_namespace(name)
            types = {c.type for c in got.status.conditions or []}
            return got if "NamespaceFinalizersRemaining" in types else None

        got = eventually(held, timeout=60)
        assert got.status.phase == "Terminating"
        conds = {c.type: (c.status, c.reason, c.message) for c in got.status.conditions}
        assert conds["NamespaceFinalizersRemaining"] == (
            "True",
            "SomeFinalizersRemain",
            "Some content in the namespace has finalizers remaining: example.com/hold in 1 "
            "resource instances",
        )
        with pytest.raises(ApiException) as err:
            core.create_namespaced_config_map(name, {"metadata": {"name": "late"}})
        body = json.loads(err.value.body)
        assert (err.value.status, body["reason"], body["message"]) == (
            403,
            "Forbidden",
            f'configmaps "late" is forbidden: unable to create new content in namespace '
            f"{name} because it is being terminated",
        )
    finally:
        core.patch_namespaced_config_map("held", name, {"metadata": {"finalizers": None}})

    def gone() -> bool:
        try:
            core.read_namespace(name)
        except ApiException as exc:
            return exc.status == 404
        return False

    eventually(gone, timeout=120)


SCENARIOS_NEEDS2 = [service_endpoint_slices, hpa_bounds_replicas, namespace_terminating]
