"""Cluster-facing scenarios that must hold on the simulator and on a real cluster alike.

Each takes a ``kubernetes.client.ApiClient`` and an empty namespace. They use nothing
simulator-specific (no ``sim.shipyard.dev`` annotations, images a real cluster can
pull), so ``test_scenarios.py`` runs them against both.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from tests.simcluster.helpers import eventually

IMAGE = "busybox:1.36"


def _cm(name: str, **meta: Any) -> client.V1ConfigMap:
    return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name, **meta), data={"k": "v"})


def crud_and_errors(api: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(api)
    created = core.create_namespaced_config_map(ns, _cm("a"))
    assert created.metadata.uid and created.metadata.resource_version
    with pytest.raises(ApiException) as err:
        core.read_namespaced_config_map("missing", ns)
    body = json.loads(err.value.body)
    assert (err.value.status, body["reason"], body["details"]["kind"]) == (
        404,
        "NotFound",
        "configmaps",
    )
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map(ns, _cm("a"))
    assert (err.value.status, json.loads(err.value.body)["reason"]) == (409, "AlreadyExists")
    core.patch_namespaced_config_map("a", ns, {"data": {"k": "2"}})
    created.data = {"k": "stale"}
    with pytest.raises(ApiException) as err:
        core.replace_namespaced_config_map("a", ns, created)
    assert (err.value.status, json.loads(err.value.body)["reason"]) == (409, "Conflict")


def server_side_apply_conflict(api: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(api)
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "ssa"},
        "data": {"k": "a"},
    }
    ct = "application/apply-patch+yaml"
    core.patch_namespaced_config_map("ssa", ns, body, field_manager="one", _content_type=ct)
    body["data"] = {"k": "b"}
    with pytest.raises(ApiException) as err:
        core.patch_namespaced_config_map("ssa", ns, body, field_manager="two", _content_type=ct)
    message = json.loads(err.value.body)["message"]
    assert err.value.status == 409 and 'conflict with "one"' in message and ".data.k" in message
    forced = core.patch_namespaced_config_map(
        "ssa", ns, body, field_manager="two", force=True, _content_type=ct
    )
    assert forced.data == {"k": "b"}


def watch_sequence(api: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(api)
    rv = core.list_namespaced_config_map(ns).metadata.resource_version
    seen: list[tuple[str, str]] = []

    def mutate() -> None:
        core.create_namespaced_config_map(ns, _cm("w"))
        core.patch_namespaced_config_map("w", ns, {"data": {"k": "2"}})
        core.delete_namespaced_config_map("w", ns)

    timer = threading.Timer(0.3, mutate)
    timer.start()
    w = watch.Watch()
    for ev in w.stream(
        core.list_namespaced_config_map, ns, resource_version=rv, timeout_seconds=20
    ):
        if ev["object"].metadata.name == "w":
            seen.append((ev["type"], ev["object"].metadata.name))
        if ev["type"] == "DELETED":
            w.stop()
    timer.join()
    assert [t for t, _ in seen] == ["ADDED", "MODIFIED", "DELETED"]


def garbage_collection(api: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(api)
    owner = core.create_namespaced_config_map(ns, _cm("owner"))
    ref = client.V1OwnerReference(
        api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid
    )
    core.create_namespaced_config_map(ns, _cm("dependent", owner_references=[ref]))
    core.delete_namespaced_config_map("owner", ns, propagation_policy="Background")

    def collected() -> bool:
        try:
            core.read_namespaced_config_map("dependent", ns)
            return False
        except ApiException as exc:
            return exc.status == 404

    eventually(collected, timeout=60)


def deployment_rollout(api: client.ApiClient, ns: str) -> None:
    apps = client.AppsV1Api(api)
    container = {"name": "app", "image": IMAGE, "command": ["sleep", "3600"]}
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [container]},
            },
        },
    }
    apps.create_namespaced_deployment(ns, body)

    def done(revision: str) -> bool:
        d = apps.read_namespaced_deployment("web", ns)
        s = d.status
        return bool(
            s.observed_generation == d.metadata.generation
            and s.updated_replicas == 2
            and s.available_replicas == 2
            and (s.replicas or 0) == 2
            and d.metadata.annotations.get("deployment.kubernetes.io/revision") == revision
        )

    eventually(lambda: done("1"), timeout=120)
    patch = {"spec": {"template": {"metadata": {"annotations": {"rev": "2"}}}}}
    apps.patch_namespaced_deployment("web", ns, patch)
    eventually(lambda: done("2"), timeout=120)
    revisions = sorted(
        rs.metadata.annotations["deployment.kubernetes.io/revision"]
        for rs in apps.list_namespaced_replica_set(ns, label_selector="app=web").items
    )
    assert revisions == ["1", "2"]


def job_completes(api: client.ApiClient, ns: str) -> None:
    batch = client.BatchV1Api(api)
    spec = {
        "restartPolicy": "Never",
        "containers": [{"name": "job", "image": IMAGE, "command": ["true"]}],
    }
    body = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "once"},
        "spec": {"backoffLimit": 0, "template": {"spec": spec}},
    }
    batch.create_namespaced_job(ns, body)

    def complete() -> bool:
        conds = batch.read_namespaced_job("once", ns).status.conditions or []
        return any(c.type == "Complete" and c.status == "True" for c in conds)

    eventually(complete, timeout=120)
    assert batch.read_namespaced_job("once", ns).status.succeeded == 1


SCENARIOS = [
    crud_and_errors,
    server_side_apply_conflict,
    watch_sequence,
    garbage_collection,
    deployment_rollout,
    job_completes,
]
