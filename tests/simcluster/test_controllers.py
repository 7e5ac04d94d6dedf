"""Workload controllers: Deployments, StatefulSets, DaemonSets and Jobs."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from kubernetes import client, watch

from tests.fixtures.simcluster import SimClusterHandle
from tests.simcluster.helpers import eventually


@pytest.fixture
def apps(sim_cluster: SimClusterHandle) -> client.AppsV1Api:
    return client.AppsV1Api(sim_cluster.api_client())


@pytest.fixture
def core(sim_cluster: SimClusterHandle) -> client.CoreV1Api:
    return client.CoreV1Api(sim_cluster.api_client())


def _template(
    name: str, image: str, annotations: dict[str, str] | None = None
) -> client.V1PodTemplateSpec:
    return client.V1PodTemplateSpec(
        metadata=client.V1ObjectMeta(labels={"app": name}, annotations=annotations),
        spec=client.V1PodSpec(containers=[client.V1Container(name="app", image=image)]),
    )


def _deployment(
    name: str,
    replicas: int,
    image: str = "app:1",
    strategy: dict[str, Any] | None = None,
    deadline: int | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    }
    if strategy:
        body["spec"]["strategy"] = strategy
    if deadline is not None:
        body["spec"]["progressDeadlineSeconds"] = deadline
    return body


def _rolled_out(apps: client.AppsV1Api, ns: str, name: str) -> bool:
    d = apps.read_namespaced_deployment(name, ns)
    s = d.status
    return bool(
        s.observed_generation == d.metadata.generation
        and (s.updated_replicas or 0) == d.spec.replicas
        and (s.replicas or 0) == d.spec.replicas
        and (s.available_replicas or 0) == d.spec.replicas
    )


def _condition(apps: client.AppsV1Api, ns: str, name: str, ctype: str) -> Any:
    conds = apps.read_namespaced_deployment(name, ns).status.conditions or []
    return next((c for c in conds if c.type == ctype), None)


def test_deployment_creates_replicaset_and_pods(
    apps: client.AppsV1Api, core: client.CoreV1Api, sim_namespace: str
) -> None:
    apps.create_namespaced_deployment(sim_namespace, _deployment("web", 3))
    eventually(lambda: _rolled_out(apps, sim_namespace, "web"))
    (rs,) = apps.list_namespaced_replica_set(sim_namespace).items
    h = rs.metadata.labels["pod-template-hash"]
    assert rs.metadata.name == f"web-{h}"
    assert rs.metadata.annotations["deployment.kubernetes.io/revision"] == "1"
    assert rs.metadata.owner_references[0].kind == "Deployment"
    pods = core.list_namespaced_pod(sim_namespace, label_selector=f"pod-template-hash={h}").items
    assert len(pods) == 3 and all(p.status.phase == "Running" for p in pods)
    progressing = _condition(apps, sim_namespace, "web", "Progressing")
    assert (progressing.status, progressing.reason) == ("True", "NewReplicaSetAvailable")
    assert _condition(apps, sim_namespace, "web", "Available").status == "True"


def test_rolling_update_respects_surge_and_unavailability(
    apps: client.AppsV1Api, core: client.CoreV1Api, sim_namespace: str
) -> None:
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    apps.create_namespaced_deployment(sim_namespace, _deployment("roll", 4, strategy=strategy))
    eventually(lambda: _rolled_out(apps, sim_namespace, "roll"))
    peaks = {"pods": 0, "min_ready": 99}
    stop = threading.Event()

    def observe() -> None:
        w = watch.Watch()
        for _ in w.stream(core.list_namespaced_pod, sim_namespace, timeout_seconds=20):
            pods = [
                p
                for p in core.list_namespaced_pod(sim_namespace).items
                if p.metadata.deletion_timestamp is None
            ]
            ready = sum(
                1
                for p in pods
                if p.status.container_statuses and all(c.ready for c in p.status.container_statuses)
            )
            peaks["pods"] = max(peaks["pods"], len(pods))
            peaks["min_ready"] = min(peaks["min_ready"], ready)
            if stop.is_set():
                w.stop()

    t = threading.Thread(target=observe)
    t.start()
    apps.patch_namespaced_deployment(
        "roll",
        sim_namespace,
        {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "app:2"}]}}}},
    )
    eventually(
        lambda: (
            _rolled_out(apps, sim_namespace, "roll")
            and apps.read_namespaced_deployment("roll", sim_namespace).metadata.annotations[
                "deployment.kubernetes.io/revision"
            ]
            == "2"
        ),
        timeout=20,
    )
    stop.set()
    core.create_namespaced_config_map(
        sim_namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="nudge"))
    )
    t.join(5)
    assert peaks["pods"] <= 5, peaks
    assert peaks["min_ready"] >= 4 - 0 - 1, peaks  # transient pod list churn at most one
    rss = {
        rs.metadata.annotations["deployment.kubernetes.io/revision"]: rs.spec.replicas
        for rs in apps.list_namespaced_replica_set(sim_namespace).items
    }
    assert rss == {"1": 0, "2": 4}


def test_recreate_scales_old_to_zero_first(
    apps: client.AppsV1Api, core: client.CoreV1Api, sim_namespace: str
) -> None:
    apps.create_namespaced_deployment(
        sim_namespace, _deployment("rec", 2, strategy={"type": "Recreate"})
    )
    eventually(lambda: _rolled_out(apps, sim_namespace, "rec"))
    images_seen: list[set[str]] = []
    w = watch.Watch()

    def change() -> None:
        apps.patch_namespaced_deployment(
            "rec",
            sim_namespace,
            {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "app:2"}]}}}},
        )

    threading.Timer(0.1, change).start()
    for _ in w.stream(core.list_namespaced_pod, sim_namespace, timeout_seconds=10):
        live = core.list_namespaced_pod(sim_namespace).items
        images_seen.append({p.spec.containers[0].image for p in live})
        if (
            _rolled_out(apps, sim_namespace, "rec")
            and apps.read_namespaced_deployment("rec", sim_namespace).metadata.generation == 2
        ):
            w.stop()
    assert all(len(s) <= 1 for s in images_seen), images_seen
    assert {p.spec.containers[0].image for p in core.list_namespaced_pod(sim_namespace).items} == {
        "app:2"
    }


def test_progress_deadline_exceeded(apps: client.AppsV1Api, sim_namespace: str) -> None:
    apps.create_namespaced_deployment(
        sim_namespace, _deployment("stuck", 1, image="127.0.0.1:9/none/app:v1", deadline=1)
    )

    def exceeded() -> bool:
        c = _condition(apps, sim_namespace, "stuck", "Progressing")
        return bool(c and c.status == "False" and c.reason == "ProgressDeadlineExceeded")

    eventually(exceeded, timeout=10)
    assert _condition(apps, sim_namespace, "stuck", "Available").status == "False"


def test_scale_subresource(apps: client.AppsV1Api, sim_namespace: str) -> None:
    apps.create_namespaced_deployment(sim_namespace, _deployment("sc", 1))
    scale = apps.read_namespaced_deployment_scale("sc", sim_namespace)
    assert scale.spec.replicas == 1 and scale.status.selector == "app=sc"
    apps.patch_namespaced_deployment_scale("sc", sim_namespace, {"spec": {"replicas": 3}})
    eventually(
        lambda: (
            _rolled_out(apps, sim_namespace, "sc")
            and apps.read_namespaced_deployment("sc", sim_namespace).status.ready_replicas == 3
        )
    )


def test_deleting_deployment_collects_replicasets_and_pods(
    apps: client.AppsV1Api, core: client.CoreV1Api, sim_namespace: str
) -> None:
    apps.create_namespaced_deployment(sim_namespace, _deployment("gone", 2))
    eventually(lambda: _rolled_out(apps, sim_namespace, "gone"))
    apps.delete_namespaced_deployment("gone", sim_namespace)
    eventually(
        lambda: (
            not apps.list_namespaced_replica_set(sim_namespace).items
            and not core.list_namespaced_pod(sim_namespace).items
        )
    )


def test_statefulset_ordinal_pods_and_update(
    apps: client.AppsV1Api, core: client.CoreV1Api, sim_namespace: str
) -> None:
    sts = client.V1StatefulSet(
        metadata=client.V1ObjectMeta(name="db"),
        spec=client.V1StatefulSetSpec(
            replicas=3,
            service_name="db",
            selector=client.V1LabelSelector(match_labels={"app": "db"}),
            template=_template("db", "db:1"),
        ),
    )
    apps.create_namespaced_stateful_set(sim_namespace, sts)

    def ready(n: int) -> bool:
        s = apps.read_namespaced_stateful_set("db", sim_namespace).status
        return (
            (s.ready_replicas or 0) == n
            and s.update_revision == s.current_revision
            and (s.updated_replicas or 0) == n
        )

    eventually(lambda: ready(3))
    names = sorted(p.metadata.name for p in core.list_namespaced_pod(sim_namespace).items)
    assert names == ["db-0", "db-1", "db-2"]
    apps.patch_namespaced_stateful_set(
        "db",
        sim_namespace,
        {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "db:2"}]}}}},
    )
    eventually(
        lambda: (
            ready(3)
            and {p.spec.containers[0].image for p in core.list_namespaced_pod(sim_namespace).items}
            == {"db:2"}
        ),
        timeout=15,
    )


def test_daemonset_one_pod_per_node(
    apps: client.AppsV1Api, core: client.CoreV1Api, sim_namespace: str
) -> None:
    nodes = [n.metadata.name for n in core.list_node().items]
    ds = client.V1DaemonSet(
        metadata=client.V1ObjectMeta(name="agent"),
        spec=client.V1DaemonSetSpec(
            selector=client.V1LabelSelector(match_labels={"app": "agent"}),
            template=_template("agent", "agent:1"),
        ),
    )
    apps.create_namespaced_daemon_set(sim_namespace, ds)
    eventually(
        lambda: (
            apps.read_namespaced_daemon_set("agent", sim_namespace).status.number_ready
            == len(nodes)
        )
    )
    pods = core.list_namespaced_pod(sim_namespace).items
    assert sorted(p.spec.node_name for p in pods) == sorted(nodes)


def _job(
    name: str, annotations: dict[str, str] | None = None, completions: int = 1, backoff: int = 0
) -> client.V1Job:
    tpl = _template(name, "job:1", annotations)
    tpl.metadata.labels = None
    tpl.spec.restart_policy = "Never"
    return client.V1Job(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1JobSpec(template=tpl, completions=completions, backoff_limit=backoff),
    )


def _job_condition(batch: client.BatchV1Api, ns: str, name: str) -> str | None:
    conds = batch.read_namespaced_job(name, ns).status.conditions or []
    return next(
        (c.type for c in conds if c.type in ("Complete", "Failed") and c.status == "True"), None
    )


def test_job_runs_to_completion(
    sim_cluster: SimClusterHandle, core: client.CoreV1Api, sim_namespace: str
) -> None:
    batch = client.BatchV1Api(sim_cluster.api_client())
    job = batch.create_namespaced_job(sim_namespace, _job("once", completions=2))
    assert job.spec.selector.match_labels["batch.kubernetes.io/controller-uid"] == job.metadata.uid
    eventually(lambda: _job_condition(batch, sim_namespace, "once") == "Complete", timeout=10)
    status = batch.read_namespaced_job("once", sim_namespace).status
    assert status.succeeded == 2 and status.completion_time is not None
    pods = core.list_namespaced_pod(sim_namespace, label_selector="job-name=once").items
    assert len(pods) == 2


def test_job_fails_after_backoff_limit(sim_cluster: SimClusterHandle, sim_namespace: str) -> None:
    batch = client.BatchV1Api(sim_cluster.api_client())
    batch.create_namespaced_job(
        sim_namespace, _job("boom", annotations={"sim.shipyard.dev/exit-code": "2"}, backoff=1)
    )
    eventually(lambda: _job_condition(batch, sim_namespace, "boom") == "Failed", timeout=10)
    status = batch.read_namespaced_job("boom", sim_namespace).status
    assert status.failed == 2
    assert next(c for c in status.conditions if c.type == "Failed").reason == "BackoffLimitExceeded"


def test_foreground_deletion_of_deployment_removes_owner_last(
    apps: client.AppsV1Api, core: client.CoreV1Api, sim_namespace: str
) -> None:
    apps.create_namespaced_deployment(sim_namespace, _deployment("fg", 2))
    eventually(lambda: _rolled_out(apps, sim_namespace, "fg"))
    apps.delete_namespaced_deployment("fg", sim_namespace, propagation_policy="Foreground")

    def gone() -> bool:
        return not apps.list_namespaced_deployment(sim_namespace).items

    eventually(gone, timeout=10)
    assert not apps.list_namespaced_replica_set(sim_namespace).items
    assert not core.list_namespaced_pod(sim_namespace).items
