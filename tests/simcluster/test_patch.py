"""PATCH flavours and server-side apply through the official client."""

from __future__ import annotations

import json

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.fixtures.simcluster import SimClusterHandle

APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
JSONPATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"


def _dep(name: str) -> dict:  # type: ignore[type-arg]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "app:1",
                            "ports": [{"containerPort": 80}],
                            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                            "volumeMounts": [{"name": "v", "mountPath": "/a"}],
                        },
                        {"name": "side", "image": "side:1"},
                    ],
                    "volumes": [{"name": "v", "emptyDir": {}}],
                },
            },
        },
    }


@pytest.fixture
def apps(sim_cluster: SimClusterHandle) -> client.AppsV1Api:
    return client.AppsV1Api(sim_cluster.api_client())


def _containers(apps: client.AppsV1Api, ns: str, name: str) -> list[dict]:  # type: ignore[type-arg]
    raw = apps.read_namespaced_deployment(name, ns, _preload_content=False)
    return json.loads(raw.data)["spec"]["template"]["spec"]["containers"]  # type: ignore[no-any-return]


def test_strategic_merge_merges_lists_by_key(apps: client.AppsV1Api, sim_namespace: str) -> None:
    apps.create_namespaced_deployment(sim_namespace, _dep("smp"))
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "app:2",
                            "env": [{"name": "B", "value": "20"}, {"name": "C", "value": "3"}],
                            "ports": [{"containerPort": 8080}],
                        },
                    ]
                }
            }
        }
    }
    apps.patch_namespaced_deployment("smp", sim_namespace, patch, _content_type=STRATEGIC)
    app, side = _containers(apps, sim_namespace, "smp")
    assert (app["name"], app["image"], side["name"], side["image"]) == (
        "app",
        "app:2",
        "side",
        "side:1",
    )
    assert [(e["name"], e["value"]) for e in app["env"]] == [("A", "1"), ("B", "20"), ("C", "3")]
    assert [p["containerPort"] for p in app["ports"]] == [80, 8080]


def test_strategic_merge_directives(apps: client.AppsV1Api, sim_namespace: str) -> None:
    apps.create_namespaced_deployment(sim_namespace, _dep("dir"))
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "side", "$patch": "delete"},
                        {
                            "name": "app",
                            "env": [{"name": "A", "$patch": "delete"}],
                            "volumeMounts": [{"mountPath": "/b", "name": "v"}],
                        },
                    ]
                }
            }
        }
    }
    apps.patch_namespaced_deployment("dir", sim_namespace, patch, _content_type=STRATEGIC)
    (app,) = _containers(apps, sim_namespace, "dir")
    assert [e["name"] for e in app["env"]] == ["B"]
    assert [m["mountPath"] for m in app["volumeMounts"]] == ["/a", "/b"]
    replace = {
        "spec": {
            "template": {
                "spec": {"containers": [{"$patch": "replace"}, {"name": "only", "image": "only:1"}]}
            }
        }
    }
    apps.patch_namespaced_deployment("dir", sim_namespace, replace, _content_type=STRATEGIC)
    assert [c["name"] for c in _containers(apps, sim_namespace, "dir")] == ["only"]


def test_merge_patch_replaces_lists_and_deletes_nulls(
    apps: client.AppsV1Api, sim_namespace: str
) -> None:
    apps.create_namespaced_deployment(sim_namespace, _dep("mp"))
    apps.patch_namespaced_deployment(
        "mp", sim_namespace, {"metadata": {"labels": {"a": "b"}}}, _content_type=MERGE
    )
    apps.patch_namespaced_deployment(
        "mp",
        sim_namespace,
        {
            "metadata": {"labels": {"a": None, "c": "d"}},
            "spec": {"template": {"spec": {"containers": [{"name": "x", "image": "x:1"}]}}},
        },
        _content_type=MERGE,
    )
    got = apps.read_namespaced_deployment("mp", sim_namespace)
    assert got.metadata.labels == {"c": "d"}
    assert [c.name for c in got.spec.template.spec.containers] == ["x"]


def test_json_patch_and_failed_test_op(apps: client.AppsV1Api, sim_namespace: str) -> None:
    apps.create_namespaced_deployment(sim_namespace, _dep("jp"))
    ops = [
        {"op": "replace", "path": "/spec/replicas", "value": 0},
        {"op": "add", "path": "/metadata/labels", "value": {"x": "1"}},
    ]
    apps.patch_namespaced_deployment("jp", sim_namespace, ops)
    assert apps.read_namespaced_deployment("jp", sim_namespace).metadata.labels == {"x": "1"}
    with pytest.raises(ApiException) as err:
        apps.patch_namespaced_deployment(
            "jp", sim_namespace, [{"op": "test", "path": "/spec/replicas", "value": 5}]
        )
    assert err.value.status == 422


