"""The simulator's scheduler, kubelet volume set-up and ServiceAccount checks, driven
through kubectl and the official Python client on a private cluster with small nodes."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.fixtures.simcluster import SimClusterHandle, fast_config, start_sim_cluster
from tests.simcluster.helpers import eventually

IMAGE = "busybox:1.36"


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimClusterHandle]:
    """Two nodes of 2 CPUs and 4Gi; node 2 labelled zone=b and limited to 3 pods."""
    config = dataclasses.replace(
        fast_config(),
        nodes=2,
        node_cpu="2",
        node_memory="4Gi",
        node_labels={"topology.kubernetes.io/region": "sim"},
        node_overrides={"sim-node-2": {"labels": {"zone": "b"}, "pods": "3"}},
        schedule_retry=0.3,
    )
    handle = start_sim_cluster(tmp_path_factory.mktemp("small"), config)
    try:
        yield handle
    finally:
        handle.cluster.stop()


@pytest.fixture
def ns(small: SimClusterHandle) -> Iterator[str]:
    name = f"s-{uuid.uuid4().hex[:8]}"
    small.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        small.kubectl("delete", "namespace", name, "--wait=false")


def _apply(h: SimClusterHandle, ns: str, obj: dict[str, Any]) -> None:
    h.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(obj))


def _pod(name: str, **spec: Any) -> dict[str, Any]:
    container = {"name": "c", "image": IMAGE, **spec.pop("container", {})}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"containers": [container], **spec},
    }


def _get(h: SimClusterHandle, ns: str, name: str) -> Any:
    return client.CoreV1Api(h.api_client()).read_namespaced_pod(name, ns)


def _out(h: SimClusterHandle, *args: str) -> str:
    return h.kubectl(*args).stdout


def test_nodes_get_allocatable_and_labels_from_the_config(small: SimClusterHandle) -> None:
    nodes = json.loads(_out(small, "get", "nodes", "-o", "json"))["items"]
    by_name = {n["metadata"]["name"]: n for n in nodes}
    one, two = by_name["sim-node-1"], by_name["sim-node-2"]
    assert one["status"]["allocatable"] == {"cpu": "2", "memory": "4Gi", "pods": "110"}
    assert two["status"]["allocatable"]["pods"] == "3"
    assert one["metadata"]["labels"]["kubernetes.io/hostname"] == "sim-node-1"
    assert one["metadata"]["labels"]["topology.kubernetes.io/region"] == "sim"
    assert two["metadata"]["labels"]["zone"] == "b" and "zone" not in one["metadata"]["labels"]


def test_node_selector_matches_an_override_label(small: SimClusterHandle, ns: str) -> None:
    _apply(small, ns, _pod("zoned", nodeSelector={"zone": "b"}))
    assert _get(small, ns, "zoned").spec.node_name == "sim-node-2"


def test_bound_requests_count_and_a_deleted_pod_makes_room(
    small: SimClusterHandle, ns: str
) -> None:
    big = {"resources": {"requests": {"cpu": "1500m", "memory": "1Gi"}}}
    _apply(small, ns, _pod("a", container=big))
    _apply(small, ns, _pod("b", container=big))
    _apply(small, ns, _pod("c", container=big))
    pod = _get(small, ns, "c")
    cond = next(c for c in pod.status.conditions if c.type == "PodScheduled")
    assert not pod.spec.node_name and cond.reason == "Unschedulable"
    assert cond.message == (
        "0/2 nodes are available: 2 Insufficient cpu. "
        "preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod."
    )
    table = _out(small, "get", "pod", "c", "-n", ns)
    assert "Pending" in table
    events = _out(small, "get", "events", "-n", ns, "--field-selector", "reason=FailedScheduling")
    assert "Insufficient cpu" in events
    small.kubectl("delete", "pod", "a", "-n", ns, "--wait=false")
    eventually(lambda: _get(small, ns, "c").spec.node_name, timeout=10)
    eventually(lambda: _get(small, ns, "c").status.phase == "Running", timeout=10)


def test_a_node_label_added_later_schedules_the_pending_pod(
    small: SimClusterHandle, ns: str
) -> None:
    _apply(small, ns, _pod("waits", nodeSelector={"shipyard.dev/gpu": "yes"}))
    assert not _get(small, ns, "waits").spec.node_name
    small.kubectl("label", "node", "sim-node-1", "shipyard.dev/gpu=yes")
    try:
        eventually(lambda: _get(small, ns, "waits").spec.node_name == "sim-node-1", timeout=10)
    finally:
        small.kubectl("label", "node", "sim-node-1", "shipyard.dev/gpu-")


def test_too_many_pods_and_unschedulable_node_are_named(small: SimClusterHandle, ns: str) -> None:
    small.kubectl("cordon", "sim-node-1")
    try:
        for i in range(5):
            _apply(small, ns, _pod(f"p{i}", nodeSelector={"zone": "b"}))
        _apply(small, ns, _pod("extra"))
        msg = next(c for c in _get(small, ns, "extra").status.conditions).message
        assert msg.startswith(
            "0/2 nodes are available: 1 Too many pods, 1 node(s) were unschedulable."
        )
        assert msg.endswith(
            "preemption: 0/2 nodes are available: 1 No preemption victims found for incoming "
            "pod, 1 Preemption is not helpful for scheduling."
        )
    finally:
        small.kubectl("uncordon", "sim-node-1")
    eventually(lambda: _get(small, ns, "extra").spec.node_name == "sim-node-1", timeout=10)


def test_missing_pvc_is_a_scheduling_failure(small: SimClusterHandle, ns: str) -> None:
    vol = [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]
    _apply(small, ns, _pod("claims", volumes=vol))
    cond = next(c for c in _get(small, ns, "claims").status.conditions)
    assert cond.message == (
        '0/2 nodes are available: persistentvolumeclaim "data" not found. '
        "preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    )
    pvc = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    _apply(small, ns, pvc)
    eventually(lambda: _get(small, ns, "claims").spec.node_name, timeout=10)


def test_missing_secret_and_key_block_mounts(small: SimClusterHandle, ns: str) -> None:
    vols = [
        {"name": "creds", "secret": {"secretName": "creds"}},
        {
            "name": "proj",
            "projected": {
                "sources": [{"configMap": {"name": "cm", "items": [{"key": "x", "path": "x"}]}}]
            },
        },
    ]
    small.kubectl("create", "configmap", "cm", "-n", ns, "--from-literal=y=1")
    _apply(small, ns, _pod("mounts", volumes=vols))

    def messages() -> set[str]:
        items = client.CoreV1Api(small.api_client()).list_namespaced_event(ns).items
        return {e.message for e in items if e.reason == "FailedMount"}

    eventually(
        lambda: (
            {
                'MountVolume.SetUp failed for volume "creds" : secret "creds" not found',
                'MountVolume.SetUp failed for volume "proj" : '
                "configmap references non-existent config key: x",
            }
            <= messages()
        ),
        timeout=10,
    )
    (cs,) = _get(small, ns, "mounts").status.container_statuses
    assert cs.state.waiting.reason == "ContainerCreating"
    small.kubectl("create", "secret", "generic", "creds", "-n", ns, "--from-literal=p=1")
    client.CoreV1Api(small.api_client()).patch_namespaced_config_map("cm", ns, {"data": {"x": "1"}})
    eventually(lambda: _get(small, ns, "mounts").status.phase == "Running", timeout=10)


def test_job_with_missing_service_account_reports_failed_create(
    small: SimClusterHandle, ns: str
) -> None:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "nosa"},
        "spec": {
            "template": {
                "spec": {
                    "serviceAccountName": "robot",
                    "restartPolicy": "Never",
                    "containers": [{"name": "c", "image": IMAGE}],
                }
            }
        },
    }
    _apply(small, ns, job)
    want = (
        f'Error creating: pods "nosa-" is forbidden: error looking up service account '
        f'{ns}/robot: serviceaccount "robot" not found'
    )

    def failed() -> bool:
        items = client.CoreV1Api(small.api_client()).list_namespaced_event(ns).items
        return any(e.reason == "FailedCreate" and e.message == want for e in items)

    eventually(failed, timeout=10)
    small.kubectl("create", "serviceaccount", "robot", "-n", ns)
    eventually(
        lambda: (
            client.BatchV1Api(small.api_client()).read_namespaced_job("nosa", ns).status.succeeded
        ),
        timeout=15,
    )


def test_default_service_account_is_there_at_once_and_comes_back(
    small: SimClusterHandle,
) -> None:
    core = client.CoreV1Api(small.api_client())
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="sa-at-once")))
    try:
        # No wait: the default ServiceAccount exists when the namespace create returns.
        core.create_namespaced_pod("sa-at-once", _pod("first"))
        small.kubectl("delete", "serviceaccount", "default", "-n", "sa-at-once")
        eventually(
            lambda: core.read_namespaced_service_account("default", "sa-at-once"), timeout=10
        )
    finally:
        core.delete_namespace("sa-at-once")
