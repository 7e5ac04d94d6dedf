"""Refused as a real API server refuses: unknown fields, enums, CR schemas, sizes, base64.

Driven through kubectl and the official Python client; the expected codes, reasons and
messages are kube-apiserver's (the cluster-facing ones also run on a real cluster, see
scenarios.py).
"""

from __future__ import annotations

import json
import uuid

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.fixtures.simcluster import SimClusterHandle
from tests.simcluster import scenarios

DEPLOY = """
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicaz: 2
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers:
      - {{name: web, image: busybox:1.36, imagePullPolicy: {policy}}}
"""


def _deploy(name: str, policy: str = "IfNotPresent", extra: str = "") -> str:
    text = DEPLOY.format(name=name, policy=policy)
    return text.replace("  replicaz: 2\n", extra)


def test_unknown_field_kubectl_create_apply_is_strict(
    sim_cluster: SimClusterHandle, sim_namespace: str
) -> None:
    ns = ("-n", sim_namespace)
    bad = _deploy("strict", extra="  replicaz: 2\n")
    for verb in (("create",), ("apply",)):
        out = sim_cluster.kubectl(*verb, *ns, "-f", "-", input=bad, check=False)
        assert out.returncode == 1
        assert (
            'Error from server (BadRequest): error when creating "STDIN": Deployment in version '
            '"v1" cannot be handled as a Deployment: strict decoding error: unknown field '
            '"spec.replicaz"'
        ) in out.stderr
    ssa = sim_cluster.kubectl("apply", "--server-side", *ns, "-f", "-", input=bad, check=False)
    assert ssa.returncode == 1
    assert (
        f"failed to create typed patch object ({sim_namespace}/strict; apps/v1, "
        "Kind=Deployment): .spec.replicaz: field not declared in schema"
    ) in ssa.stderr
    # An existing object: client-side apply sends a strategic merge patch.
    sim_cluster.kubectl("apply", *ns, "-f", "-", input=_deploy("strict"))
    out = sim_cluster.kubectl("apply", *ns, "-f", "-", input=bad, check=False)
    assert out.returncode == 1
    assert "The request is invalid: patch: Invalid value: " in out.stderr
    assert 'strict decoding error: unknown field "spec.replicaz"' in out.stderr


def test_unknown_field_warn_and_ignore_prune(
    sim_cluster: SimClusterHandle, sim_namespace: str
) -> None:
    ns = ("-n", sim_namespace)
    bad = _deploy("warned", extra="  replicaz: 2\n")
    out = sim_cluster.kubectl("create", "--validate=warn", *ns, "-f", "-", input=bad)
    assert 'Warning: unknown field "spec.replicaz"' in out.stderr
    stored = json.loads(sim_cluster.kubectl("get", *ns, "deploy/warned", "-o", "json").stdout)
    assert "replicaz" not in stored["spec"]
    out = sim_cluster.kubectl(
        "create", "--validate=false", *ns, "-f", "-", input=bad.replace("warned", "ignored")
    )
    assert "Warning" not in out.stderr
    stored = json.loads(sim_cluster.kubectl("get", *ns, "deploy/ignored", "-o", "json").stdout)
    assert "replicaz" not in stored["spec"]
    # The Python client sends no fieldValidation: the server's default is Warn.
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "extra"},
        "data": {"k": "v"},
        "dataz": {"k": "v"},
    }
    status, headers, created = scenarios.raw_request(
        sim_cluster.api_client(), "POST", f"/api/v1/namespaces/{sim_namespace}/configmaps", body
    )
    assert status == 201 and "dataz" not in created
    assert headers["warning"] == '299 - "unknown field \\"dataz\\""'


def test_unknown_nested_field_names_its_path(
    sim_cluster: SimClusterHandle, sim_namespace: str
) -> None:
    bad = _deploy("nested").replace(
        "imagePullPolicy: IfNotPresent}", "imagePullPolicy: IfNotPresent, cmd: [sh]}"
    )
    out = sim_cluster.kubectl("create", "-n", sim_namespace, "-f", "-", input=bad, check=False)
    assert 'unknown field "spec.template.spec.containers[0].cmd"' in out.stderr


def test_invalid_enum_kubectl(sim_cluster: SimClusterHandle, sim_namespace: str) -> None:
    out = sim_cluster.kubectl(
        "apply", "-n", sim_namespace, "-f", "-", input=_deploy("enum", "Sometimes"), check=False
    )
    assert out.returncode == 1
    assert (
        'The Deployment "enum" is invalid: spec.template.spec.containers[0].imagePullPolicy: '
        'Unsupported value: "Sometimes": supported values: "Always", "IfNotPresent", "Never"'
    ) in out.stderr
    svc = (
        "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n"
        "spec: {type: Public, ports: [{port: 80, protocol: HTTP}]}\n"
    )
    out = sim_cluster.kubectl("apply", "-n", sim_namespace, "-f", "-", input=svc, check=False)
    assert 'spec.type: Unsupported value: "Public": supported values: "ClusterIP", ' in out.stderr
    assert 'spec.ports[0].protocol: Unsupported value: "HTTP"' in out.stderr


@pytest.mark.parametrize(
    "scenario",
    [
        scenarios.unknown_field_strict,
        scenarios.invalid_enum_values,
        scenarios.secret_data_not_base64,
        scenarios.annotations_too_long,
    ],
    ids=lambda s: s.__name__,
)
def test_validation_scenarios_python_client(
    scenario: scenarios.Scenario, sim_cluster: SimClusterHandle, sim_namespace: str
) -> None:
    scenario(sim_cluster.api_client(), sim_namespace)


