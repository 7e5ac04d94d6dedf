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


# -- validation: what a real API server refuses (issue 13) ---------------------------

Scenario = Any


def _status(err: ApiException) -> tuple[int, str, str]:
    body = json.loads(err.body)
    return err.status, body.get("reason", ""), body["message"]


def raw_request(
    api: client.ApiClient, method: str, path: str, body: Any, **query: str
) -> tuple[int, dict[str, str], Any]:
    """Send ``body`` as is (the typed client refuses unknown fields before sending)."""
    m, url, headers, data, _ = api.param_serialize(
        method,
        path,
        query_params=list(query.items()),
        header_params={"Content-Type": "application/json", "Accept": "application/json"},
        body=body,
        auth_settings=["BearerToken"],
    )
    resp = api.call_api(m, url, headers, data)
    resp.read()
    headers = {k.lower(): v for k, v in resp.getheaders().items()}
    return resp.status, headers, json.loads(resp.data or b"null")


def _deployment_body(name: str, **container: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "web", "image": IMAGE, **container}]},
            },
        },
    }


def unknown_field_strict(api: client.ApiClient, ns: str) -> None:
    apps = client.AppsV1Api(api)
    body = _deployment_body("strict")
    body["spec"]["replicaz"] = 2
    path = f"/apis/apps/v1/namespaces/{ns}/deployments"
    status, _, out = raw_request(api, "POST", path, body, fieldValidation="Strict")
    assert (status, out["reason"], out["message"]) == (
        400,
        "BadRequest",
        'Deployment in version "v1" cannot be handled as a Deployment: strict decoding '
        'error: unknown field "spec.replicaz"',
    )
    status, headers, _ = raw_request(api, "POST", path, body)  # default: Warn
    assert status == 201
    assert headers["warning"] == '299 - "unknown field \\"spec.replicaz\\""'
    body["metadata"]["name"] = "ignored"
    status, headers, created = raw_request(api, "POST", path, body, fieldValidation="Ignore")
    assert status == 201 and "warning" not in headers
    assert "replicaz" not in created["spec"] and created["spec"]["replicas"] == 1
    assert apps.read_namespaced_deployment("strict", ns).spec.replicas == 1


def invalid_enum_values(api: client.ApiClient, ns: str) -> None:
    apps = client.AppsV1Api(api)
    with pytest.raises(ApiException) as err:
        apps.create_namespaced_deployment(ns, _deployment_body("enum", imagePullPolicy="Sometimes"))
    assert _status(err.value) == (
        422,
        "Invalid",
        'Deployment.apps "enum" is invalid: spec.template.spec.containers[0].imagePullPolicy: '
        'Unsupported value: "Sometimes": supported values: "Always", "IfNotPresent", "Never"',
    )
    body = _deployment_body("strategy")
    body["spec"]["strategy"] = {"type": "BlueGreen"}
    with pytest.raises(ApiException) as err:
        apps.create_namespaced_deployment(ns, body)
    assert _status(err.value)[2] == (
        'Deployment.apps "strategy" is invalid: spec.strategy.type: Unsupported value: '
        '"BlueGreen": supported values: "Recreate", "RollingUpdate"'
    )
    both = _deployment_body("both", imagePullPolicy="Sometimes")
    both["spec"]["strategy"] = {"type": "BlueGreen"}
    with pytest.raises(ApiException) as err:
        apps.create_namespaced_deployment(ns, both)
    assert _status(err.value)[2] == (  # several causes: Go's aggregate, in brackets
        'Deployment.apps "both" is invalid: [spec.template.spec.containers[0].imagePullPolicy: '
        'Unsupported value: "Sometimes": supported values: "Always", "IfNotPresent", "Never", '
        'spec.strategy.type: Unsupported value: "BlueGreen": supported values: "Recreate", '
        '"RollingUpdate"]'
    )
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "svc"},
        "spec": {"type": "Public", "ports": [{"port": 80}]},
    }
    with pytest.raises(ApiException) as err:
        client.CoreV1Api(api).create_namespaced_service(ns, service)
    assert _status(err.value)[2] == (
        'Service "svc" is invalid: spec.type: Unsupported value: "Public": supported values: '
        '"ClusterIP", "ExternalName", "LoadBalancer", "NodePort"'
    )