def test_patch_with_stale_resource_version_conflicts(
    apps: client.AppsV1Api, sim_namespace: str
) -> None:
    created = apps.create_namespaced_deployment(sim_namespace, _dep("prv"))
    apps.patch_namespaced_deployment(
        "prv", sim_namespace, {"metadata": {"labels": {"a": "1"}}}, _content_type=MERGE
    )
    with pytest.raises(ApiException) as err:
        apps.patch_namespaced_deployment(
            "prv",
            sim_namespace,
            {
                "metadata": {
                    "resourceVersion": created.metadata.resource_version,
                    "labels": {"a": "2"},
                }
            },
            _content_type=MERGE,
        )
    assert err.value.status == 409


def test_unknown_patch_type_is_415(sim_cluster: SimClusterHandle, sim_namespace: str) -> None:
    import httpx

    resp = httpx.patch(
        f"{sim_cluster.url}/api/v1/namespaces/{sim_namespace}/configmaps/x",
        content=b"{}",
        headers={"content-type": "text/plain"},
    )
    assert resp.status_code == 415


def _apply(
    apps: client.AppsV1Api, ns: str, body: dict, manager: str, force: bool = False
) -> client.V1Deployment:  # type: ignore[type-arg]
    return apps.patch_namespaced_deployment(
        body["metadata"]["name"], ns, body, field_manager=manager, force=force, _content_type=APPLY
    )


def test_server_side_apply_creates_and_records_manager(
    apps: client.AppsV1Api, sim_namespace: str
) -> None:
    dep = _apply(apps, sim_namespace, _dep("ssa"), "team-a")
    entries = [(m.manager, m.operation) for m in dep.metadata.managed_fields]
    assert ("team-a", "Apply") in entries
    fields = next(m.fields_v1 for m in dep.metadata.managed_fields if m.manager == "team-a")
    assert "f:replicas" in fields["f:spec"]
    assert 'k:{"name":"app"}' in fields["f:spec"]["f:template"]["f:spec"]["f:containers"]


def test_server_side_apply_conflict_names_other_manager(
    apps: client.AppsV1Api, sim_namespace: str
) -> None:
    _apply(apps, sim_namespace, _dep("conf"), "team-a")
    other = _dep("conf")
    other["spec"]["replicas"] = 2
    with pytest.raises(ApiException) as err:
        _apply(apps, sim_namespace, other, "team-b")
    assert err.value.status == 409
    body = json.loads(err.value.body)
    assert body["reason"] == "Conflict"
    assert 'conflict with "team-a"' in body["message"] and ".spec.replicas" in body["message"]
    assert body["details"]["causes"][0]["field"] == ".spec.replicas"
    forced = _apply(apps, sim_namespace, other, "team-b", force=True)
    assert forced.spec.replicas == 2
    owners = {m.manager: m.fields_v1 for m in forced.metadata.managed_fields}
    assert "f:replicas" in owners["team-b"]["f:spec"]
    assert "f:replicas" not in owners["team-a"].get("f:spec", {})


def test_server_side_apply_same_value_is_shared_and_removal_prunes(
    apps: client.AppsV1Api, sim_namespace: str
) -> None:
    body = _dep("share")
    body["metadata"]["labels"] = {"keep": "1", "drop": "1"}
    _apply(apps, sim_namespace, body, "team-a")
    _apply(
        apps,
        sim_namespace,
        _dep("share") | {"metadata": {"name": "share", "labels": {"keep": "1"}}},
        "team-b",
    )
    smaller = _dep("share")
    smaller["metadata"]["labels"] = {"keep": "1"}
    got = _apply(apps, sim_namespace, smaller, "team-a")
    assert got.metadata.labels == {"keep": "1"}


def test_update_transfers_ownership_then_apply_conflicts(
    apps: client.AppsV1Api, sim_namespace: str
) -> None:
    _apply(apps, sim_namespace, _dep("upd"), "gitops")
    apps.patch_namespaced_deployment_scale("upd", sim_namespace, {"spec": {"replicas": 3}})
    assert apps.read_namespaced_deployment("upd", sim_namespace).spec.replicas == 3
    with pytest.raises(ApiException) as err:
        _apply(apps, sim_namespace, _dep("upd"), "gitops")
    assert err.value.status == 409
