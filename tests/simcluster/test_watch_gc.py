"""Watch streams, deletion with garbage collection, finalizers, and CRDs."""

from __future__ import annotations

import json
import threading

import httpx
import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from tests.fixtures.simcluster import SimClusterHandle
from tests.simcluster.helpers import eventually


@pytest.fixture
def core(sim_cluster: SimClusterHandle) -> client.CoreV1Api:
    return client.CoreV1Api(sim_cluster.api_client())


def _cm(name: str, **meta: object) -> client.V1ConfigMap:
    return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name, **meta), data={"k": "v"})


def test_watch_stream_with_the_official_client(core: client.CoreV1Api, sim_namespace: str) -> None:
    core.create_namespaced_config_map(sim_namespace, _cm("pre"))
    events: list[tuple[str, str]] = []
    w = watch.Watch()

    def mutate() -> None:
        core.create_namespaced_config_map(sim_namespace, _cm("w1"))
        core.patch_namespaced_config_map("w1", sim_namespace, {"data": {"k": "2"}})
        core.delete_namespaced_config_map("w1", sim_namespace)

    t = threading.Timer(0.2, mutate)
    t.start()
    for ev in w.stream(core.list_namespaced_config_map, sim_namespace, timeout_seconds=5):
        events.append((ev["type"], ev["object"].metadata.name))
        if ev["type"] == "DELETED":
            w.stop()
    t.join()
    assert events == [("ADDED", "pre"), ("ADDED", "w1"), ("MODIFIED", "w1"), ("DELETED", "w1")]


def test_watch_from_resource_version_replays_and_ends_at_timeout(
    sim_cluster: SimClusterHandle, core: client.CoreV1Api, sim_namespace: str
) -> None:
    rv = core.list_namespaced_config_map(sim_namespace).metadata.resource_version
    core.create_namespaced_config_map(sim_namespace, _cm("r1", labels={"x": "1"}))
    core.create_namespaced_config_map(sim_namespace, _cm("r2"))
    url = f"{sim_cluster.url}/api/v1/namespaces/{sim_namespace}/configmaps"
    params = {
        "watch": "1",
        "resourceVersion": rv,
        "timeoutSeconds": "1",
        "labelSelector": "x=1",
        "allowWatchBookmarks": "true",
    }
    with httpx.stream("GET", url, params=params, timeout=5) as resp:
        lines = [json.loads(line) for line in resp.iter_lines() if line]
    assert lines[0]["type"] == "ADDED" and lines[0]["object"]["metadata"]["name"] == "r1"
    assert all(e["object"]["metadata"]["name"] != "r2" for e in lines if e["type"] != "BOOKMARK")


def test_watch_bookmarks_and_expired_resource_version(
    sim_cluster: SimClusterHandle, sim_namespace: str
) -> None:
    sim_cluster.config.bookmark_interval = 0.2
    try:
        url = f"{sim_cluster.url}/api/v1/namespaces/{sim_namespace}/configmaps"
        with httpx.stream(
            "GET",
            url,
            params={"watch": "1", "allowWatchBookmarks": "true", "timeoutSeconds": "1"},
            timeout=5,
        ) as resp:
            kinds = {json.loads(line)["type"] for line in resp.iter_lines() if line}
        assert "BOOKMARK" in kinds
    finally:
        sim_cluster.config.bookmark_interval = 1.0


def test_label_transition_turns_into_deleted_for_selector_watch(
    sim_cluster: SimClusterHandle, core: client.CoreV1Api, sim_namespace: str
) -> None:
    core.create_namespaced_config_map(sim_namespace, _cm("lt", labels={"sel": "yes"}))
    w = watch.Watch()
    seen: list[str] = []
    threading.Timer(
        0.2,
        lambda: core.patch_namespaced_config_map(
            "lt", sim_namespace, {"metadata": {"labels": {"sel": "no"}}}
        ),
    ).start()
    for ev in w.stream(
        core.list_namespaced_config_map, sim_namespace, label_selector="sel=yes", timeout_seconds=5
    ):
        seen.append(ev["type"])
        if ev["type"] == "DELETED":
            w.stop()
    assert seen == ["ADDED", "DELETED"]


def _owned(core: client.CoreV1Api, ns: str, owner: client.V1ConfigMap, name: str) -> None:
    ref = client.V1OwnerReference(
        api_version="v1", kind="ConfigMap", name=owner.metadata.name, uid=owner.metadata.uid
    )
    core.create_namespaced_config_map(ns, _cm(name, owner_references=[ref]))


def _exists(core: client.CoreV1Api, ns: str, name: str) -> bool:
    try:
        core.read_namespaced_config_map(name, ns)
        return True
    except ApiException as exc:
        assert exc.status == 404
        return False


