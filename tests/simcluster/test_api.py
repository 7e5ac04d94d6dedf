"""API semantics through the official kubernetes client: CRUD, errors, concurrency."""

from __future__ import annotations

import json

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.fixtures.simcluster import SimClusterHandle


@pytest.fixture
def core(sim_cluster: SimClusterHandle) -> client.CoreV1Api:
    return client.CoreV1Api(sim_cluster.api_client())


def _status(exc: ApiException) -> dict:  # type: ignore[type-arg]
    return json.loads(exc.body)


def _cm(
    name: str, data: dict[str, str] | None = None, labels: dict[str, str] | None = None
) -> client.V1ConfigMap:
    return client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name=name, labels=labels), data=data or {"k": "v"}
    )


def test_create_get_sets_server_metadata(core: client.CoreV1Api, sim_namespace: str) -> None:
    created = core.create_namespaced_config_map(sim_namespace, _cm("a"))
    meta = created.metadata
    assert meta.uid and meta.resource_version and meta.creation_timestamp
    assert meta.namespace == sim_namespace
    got = core.read_namespaced_config_map("a", sim_namespace)
    assert got.data == {"k": "v"} and got.metadata.uid == meta.uid


def test_not_found_is_a_real_status(core: client.CoreV1Api, sim_namespace: str) -> None:
    with pytest.raises(ApiException) as err:
        core.read_namespaced_config_map("missing", sim_namespace)
    assert err.value.status == 404
    body = _status(err.value)
    assert body["kind"] == "Status" and body["reason"] == "NotFound"
    assert body["message"] == 'configmaps "missing" not found'
    assert body["details"] == {"name": "missing", "kind": "configmaps"}


def test_already_exists(core: client.CoreV1Api, sim_namespace: str) -> None:
    core.create_namespaced_config_map(sim_namespace, _cm("dup"))
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map(sim_namespace, _cm("dup"))
    assert err.value.status == 409
    assert _status(err.value)["reason"] == "AlreadyExists"


def test_stale_resource_version_conflicts(core: client.CoreV1Api, sim_namespace: str) -> None:
    cm = core.create_namespaced_config_map(sim_namespace, _cm("occ"))
    cm.data = {"k": "first"}
    updated = core.replace_namespaced_config_map("occ", sim_namespace, cm)
    assert int(updated.metadata.resource_version) > int(cm.metadata.resource_version)
    cm.data = {"k": "stale"}
    with pytest.raises(ApiException) as err:
        core.replace_namespaced_config_map("occ", sim_namespace, cm)
    assert err.value.status == 409
    body = _status(err.value)
    assert body["reason"] == "Conflict"
    assert "the object has been modified" in body["message"]


def test_invalid_object_is_422_with_causes(core: client.CoreV1Api, sim_namespace: str) -> None:
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="Bad_Name"),
        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")]),
    )
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod(sim_namespace, pod)
    assert err.value.status == 422
    body = _status(err.value)
    assert body["reason"] == "Invalid"
    assert body["details"]["causes"][0]["field"] == "metadata.name"