def secret_data_not_base64(api: client.ApiClient, ns: str) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "raw"},
        "data": {"password": "hunter2!"},
    }
    path = f"/api/v1/namespaces/{ns}/secrets"
    status, _, out = raw_request(api, "POST", path, body)
    assert (status, out["reason"], out["message"]) == (
        400,
        "BadRequest",
        'Secret in version "v1" cannot be handled as a Secret: illegal base64 data at input byte 7',
    )
    body["data"] = {"password": "aHVudGVyMg=="}
    assert raw_request(api, "POST", path, body)[0] == 201


def annotations_too_long(api: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(api)
    cm = _cm("big", annotations={"a": "x" * 262144})
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map(ns, cm)
    assert _status(err.value) == (
        422,
        "Invalid",
        'ConfigMap "big" is invalid: metadata.annotations: Too long: must have at most '
        "262144 bytes",
    )
    core.create_namespaced_config_map(ns, _cm("fits", annotations={"a": "x" * 262143}))


def custom_resource_schema(api: client.ApiClient, ns: str) -> None:
    group = f"{ns}.example.com"
    ext = client.ApiextensionsV1Api(api)
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "required": ["size"],
                "properties": {
                    "size": {"type": "integer", "minimum": 1, "maximum": 10},
                    "color": {"type": "string", "enum": ["red", "green"], "default": "red"},
                    "name": {"type": "string", "pattern": "^[a-z]+$"},
                    "port": {"x-kubernetes-int-or-string": True},
                    "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                },
            }
        },
    }
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"gadgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }
    ext.create_custom_resource_definition(crd)
    try:
        objs = client.CustomObjectsApi(api)

        def create(spec: Any, name: str = "g", **kw: Any) -> Any:
            body = {"apiVersion": f"{group}/v1", "kind": "Gadget", "metadata": {"name": name}}
            body["spec"] = spec
            return objs.create_namespaced_custom_object(group, "v1", ns, "gadgets", body, **kw)

        def refused(spec: Any) -> tuple[int, str, str]:
            with pytest.raises(ApiException) as err:
                create(spec)
            return _status(err.value)

        eventually(lambda: objs.list_namespaced_custom_object(group, "v1", ns, "gadgets") or 1)
        prefix = f'Gadget.{group} "g" is invalid: '
        assert refused({"color": "red"}) == (422, "Invalid", prefix + "spec.size: Required value")
        assert refused({"size": "big"})[2] == (
            prefix + 'spec.size: Invalid value: "string": spec.size in body must be of type '
            'integer: "string"'
        )
        assert refused({"size": 3, "color": "blue"})[2] == (
            prefix + 'spec.color: Unsupported value: "blue": supported values: "red", "green"'
        )
        assert refused({"size": 30})[2] == (
            prefix + "spec.size: Invalid value: 30: spec.size in body should be less than or "
            "equal to 10"
        )
        assert refused({"size": 3, "name": "Bad1"})[2] == (
            prefix + "spec.name: Invalid value: \"Bad1\": spec.name in body should match '^[a-z]+$'"
        )
        with pytest.raises(ApiException) as err:
            create({"size": 3, "bogus": 1}, field_validation="Strict")
        assert _status(err.value) == (
            400,
            "BadRequest",
            'Gadget in version "v1" cannot be handled as a Gadget: strict decoding error: '
            'unknown field "spec.bogus"',
        )
        got = create({"size": 3, "bogus": 1, "port": "http", "extra": {"any": {"thing": 1}}})
        assert got["spec"] == {
            "size": 3,
            "color": "red",
            "port": "http",
            "extra": {"any": {"thing": 1}},
        }
        assert create({"size": 3, "port": 8080}, name="h")["spec"]["port"] == 8080
    finally:
        ext.delete_custom_resource_definition(f"gadgets.{group}")


SCENARIOS += [
    unknown_field_strict,
    invalid_enum_values,
    secret_data_not_base64,
    annotations_too_long,
    custom_resource_schema,
]
