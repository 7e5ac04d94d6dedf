"""The simulated kubelet: image checks against a real registry, failure simulation."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from simcluster.registry import parse_image

from tests.fixtures.simcluster import (
    LocalRegistry,
    SimClusterHandle,
    dockerconfigjson,
    start_registry,
)
from tests.simcluster.helpers import eventually


@pytest.fixture
def core(sim_cluster: SimClusterHandle) -> client.CoreV1Api:
    return client.CoreV1Api(sim_cluster.api_client())


def _pod(
    name: str,
    image: str,
    annotations: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
    pull_secret: str | None = None,
    restart: str = "Always",
) -> client.V1Pod:
    container = client.V1Container(
        name="main",
        image=image,
        env=[client.V1EnvVar(name=k, value=v) for k, v in (env or {}).items()] or None,
    )
    secrets = [client.V1LocalObjectReference(name=pull_secret)] if pull_secret else None
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, annotations=annotations),
        spec=client.V1PodSpec(
            containers=[container], image_pull_secrets=secrets, restart_policy=restart
        ),
    )


def _container_status(core: client.CoreV1Api, ns: str, name: str) -> Any:
    statuses = core.read_namespaced_pod(name, ns).status.container_statuses
    return statuses[0] if statuses else None


def _waiting_reason(core: client.CoreV1Api, ns: str, name: str) -> str | None:
    cs = _container_status(core, ns, name)
    return cs.state.waiting.reason if cs and cs.state.waiting else None


def test_parse_image_references() -> None:
    assert parse_image("127.0.0.1:5000/team/app:v1") == parse_image("127.0.0.1:5000/team/app:v1")
    ref = parse_image("127.0.0.1:5000/team/app@sha256:abc")
    assert (ref.registry, ref.repository, ref.reference) == (
        "127.0.0.1:5000",
        "team/app",
        "sha256:abc",
    )
    hub = parse_image("nginx")
    assert (hub.registry, hub.repository, hub.reference) == (None, "library/nginx", "latest")
    local = parse_image("localhost/app:2")
    assert (local.registry, local.repository, local.reference) == ("localhost", "app", "2")


def test_image_without_registry_host_is_assumed_present(
    core: client.CoreV1Api, sim_namespace: str
) -> None:
    core.create_namespaced_pod(sim_namespace, _pod("hub", "nginx:1.27"))

    def running() -> bool:
        pod = core.read_namespaced_pod("hub", sim_namespace)
        return pod.status.phase == "Running" and pod.status.container_statuses[0].ready

    eventually(running)
    cs = _container_status(core, sim_namespace, "hub")
    assert cs.image_id.startswith("docker.io/library/nginx@sha256:")
    assert core.read_namespaced_pod("hub", sim_namespace).status.pod_ip


def test_pull_from_real_registry_sets_image_id(
    core: client.CoreV1Api, sim_namespace: str, oci_registry: LocalRegistry
) -> None:
    digest = oci_registry.push_image("shop/api", "v1")
    core.create_namespaced_pod(sim_namespace, _pod("reg", f"{oci_registry.host}/shop/api:v1"))
    eventually(
        lambda: (
            _container_status(core, sim_namespace, "reg")
            and _container_status(core, sim_namespace, "reg").ready
        )
    )
    assert (
        _container_status(core, sim_namespace, "reg").image_id
        == f"{oci_registry.host}/shop/api@{digest}"
    )


def test_missing_image_goes_err_image_pull_then_backoff_then_recovers(
    core: client.CoreV1Api, sim_namespace: str, oci_registry: LocalRegistry
) -> None:
    image = f"{oci_registry.host}/shop/late:v1"
    core.create_namespaced_pod(sim_namespace, _pod("late", image))
    eventually(lambda: _waiting_reason(core, sim_namespace, "late") == "ErrImagePull")
    cs = _container_status(core, sim_namespace, "late")
    assert "not found" in cs.state.waiting.message
    eventually(lambda: _waiting_reason(core, sim_namespace, "late") == "ImagePullBackOff")
    events = core.list_namespaced_event(sim_namespace, field_selector="involvedObject.name=late")
    assert any(e.reason == "Failed" and "Failed to pull image" in e.message for e in events.items)
    oci_registry.push_image("shop/late", "v1")
    eventually(
        lambda: core.read_namespaced_pod("late", sim_namespace).status.phase == "Running",
        timeout=15,
    )


def test_unreachable_registry_is_err_image_pull(core: client.CoreV1Api, sim_namespace: str) -> None:
    core.create_namespaced_pod(sim_namespace, _pod("unreach", "127.0.0.1:9/none/app:v1"))
    eventually(
        lambda: (
            _waiting_reason(core, sim_namespace, "unreach") in ("ErrImagePull", "ImagePullBackOff")
        )
    )


def test_pull_secret_credentials_are_used(core: client.CoreV1Api, sim_namespace: str) -> None:
    registry = start_registry(htpasswd=("robot", "s3cret"))
    try:
        registry.push_image("private/app", "v1")
        core.create_namespaced_pod(
            sim_namespace, _pod("nocreds", f"{registry.host}/private/app:v1")
        )
        eventually(
            lambda: (
                _waiting_reason(core, sim_namespace, "nocreds")
                in ("ErrImagePull", "ImagePullBackOff")
            )
        )
        assert (
            "authorization"
            in _container_status(core, sim_namespace, "nocreds").state.waiting.message
            or "401" in _container_status(core, sim_namespace, "nocreds").state.waiting.message
        )
        secret = client.V1Secret(
            metadata=client.V1ObjectMeta(name="regcred"),
            type="kubernetes.io/dockerconfigjson",
            data={".dockerconfigjson": dockerconfigjson(registry.host, "robot", "s3cret")},
        )
        core.create_namespaced_secret(sim_namespace, secret)
        core.create_namespaced_pod(
            sim_namespace, _pod("creds", f"{registry.host}/private/app:v1", pull_secret="regcred")
        )
        eventually(
            lambda: core.read_namespaced_pod("creds", sim_namespace).status.phase == "Running"
        )
    finally:
        registry.stop()


def test_crash_annotation_gives_crash_loop_with_climbing_restarts(
    core: client.CoreV1Api, sim_namespace: str
) -> None:
    core.create_namespaced_pod(
        sim_namespace, _pod("crash", "busybox:1", annotations={"sim.shipyard.dev/crash": "true"})
    )
    eventually(lambda: _waiting_reason(core, sim_namespace, "crash") == "CrashLoopBackOff")
    eventually(
        lambda: _container_status(core, sim_namespace, "crash").restart_count >= 2, timeout=15
    )
    cs = _container_status(core, sim_namespace, "crash")
    assert cs.last_state.terminated.exit_code == 1 and not cs.ready


def test_crash_env_var_also_works(core: client.CoreV1Api, sim_namespace: str) -> None:
    core.create_namespaced_pod(
        sim_namespace, _pod("crashenv", "busybox:1", env={"SIM_CRASH": "true"})
    )
    eventually(lambda: _waiting_reason(core, sim_namespace, "crashenv") == "CrashLoopBackOff")


def test_not_ready_annotation_runs_but_never_ready(
    core: client.CoreV1Api, sim_namespace: str
) -> None:
    core.create_namespaced_pod(
        sim_namespace, _pod("unready", "busybox:1", annotations={"sim.shipyard.dev/ready": "false"})
    )
    eventually(lambda: core.read_namespaced_pod("unready", sim_namespace).status.phase == "Running")
    pod = core.read_namespaced_pod("unready", sim_namespace)
    ready = next(c for c in pod.status.conditions if c.type == "Ready")
    assert ready.status == "False" and not pod.status.container_statuses[0].ready


def test_run_to_completion_pod_exit_code(core: client.CoreV1Api, sim_namespace: str) -> None:
    core.create_namespaced_pod(sim_namespace, _pod("ok", "busybox:1", restart="Never"))
    core.create_namespaced_pod(
        sim_namespace,
        _pod("bad", "busybox:1", restart="Never", annotations={"sim.shipyard.dev/exit-code": "3"}),
    )
    eventually(lambda: core.read_namespaced_pod("ok", sim_namespace).status.phase == "Succeeded")
    eventually(lambda: core.read_namespaced_pod("bad", sim_namespace).status.phase == "Failed")
    assert _container_status(core, sim_namespace, "bad").state.terminated.exit_code == 3


def test_bearer_token_challenge_is_followed(core: client.CoreV1Api, sim_namespace: str) -> None:
    from tests.fixtures.token_registry import push_with_token, start_token_registry

    registry, issuer, server = start_token_registry(("robot", "t0ken"))
    try:
        digest = push_with_token(registry, issuer, "secure/app", "v1")
        secret = client.V1Secret(
            metadata=client.V1ObjectMeta(name="tokcred"),
            type="kubernetes.io/dockerconfigjson",
            data={".dockerconfigjson": dockerconfigjson(registry.host, "robot", "t0ken")},
        )
        core.create_namespaced_secret(sim_namespace, secret)
        before = issuer.issued
        core.create_namespaced_pod(
            sim_namespace, _pod("bearer", f"{registry.host}/secure/app:v1", pull_secret="tokcred")
        )
        eventually(
            lambda: core.read_namespaced_pod("bearer", sim_namespace).status.phase == "Running"
        )
        assert (
            _container_status(core, sim_namespace, "bearer").image_id
            == f"{registry.host}/secure/app@{digest}"
        )
        assert issuer.issued > before  # the kubelet fetched a token from the realm
    finally:
        server.shutdown()
        registry.stop()