def test_custom_resource_schema_python_client(
    sim_cluster: SimClusterHandle, sim_namespace: str
) -> None:
    scenarios.custom_resource_schema(sim_cluster.api_client(), sim_namespace)


CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {{name: widgets.{group}}}
spec:
  group: {group}
  scope: Namespaced
  names: {{plural: widgets, singular: widget, kind: Widget}}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {{type: integer, minimum: 1, maximum: 10}}
              color: {{type: string, enum: [red, green], default: red}}
              name: {{type: string, pattern: "^[a-z]+$"}}
"""


def test_custom_resource_schema_kubectl(sim_cluster: SimClusterHandle, sim_namespace: str) -> None:
    group = f"v{uuid.uuid4().hex[:6]}.example.com"
    sim_cluster.kubectl("apply", "-f", "-", input=CRD.format(group=group))
    try:
        head = f"apiVersion: {group}/v1\nkind: Widget\nmetadata: {{name: w}}\n"
        ns = ("-n", sim_namespace)
        out = sim_cluster.kubectl(
            "apply", *ns, "-f", "-", input=head + "spec: {size: 20, color: blue}\n", check=False
        )
        assert out.returncode == 1
        assert 'The Widget "w" is invalid: \n* spec.color: ' in out.stderr
        assert (
            'spec.color: Unsupported value: "blue": supported values: "red", "green"' in out.stderr
        )
        assert (
            "spec.size: Invalid value: 20: spec.size in body should be less than or equal to 10"
            in out.stderr
        )
        out = sim_cluster.kubectl(
            "apply", *ns, "-f", "-", input=head + "spec: {size: 2, extra: 1}\n", check=False
        )
        assert (
            'Widget in version "v1" cannot be handled as a Widget: strict decoding error: '
            'unknown field "spec.extra"'
        ) in out.stderr
        sim_cluster.kubectl("apply", *ns, "-f", "-", input=head + "spec: {size: 2}\n")
        got = json.loads(sim_cluster.kubectl("get", *ns, "widget/w", "-o", "json").stdout)
        assert got["spec"] == {"size": 2, "color": "red"}
    finally:
        sim_cluster.kubectl("delete", "crd", f"widgets.{group}", "--wait=false")


def test_big_crd_client_side_apply_annotation_too_long(sim_cluster: SimClusterHandle) -> None:
    group = f"b{uuid.uuid4().hex[:6]}.example.com"
    props = {f"field{i:04d}": {"type": "string", "description": "x" * 200} for i in range(1400)}
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"bigs.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "bigs", "singular": "big", "kind": "Big"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {"spec": {"type": "object", "properties": props}},
                        }
                    },
                }
            ],
        },
    }
    out = sim_cluster.kubectl("apply", "-f", "-", input=json.dumps(crd), check=False)
    assert out.returncode == 1
    assert (
        f'The CustomResourceDefinition "bigs.{group}" is invalid: metadata.annotations: '
        "Too long: must have at most 262144 bytes"
    ) in out.stderr
    # Server-side apply writes no last-applied annotation: the same CRD goes in.
    sim_cluster.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(crd))
    sim_cluster.kubectl("delete", "crd", f"bigs.{group}", "--wait=false")


def test_secret_not_base64_kubectl(sim_cluster: SimClusterHandle, sim_namespace: str) -> None:
    secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {token: 'abc!'}\n"
    out = sim_cluster.kubectl("apply", "-n", sim_namespace, "-f", "-", input=secret, check=False)
    assert out.returncode == 1
    assert (
        'Secret in version "v1" cannot be handled as a Secret: illegal base64 data at input byte 3'
    ) in out.stderr


def test_python_client_invalid_enum_status(
    sim_cluster: SimClusterHandle, sim_namespace: str
) -> None:
    core = client.CoreV1Api(sim_cluster.api_client())
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {
            "restartPolicy": "Sometimes",
            "containers": [{"name": "c", "image": "busybox:1.36"}],
        },
    }
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod(sim_namespace, pod)
    body = json.loads(err.value.body)
    assert (err.value.status, body["reason"]) == (422, "Invalid")
    assert body["message"] == (
        'Pod "p" is invalid: spec.restartPolicy: Unsupported value: "Sometimes": '
        'supported values: "Always", "OnFailure", "Never"'
    )
    assert body["details"]["causes"][0]["reason"] == "FieldValueNotSupported"


def test_root_metadata_declared_as_bare_object_keeps_name_and_labels(
    sim_cluster: SimClusterHandle, sim_namespace: str
) -> None:
    """Real CRDs (Argo CD's among them) declare ``metadata: {type: object}`` at the root;
    the API server still keeps the object's name, namespace and labels, strict or not."""
    group = f"m{uuid.uuid4().hex[:6]}.example.com"
    crd = CRD.format(group=group).replace(
        "        properties:\n          spec:",
        "        properties:\n          metadata: {type: object}\n          spec:",
    )
    assert "metadata: {type: object}" in crd
    sim_cluster.kubectl("apply", "-f", "-", input=crd)
    try:
        body = (
            f"apiVersion: {group}/v1\nkind: Widget\n"
            "metadata: {name: w, labels: {tier: canary}}\nspec: {size: 2}\n"
        )
        sim_cluster.kubectl(
            "apply", "-n", sim_namespace, "--validate=strict", "-f", "-", input=body
        )
        got = json.loads(
            sim_cluster.kubectl("get", "-n", sim_namespace, "widget/w", "-o", "json").stdout
        )
        assert got["metadata"]["name"] == "w"
        assert got["metadata"]["namespace"] == sim_namespace
        assert got["metadata"]["labels"] == {"tier": "canary"}
    finally:
        sim_cluster.kubectl("delete", "crd", f"widgets.{group}", "--wait=false")