def test_background_deletion_collects_dependents(
    core: client.CoreV1Api, sim_namespace: str
) -> None:
    owner = core.create_namespaced_config_map(sim_namespace, _cm("owner"))
    _owned(core, sim_namespace, owner, "dep")
    core.delete_namespaced_config_map("owner", sim_namespace)
    eventually(lambda: not _exists(core, sim_namespace, "dep"))


def test_foreground_deletion_waits_for_dependents(
    core: client.CoreV1Api, sim_namespace: str
) -> None:
    owner = core.create_namespaced_config_map(sim_namespace, _cm("fg"))
    _owned(core, sim_namespace, owner, "fg-dep")
    core.delete_namespaced_config_map("fg", sim_namespace, propagation_policy="Foreground")
    eventually(
        lambda: (
            not _exists(core, sim_namespace, "fg-dep") and not _exists(core, sim_namespace, "fg")
        )
    )


def test_orphan_deletion_keeps_dependents(core: client.CoreV1Api, sim_namespace: str) -> None:
    owner = core.create_namespaced_config_map(sim_namespace, _cm("orph"))
    _owned(core, sim_namespace, owner, "orph-dep")
    core.delete_namespaced_config_map("orph", sim_namespace, propagation_policy="Orphan")
    dep = core.read_namespaced_config_map("orph-dep", sim_namespace)
    assert not dep.metadata.owner_references


def test_finalizers_hold_deletion_until_removed(core: client.CoreV1Api, sim_namespace: str) -> None:
    core.create_namespaced_config_map(sim_namespace, _cm("fin", finalizers=["example.com/hold"]))
    core.delete_namespaced_config_map("fin", sim_namespace)
    held = core.read_namespaced_config_map("fin", sim_namespace)
    assert held.metadata.deletion_timestamp is not None
    core.patch_namespaced_config_map("fin", sim_namespace, {"metadata": {"finalizers": None}})
    assert not _exists(core, sim_namespace, "fin")


def test_delete_precondition_uid(core: client.CoreV1Api, sim_namespace: str) -> None:
    core.create_namespaced_config_map(sim_namespace, _cm("pre"))
    with pytest.raises(ApiException) as err:
        core.delete_namespaced_config_map(
            "pre",
            sim_namespace,
            body=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid="wrong")),
        )
    assert err.value.status == 409


# A group of its own: other suites install the real Flux CRDs into the same session
# cluster, and a 409 here would leave their (v1-only) definition in place.
CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "pipelines.simtest.shipyard.dev"},
    "spec": {
        "group": "simtest.shipyard.dev",
        "names": {
            "kind": "Pipeline",
            "plural": "pipelines",
            "singular": "pipeline",
            "shortNames": ["pl"],
        },
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
                "subresources": {"status": {}},
            },
            {
                "name": "v1beta2",
                "served": True,
                "storage": False,
                "schema": {"openAPIV3Schema": {"type": "object"}},
            },
        ],
    },
}


def test_crd_serves_custom_resources_generically(
    sim_cluster: SimClusterHandle, sim_namespace: str
) -> None:
    api_client = sim_cluster.api_client()
    ext = client.ApiextensionsV1Api(api_client)
    try:
        ext.create_custom_resource_definition(CRD)
    except ApiException as exc:
        assert exc.status == 409
    groups = [g.name for g in client.ApisApi(api_client).get_api_versions().groups]
    assert "simtest.shipyard.dev" in groups
    custom = client.CustomObjectsApi(api_client)
    g, v, p = "simtest.shipyard.dev", "v1", "pipelines"
    body = {
        "apiVersion": f"{g}/{v}",
        "kind": "Pipeline",
        "metadata": {"name": "apps"},
        "spec": {"path": "./apps", "interval": "1m"},
    }
    created = custom.create_namespaced_custom_object(g, v, sim_namespace, p, body)
    assert created["metadata"]["generation"] == 1
    custom.patch_namespaced_custom_object_status(
        g, v, sim_namespace, p, "apps", {"status": {"ready": True}}
    )
    custom.patch_namespaced_custom_object(
        g, v, sim_namespace, p, "apps", {"spec": {"path": "./apps2"}}
    )
    got = custom.get_namespaced_custom_object(g, v, sim_namespace, p, "apps")
    assert got["status"] == {"ready": True} and got["metadata"]["generation"] == 2
    other = custom.get_namespaced_custom_object(g, "v1beta2", sim_namespace, p, "apps")
    assert other["apiVersion"] == f"{g}/v1beta2"
    listed = custom.list_cluster_custom_object(g, v, p, label_selector="")
    assert any(i["metadata"]["name"] == "apps" for i in listed["items"])
    with pytest.raises(ApiException) as err:
        custom.create_namespaced_custom_object(g, v, sim_namespace, p, body)
    assert err.value.status == 409
