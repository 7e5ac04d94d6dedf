"""Cluster-facing scenarios: what a real cluster never starts, the simulator never starts.

Pods whose ConfigMap volume is missing stay ContainerCreating with FailedMount; pods no
node fits stay Pending with FailedScheduling; pods whose ServiceAccount is missing are
refused (403) and their ReplicaSet reports FailedCreate. Each runs on the simulator and,
in the opt-in suite, on a real cluster (see ``test_scenarios.py``): the expected codes,
reasons and messages are the real ones.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.simcluster.helpers import eventually

IMAGE = "busybox:1.36"
SLEEP = ["sh", "-c", "sleep 3600"]


def _deployment(name: str, replicas: int = 1, **pod_spec: Any) -> dict[str, Any]:
    container = {"name": "web", "image": IMAGE, "command": SLEEP}
    container.update(pod_spec.pop("container", {}))
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [container], **pod_spec},
            },
        },
    }


def _pods(api: client.ApiClient, ns: str, app: str) -> list[Any]:
    return list(client.CoreV1Api(api).list_namespaced_pod(ns, label_selector=f"app={app}").items)


def _events(api: client.ApiClient, ns: str, reason: str) -> list[Any]:
    items = client.CoreV1Api(api).list_namespaced_event(ns).items
    return [e for e in items if e.reason == reason]


def _node_count(api: client.ApiClient) -> int:
    return len(client.CoreV1Api(api).list_node().items)


def _scheduled(pod: Any) -> Any:
    return next(c for c in pod.status.conditions or [] if c.type == "PodScheduled")


def missing_configmap_volume(api: client.ApiClient, ns: str) -> None:
    """ContainerCreating + FailedMount, never available; starts once the ConfigMap exists."""
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    body = _deployment(
        "mounts",
        volumes=[{"name": "cfg", "configMap": {"name": "missing"}}],
        container={"volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"}]},
    )
    apps.create_namespaced_deployment(ns, body)
    want = 'MountVolume.SetUp failed for volume "cfg" : configmap "missing" not found'

    def failed_mount() -> bool:
        return any(
            e.message == want and e.type == "Warning" for e in _events(api, ns, "FailedMount")
        )

    eventually(failed_mount, timeout=60)
    (pod,) = _pods(api, ns, "mounts")
    assert pod.status.phase == "Pending"
    (cs,) = pod.status.container_statuses
    assert cs.state.waiting.reason == "ContainerCreating" and not cs.ready
    dep = apps.read_namespaced_deployment("mounts", ns)
    assert not dep.status.available_replicas
    core.create_namespaced_config_map(
        ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="missing"), data={"k": "v"})
    )
    eventually(
        lambda: apps.read_namespaced_deployment("mounts", ns).status.available_replicas == 1,
        timeout=180,
        interval=0.2,
    )


def optional_volume_does_not_block(api: client.ApiClient, ns: str) -> None:
    apps = client.AppsV1Api(api)
    body = _deployment(
        "optional",
        volumes=[
            {"name": "cfg", "configMap": {"name": "absent", "optional": True}},
            {"name": "creds", "secret": {"secretName": "absent", "optional": True}},
        ],
    )
    apps.create_namespaced_deployment(ns, body)
    eventually(
        lambda: apps.read_namespaced_deployment("optional", ns).status.available_replicas == 1,
        timeout=120,
        interval=0.2,
    )


def _pending_with(api: client.ApiClient, ns: str, app: str, message: str, count: int = 1) -> None:
    def check() -> bool:
        pending = [p for p in _pods(api, ns, app) if not p.spec.node_name]
        if len(pending) != count:
            return False
        for pod in pending:
            cond = _scheduled(pod)
            assert (pod.status.phase, cond.status, cond.reason) == (
                "Pending",
                "False",
                "Unschedulable",
            )
            assert cond.message == message, cond.message
        return any(e.message == message for e in _events(api, ns, "FailedScheduling"))

    eventually(check, timeout=60, interval=0.2)


def unschedulable_node_selector(api: client.ApiClient, ns: str) -> None:
    n = _node_count(api)
    client.AppsV1Api(api).create_namespaced_deployment(
        ns, _deployment("picky", nodeSelector={"shipyard.dev/no-such-label": "x"})
    )
    _pending_with(
        api,
        ns,
        "picky",
        f"0/{n} nodes are available: {n} node(s) didn't match Pod's node affinity/selector. "
        f"preemption: 0/{n} nodes are available: {n} Preemption is not helpful for scheduling.",
    )


def unschedulable_required_node_affinity(api: client.ApiClient, ns: str) -> None:
    n = _node_count(api)
    term = {
        "matchExpressions": [{"key": "kubernetes.io/os", "operator": "In", "values": ["plan9"]}]
    }
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}
        }
    }
    client.AppsV1Api(api).create_namespaced_deployment(ns, _deployment("affine", affinity=affinity))
    _pending_with(
        api,
        ns,
        "affine",
        f"0/{n} nodes are available: {n} node(s) didn't match Pod's node affinity/selector. "
        f"preemption: 0/{n} nodes are available: {n} Preemption is not helpful for scheduling.",
    )


def unschedulable_memory_request(api: client.ApiClient, ns: str) -> None:
    n = _node_count(api)
    resources = {"requests": {"memory": "10Ti"}}
    client.AppsV1Api(api).create_namespaced_deployment(
        ns, _deployment("hungry", container={"resources": resources})
    )
    _pending_with(
        api,
        ns,
        "hungry",
        f"0/{n} nodes are available: {n} Insufficient memory. "
        f"preemption: 0/{n} nodes are available: {n} No preemption victims found for incoming pod.",
    )
    dep = client.AppsV1Api(api).read_namespaced_deployment("hungry", ns)
    assert not dep.status.available_replicas


def anti_affinity_beyond_node_count(api: client.ApiClient, ns: str) -> None:
    """Required anti-affinity on hostname: one pod per node, the rest Pending."""
    n = _node_count(api)
    term = {
        "labelSelector": {"matchLabels": {"app": "spread"}},
        "topologyKey": "kubernetes.io/hostname",
    }
    affinity = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}
    client.AppsV1Api(api).create_namespaced_deployment(
        ns, _deployment("spread", replicas=n + 2, affinity=affinity)
    )
    _pending_with(
        api,
        ns,
        "spread",
        f"0/{n} nodes are available: {n} node(s) didn't match pod anti-affinity rules. "
        f"preemption: 0/{n} nodes are available: {n} No preemption victims found for incoming pod.",
        count=2,
    )
    bound = [p for p in _pods(api, ns, "spread") if p.spec.node_name]
    assert len(bound) == n and len({p.spec.node_name for p in bound}) == n


def missing_service_account(api: client.ApiClient, ns: str) -> None:
    """403 on a pod create; FailedCreate on the ReplicaSet, no pods; default SA exists."""
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    eventually(lambda: core.read_namespaced_service_account("default", ns), timeout=30)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "lonely"},
        "spec": {
            "serviceAccountName": "missing",
            "containers": [{"name": "c", "image": IMAGE, "command": SLEEP}],
        },
    }
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod(ns, pod)
    body = json.loads(err.value.body)
    assert (err.value.status, body["reason"]) == (403, "Forbidden")
    assert body["message"] == (
        f'pods "lonely" is forbidden: error looking up service account {ns}/missing: '
        'serviceaccount "missing" not found'
    )
    apps.create_namespaced_deployment(ns, _deployment("nosa", serviceAccountName="missing"))

    def failed_create() -> Any:
        rss = apps.list_namespaced_replica_set(ns, label_selector="app=nosa").items
        if not rss:
            return None
        prefix = f'Error creating: pods "{rss[0].metadata.name}-" is forbidden: '
        want = (
            prefix
            + f'error looking up service account {ns}/missing: serviceaccount "missing" not found'
        )
        return [e for e in _events(api, ns, "FailedCreate") if e.message == want]

    eventually(failed_create, timeout=60)
    assert _pods(api, ns, "nosa") == []

    def replica_failure() -> bool:
        dep = apps.read_namespaced_deployment("nosa", ns)
        conds = {c.type: c for c in dep.status.conditions or []}
        cond = conds.get("ReplicaFailure")
        return bool(cond and cond.status == "True" and cond.reason == "FailedCreate")

    eventually(replica_failure, timeout=60)
    core.create_namespaced_service_account(
        ns, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="missing"))
    )
    eventually(lambda: len(_pods(api, ns, "nosa")) == 1, timeout=120, interval=0.2)


START_SCENARIOS = [
    missing_configmap_volume,
    optional_volume_does_not_block,
    unschedulable_node_selector,
    unschedulable_required_node_affinity,
    unschedulable_memory_request,
    anti_affinity_beyond_node_count,
    missing_service_account,
]