def test_missing_namespace_is_404(core: client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map("nope-not-here", _cm("x"))
    assert err.value.status == 404
    assert _status(err.value)["details"]["kind"] == "namespaces"


def test_bad_json_is_400_not_500(sim_cluster: SimClusterHandle, sim_namespace: str) -> None:
    import httpx

    resp = httpx.post(
        f"{sim_cluster.url}/api/v1/namespaces/{sim_namespace}/configmaps",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert resp.status_code == 400
    assert resp.json()["reason"] == "BadRequest"
    resp = httpx.put(
        f"{sim_cluster.url}/api/v1/namespaces/{sim_namespace}/configmaps", content=b"{}"
    )
    assert resp.status_code == 405 and resp.json()["reason"] == "MethodNotAllowed"
    resp = httpx.get(f"{sim_cluster.url}/apis/nothing.example/v1/things")
    assert resp.status_code == 404 and resp.json()["kind"] == "Status"
    resp = httpx.get(
        f"{sim_cluster.url}/api/v1/namespaces/{sim_namespace}/pods",
        params={"labelSelector": "a in (b"},
    )
    assert resp.status_code == 400


def test_generation_bumps_on_spec_change_only(
    sim_cluster: SimClusterHandle, sim_namespace: str
) -> None:
    apps = client.AppsV1Api(sim_cluster.api_client())
    dep = apps.create_namespaced_deployment(sim_namespace, _deployment("gen"))
    assert dep.metadata.generation == 1
    apps.patch_namespaced_deployment("gen", sim_namespace, {"metadata": {"labels": {"x": "y"}}})
    assert apps.read_namespaced_deployment("gen", sim_namespace).metadata.generation == 1
    apps.patch_namespaced_deployment("gen", sim_namespace, {"spec": {"replicas": 2}})
    assert apps.read_namespaced_deployment("gen", sim_namespace).metadata.generation == 2


def test_status_subresource_is_separate(core: client.CoreV1Api, sim_namespace: str) -> None:
    lb = {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}
    spec = client.V1ServiceSpec(selector={"a": "b"}, ports=[client.V1ServicePort(port=80)])
    core.create_namespaced_service(
        sim_namespace, client.V1Service(metadata=client.V1ObjectMeta(name="st"), spec=spec)
    )
    # A main-resource write cannot change status ...
    core.patch_namespaced_service("st", sim_namespace, {"status": lb})
    assert core.read_namespaced_service("st", sim_namespace).status.load_balancer.ingress is None
    # ... and a status write cannot change spec.
    core.patch_namespaced_service_status(
        "st", sim_namespace, {"spec": {"selector": {"x": "y"}}, "status": lb}
    )
    got = core.read_namespaced_service("st", sim_namespace)
    assert got.spec.selector == {"a": "b"}
    assert got.status.load_balancer.ingress[0].ip == "192.0.2.1"


def test_label_and_field_selectors(core: client.CoreV1Api, sim_namespace: str) -> None:
    core.create_namespaced_config_map(
        sim_namespace, _cm("one", labels={"tier": "web", "env": "prod"})
    )
    core.create_namespaced_config_map(
        sim_namespace, _cm("two", labels={"tier": "db", "env": "prod"})
    )
    core.create_namespaced_config_map(sim_namespace, _cm("three", labels={"tier": "web"}))

    def names(**kw: str) -> list[str]:
        return sorted(
            i.metadata.name for i in core.list_namespaced_config_map(sim_namespace, **kw).items
        )

    assert names(label_selector="tier=web") == ["one", "three"]
    assert names(label_selector="tier=web,env=prod") == ["one"]
    assert names(label_selector="tier in (web,db),!env") == ["three"]
    assert names(label_selector="env,tier!=web") == ["two"]
    assert names(field_selector="metadata.name=two") == ["two"]
    assert names(field_selector="metadata.name!=two", label_selector="env") == ["one"]
    all_ns = core.list_config_map_for_all_namespaces(
        field_selector=f"metadata.namespace={sim_namespace}"
    )
    assert len(all_ns.items) == 3


def test_limit_and_continue_paging(core: client.CoreV1Api, sim_namespace: str) -> None:
    for i in range(7):
        core.create_namespaced_config_map(sim_namespace, _cm(f"p{i}"))
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        page = core.list_namespaced_config_map(sim_namespace, limit=3, _continue=token)
        seen += [i.metadata.name for i in page.items]
        pages += 1
        token = page.metadata._continue
        if not token:
            break
        assert page.metadata.remaining_item_count == 7 - len(seen)
    assert pages == 3 and seen == sorted(seen) and len(set(seen)) == 7


def test_secret_string_data_is_encoded(core: client.CoreV1Api, sim_namespace: str) -> None:
    secret = core.create_namespaced_secret(
        sim_namespace,
        client.V1Secret(metadata=client.V1ObjectMeta(name="s"), string_data={"token": "abc"}),
    )
    assert secret.data == {"token": "YWJj"} and secret.type == "Opaque"


def test_service_gets_cluster_ip(core: client.CoreV1Api, sim_namespace: str) -> None:
    svc = core.create_namespaced_service(
        sim_namespace,
        client.V1Service(
            metadata=client.V1ObjectMeta(name="svc"),
            spec=client.V1ServiceSpec(selector={"a": "b"}, ports=[client.V1ServicePort(port=80)]),
        ),
    )
    assert svc.spec.cluster_ip.startswith("10.96.") and svc.spec.ports[0].target_port == 80


def test_new_namespace_gets_default_service_account(
    core: client.CoreV1Api, sim_namespace: str
) -> None:
    from tests.simcluster.helpers import eventually

    eventually(lambda: core.read_namespaced_service_account("default", sim_namespace))


def test_dry_run_does_not_persist(core: client.CoreV1Api, sim_namespace: str) -> None:
    core.create_namespaced_config_map(sim_namespace, _cm("dry"), dry_run="All")
    with pytest.raises(ApiException) as err:
        core.read_namespaced_config_map("dry", sim_namespace)
    assert err.value.status == 404


def _deployment(name: str, replicas: int = 1, image: str = "nginx:1.25") -> client.V1Deployment:
    labels = {"app": name}
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[client.V1Container(name="app", image=image)]),
            ),
        ),
    )
