"""verify_rollout: the pure judgement and the watch loop against the simulator."""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Any

import pytest

from shipyard.core.kube import KubeClient
from shipyard.core.selectors import label_selector
from tasks.verify_rollout import (
    VerifyConfig,
    evaluate_rollout,
    parse_workload,
    watch_rollout,
)
from tests.fixtures.simcluster import LocalRegistry, SimClusterHandle
from tests.tasks.k8s_objects import deployment


def _apply(sim: SimClusterHandle, obj: dict[str, Any]) -> None:
    kube = KubeClient(sim.api_client())
    res = kube.resource(obj["apiVersion"], obj["kind"])
    kube.apply(res, obj, "test")


def _verify(sim: SimClusterHandle, ns: str, name: str = "web", **kw: Any) -> Any:
    cfg = VerifyConfig(
        namespace=ns, workload=f"deployment/{name}", timeout_seconds=kw.pop("timeout", 20), **kw
    )
    return watch_rollout(KubeClient(sim.api_client()), cfg)


# --- pure core ---------------------------------------------------------------------------


def _dep(**status: Any) -> dict[str, Any]:
    d = deployment("web", "ns", "img:1", replicas=2)
    d["metadata"]["generation"] = 2
    d["status"] = {"observedGeneration": 2, **status}
    return d


def _pod(image: str = "img:1", waiting: str | None = None, image_id: str = "") -> dict[str, Any]:
    state: dict[str, Any] = (
        {"waiting": {"reason": waiting, "message": "boom"}} if waiting else {"running": {}}
    )
    return {
        "metadata": {"name": "web-1", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "app", "image": image}]},
        "status": {
            "phase": "Running",
            "containerStatuses": [{"name": "app", "state": state, "imageID": image_id}],
        },
    }


def test_complete_deployment_is_healthy() -> None:
    s = evaluate_rollout(
        _dep(replicas=2, updatedReplicas=2, readyReplicas=2, availableReplicas=2), []
    )
    assert s.state == "healthy" and (s.ready, s.desired) == (2, 2)


def test_unobserved_generation_is_progressing_not_failed() -> None:
    d = _dep(replicas=2, updatedReplicas=2, readyReplicas=2, availableReplicas=2)
    d["status"]["observedGeneration"] = 1
    assert evaluate_rollout(d, []).state == "progressing"


def test_old_replicas_pending_is_progressing() -> None:
    s = evaluate_rollout(
        _dep(replicas=3, updatedReplicas=2, readyReplicas=2, availableReplicas=2), []
    )
    assert s.state == "progressing"


@pytest.mark.parametrize(
    "reason", ["ImagePullBackOff", "ErrImagePull", "CrashLoopBackOff", "CreateContainerConfigError"]
)
def test_new_pod_waiting_reason_fails_fast(reason: str) -> None:
    s = evaluate_rollout(_dep(replicas=2, updatedReplicas=1), [_pod(waiting=reason)])
    assert s.state == "failed" and s.reason == reason and "boom" in s.message


def test_old_pod_waiting_reason_is_ignored() -> None:
    s = evaluate_rollout(
        _dep(replicas=2, updatedReplicas=1), [_pod(image="img:0", waiting="CrashLoopBackOff")]
    )
    assert s.state == "progressing"


def test_progress_deadline_exceeded_fails() -> None:
    d = _dep(
        replicas=2,
        conditions=[
            {
                "type": "Progressing",
                "status": "False",
                "reason": "ProgressDeadlineExceeded",
                "message": "timed out",
            }
        ],
    )
    assert evaluate_rollout(d, []).reason == "ProgressDeadlineExceeded"


def test_digest_mismatch_fails_a_complete_rollout() -> None:
    d = _dep(replicas=2, updatedReplicas=2, readyReplicas=2, availableReplicas=2)
    d["spec"]["replicas"] = 1
    good = "sha256:" + "a" * 64
    bad = "sha256:" + "b" * 64
    assert evaluate_rollout(d, [_pod(image_id=f"r/img@{good}")], good).state == "healthy"
    s = evaluate_rollout(d, [_pod(image_id=f"r/img@{bad}")], good)
    assert s.reason == "DigestMismatch"


def test_statefulset_and_daemonset_rules() -> None:
    sts = {
        "kind": "StatefulSet",
        "metadata": {"generation": 1},
        "spec": {"replicas": 2},
        "status": {
            "observedGeneration": 1,
            "readyReplicas": 2,
            "updatedReplicas": 2,
            "currentRevision": "a",
            "updateRevision": "b",
        },
    }
    assert evaluate_rollout(sts, []).state == "progressing"
    sts["status"]["currentRevision"] = "b"
    assert evaluate_rollout(sts, []).state == "healthy"
    ds = {
        "kind": "DaemonSet",
        "metadata": {"generation": 1},
        "spec": {},
        "status": {
            "observedGeneration": 1,
            "desiredNumberScheduled": 1,
            "updatedNumberScheduled": 1,
            "numberAvailable": 0,
            "numberReady": 0,
        },
    }
    assert evaluate_rollout(ds, []).state == "progressing"
    ds["status"].update(numberAvailable=1, numberReady=1)
    assert evaluate_rollout(ds, []).state == "healthy"


def test_label_selector_and_workload_parsing() -> None:
    sel = {
        "matchLabels": {"b": "2", "a": "1"},
        "matchExpressions": [{"key": "t", "operator": "In", "values": ["x", "y"]}],
    }
    assert label_selector(sel) == "a=1,b=2,t in (x,y)"
    assert parse_workload("Deployment/web") == ("Deployment", "web")
    from shipyard.core.errors import ConfigError

    with pytest.raises(ConfigError):
        parse_workload("pod/web")


# --- against the simulator -----------------------------------------------------------


def test_good_image_verifies(sim_cluster: SimClusterHandle, sim_namespace: str) -> None:
    _apply(sim_cluster, deployment("web", sim_namespace, "shop/web:1", replicas=2))
    # The simulator resolves a host-less image to the sha256 of its reference.
    digest = "sha256:" + hashlib.sha256(b"shop/web:1").hexdigest()
    result = _verify(sim_cluster, sim_namespace, digest=digest)
    assert result.healthy, result
    assert result.ready == 2
    assert result.images == [f"docker.io/shop/web@{digest}"]


def test_missing_image_fails_fast(
    sim_cluster: SimClusterHandle, sim_namespace: str, oci_registry: LocalRegistry
) -> None:
    _apply(sim_cluster, deployment("web", sim_namespace, f"{oci_registry.host}/shop/web:missing"))
    started = time.monotonic()
    result = _verify(sim_cluster, sim_namespace, timeout=30)
    assert not result.healthy
    assert result.reason in ("ErrImagePull", "ImagePullBackOff")
    assert "shop/web:missing" in result.message
    assert time.monotonic() - started < 5


def test_crash_loop_fails_fast(sim_cluster: SimClusterHandle, sim_namespace: str) -> None:
    _apply(sim_cluster, deployment("web", sim_namespace, "shop/web:1", crash=True))
    result = _verify(sim_cluster, sim_namespace)
    assert (result.healthy, result.reason) == (False, "CrashLoopBackOff")
    assert "back-off" in result.message


def test_pushed_digest_is_checked(
    sim_cluster: SimClusterHandle, sim_namespace: str, oci_registry: LocalRegistry
) -> None:
    digest = oci_registry.push_image("shop/web", "1")
    _apply(sim_cluster, deployment("web", sim_namespace, f"{oci_registry.host}/shop/web:1"))
    assert _verify(sim_cluster, sim_namespace, digest=digest).healthy
    other = "sha256:" + "0" * 64
    result = _verify(sim_cluster, sim_namespace, digest=other)
    assert result.reason == "DigestMismatch"


def test_never_ready_times_out_without_error(
    sim_cluster: SimClusterHandle, sim_namespace: str
) -> None:
    _apply(sim_cluster, deployment("web", sim_namespace, "shop/web:1", ready=False))
    result = _verify(sim_cluster, sim_namespace, timeout=1.5)
    assert (result.healthy, result.reason) == (False, "Timeout")
    assert 1.4 < result.seconds < 3


def test_verify_waits_for_a_workload_created_later(
    sim_cluster: SimClusterHandle, sim_namespace: str
) -> None:
    timer = threading.Timer(
        0.5, _apply, (sim_cluster, deployment("web", sim_namespace, "shop/web:1"))
    )
    timer.start()
    try:
        assert _verify(sim_cluster, sim_namespace).healthy
    finally:
        timer.join()


@pytest.mark.parametrize("kind", ["429", "500", "drop"])
def test_api_faults_during_verify_are_retried(
    sim_cluster: SimClusterHandle, sim_namespace: str, kind: str
) -> None:
    _apply(sim_cluster, deployment("web", sim_namespace, "shop/web:1"))
    sim_cluster.faults.add(kind=kind, verb="list", count=2, namespace=sim_namespace)
    sim_cluster.faults.add(kind=kind, verb="watch", count=2, namespace=sim_namespace)
    sim_cluster.faults.add(kind=kind, verb="get", count=1, resource="*")
    result = _verify(sim_cluster, sim_namespace)
    assert result.healthy, result


def test_verify_is_watch_based(sim_cluster: SimClusterHandle, sim_namespace: str) -> None:
    _apply(sim_cluster, deployment("web", sim_namespace, "shop/web:1", startup=1.0))
    kube = KubeClient(sim_cluster.api_client())
    cfg = VerifyConfig(namespace=sim_namespace, workload="deployment/web", timeout_seconds=20)
    assert watch_rollout(kube, cfg).healthy
    assert kube.requests <= 7  # discovery + 3 lists + 3 watches (workload, pods, events)


def _pod_template(name: str, image: str) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": name}},
        "spec": {"containers": [{"name": "app", "image": image}]},
    }


@pytest.mark.parametrize("kind", ["StatefulSet", "DaemonSet"])
def test_statefulset_and_daemonset_verify(
    sim_cluster: SimClusterHandle, sim_namespace: str, kind: str
) -> None:
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": "db"}},
        "template": _pod_template("db", "shop/db:1"),
    }
    if kind == "StatefulSet":
        spec.update(replicas=2, serviceName="db")
    obj = {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": "db", "namespace": sim_namespace},
        "spec": spec,
    }
    _apply(sim_cluster, obj)
    cfg = VerifyConfig(namespace=sim_namespace, workload=f"{kind.lower()}/db", timeout_seconds=20)
    result = watch_rollout(KubeClient(sim_cluster.api_client()), cfg)
    assert result.healthy, result
    obj["spec"]["template"] = _pod_template("db", "shop/db:2")
    obj["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "SIM_CRASH", "value": "true"}
    ]
    _apply(sim_cluster, obj)
    result = watch_rollout(KubeClient(sim_cluster.api_client()), cfg)
    assert (result.healthy, result.reason) == (False, "CrashLoopBackOff")
