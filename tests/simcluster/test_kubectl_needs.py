"""What kubectl needs from an API server (issue 13), driven through kubectl and the
official Python client: protobuf bodies from ``kubectl create`` generators, a clear
Status for exec/attach/port-forward, OpenAPI for ``kubectl explain``, discovery."""

from __future__ import annotations

import json
import shutil
import time

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.fixtures.simcluster import SimClusterHandle

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")


def _get(sim: SimClusterHandle, ns: str, what: str) -> dict:
    return json.loads(sim.kubectl("get", "-n", ns, what, "-o", "json").stdout)


def test_generators_send_protobuf_for_workloads(
    sim_cluster: SimClusterHandle, sim_namespace: str
) -> None:
    """Each generator's object is stored as its own --dry-run=client JSON says."""
    k = sim_cluster.kubectl
    ns = ("-n", sim_namespace)
    generators = [
        (
            "deployment/d",
            ["create", "deployment", "d", "--image=nginx:1.25", "--replicas=2", "--port=80"],
        ),
        ("job/j", ["create", "job", "j", "--image=busybox:1.36", "--", "echo", "hi"]),
        (
            "cronjob/c",
            [
                "create",
                "cronjob",
                "c",
                "--image=busybox:1.36",
                "--schedule=*/5 * * * *",
                "--",
                "date",
            ],
        ),
        ("service/s", ["create", "service", "clusterip", "s", "--tcp=80:8080"]),
        ("service/n", ["create", "service", "nodeport", "n", "--tcp=81:web"]),
        ("namespace/" + sim_namespace + "-x", ["create", "namespace", sim_namespace + "-x"]),
    ]
    try:
        for what, args in generators:
            dry = ("--dry-run=client", "-o", "json")
            want = json.loads(k(args[0], *ns, *dry, *args[1:]).stdout)
            assert "created" in k(args[0], *ns, *args[1:]).stdout
            got = _get(sim_cluster, sim_namespace, what)
            for key, value in (want.get("metadata") or {}).get("labels", {}).items():
                assert got["metadata"]["labels"][key] == value
            spec, want_spec = got.get("spec") or {}, want.get("spec") or {}
            if what.startswith("deployment"):
                assert spec["replicas"] == 2
                assert spec["selector"] == want_spec["selector"]
                c = spec["template"]["spec"]["containers"][0]
                assert (c["name"], c["image"], c["ports"][0]["containerPort"]) == (
                    "nginx",
                    "nginx:1.25",
                    80,
                )
            elif what.startswith("job"):
                c = spec["template"]["spec"]["containers"][0]
                assert c["command"] == ["echo", "hi"]
                assert spec["template"]["spec"]["restartPolicy"] == "Never"
            elif what.startswith("cronjob"):
                assert spec["schedule"] == "*/5 * * * *"
                tmpl = spec["jobTemplate"]["spec"]["template"]["spec"]
                assert tmpl["containers"][0]["command"] == ["date"]
                assert tmpl["restartPolicy"] == "OnFailure"
            elif what.startswith("service"):
                port = spec["ports"][0]
                assert port["port"] == want_spec["ports"][0]["port"]
                assert port["targetPort"] == want_spec["ports"][0]["targetPort"]
                assert spec["type"] == want_spec["type"]
                assert spec["selector"] == want_spec["selector"]
    finally:
        k("delete", "namespace", sim_namespace + "-x", "--wait=false", check=False)


def _running_pod(sim: SimClusterHandle, ns: str, name: str) -> None:
    sim.kubectl("run", "-n", ns, name, "--image=nginx:1.25")
    deadline = time.monotonic() + 20
    while _get(sim, ns, f"pod/{name}").get("status", {}).get("phase") != "Running":
        assert time.monotonic() < deadline, "pod never ran"
        time.sleep(0.1)


def test_exec_attach_port_forward_say_not_supported(
    sim_cluster: SimClusterHandle, sim_namespace: str
) -> None:
    k = sim_cluster.kubectl
    ns = ("-n", sim_namespace)
    _running_pod(sim_cluster, sim_namespace, "p")
    out = k("exec", *ns, "p", "--", "ls", check=False)
    assert out.returncode != 0
    assert "Error from server (BadRequest): exec is not supported by the simulator" in out.stderr
    out = k("attach", *ns, "p", check=False)
    assert "attach is not supported by the simulator" in out.stderr
    out = k("port-forward", *ns, "pod/p", "18080:80", check=False, timeout=20)
    assert out.returncode != 0
    assert "port-forward is not supported by the simulator" in out.stderr
    missing = k("exec", *ns, "nope", "--", "ls", check=False)
    assert 'Error from server (NotFound): pods "nope" not found' in missing.stderr
    # The Python client's stream() upgrades over WebSocket: the handshake gets the Status.
    from kubernetes.stream import stream

    api = client.CoreV1Api(sim_cluster.api_client())
    with pytest.raises(ApiException) as err:
        stream(
            api.connect_get_namespaced_pod_exec,
            "p",
            sim_namespace,
            command=["ls"],
            stderr=True,
            stdin=False,
            stdout=True,
            tty=False,
        )
    # As against a real cluster, the client reports the failed handshake and its Status.
    assert "Handshake status 400" in str(err.value)
    assert '"reason":"BadRequest"' in str(err.value)
    assert "exec is not supported by the simulator" in str(err.value)


WIDGET_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.needs.example.com
spec:
  group: needs.example.com
  names: {kind: Widget, plural: widgets, singular: widget}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        description: A widget for the explain test.
        properties:
          spec:
            type: object
            properties:
              size:
                type: integer
                description: How big the widget is, in cubits.
"""


def test_explain_builtin_kinds(sim_cluster: SimClusterHandle) -> None:
    k = sim_cluster.kubectl
    out = k("explain", "deployment.spec.replicas").stdout
    assert "KIND:       Deployment" in out and "FIELD: replicas <integer>" in out
    assert "Number of desired pods" in out
    probe = k("explain", "pod.spec.containers.livenessProbe").stdout
    assert "periodSeconds\t<integer>" in probe and "Default 10" in probe
    cm = k("explain", "configmap").stdout
    assert "data\t<map[string]string>" in cm
    # Kinds without a hand-written schema still explain (as an open object).
    assert "KIND:       Ingress" in k("explain", "ingress").stdout


def test_explain_custom_resource_from_its_schema(sim_cluster: SimClusterHandle) -> None:
    k = sim_cluster.kubectl
    k("apply", "-f", "-", input=WIDGET_CRD)
    try:
        deadline = time.monotonic() + 10
        while True:
            out = k("explain", "widgets.spec.size", check=False)
            if out.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert "FIELD: size <integer>" in out.stdout, out.stderr
        assert "How big the widget is, in cubits." in out.stdout
    finally:
        k("delete", "crd", "widgets.needs.example.com", check=False)


def test_kind_without_crd_is_no_matches_for_kind(
    sim_cluster: SimClusterHandle, sim_namespace: str
) -> None:
    manifest = "apiVersion: nocrd.example.com/v1\nkind: Gadget\nmetadata: {name: g}\n"
    for extra in ((), ("--server-side",)):
        out = sim_cluster.kubectl(
            "apply", "-n", sim_namespace, *extra, "-f", "-", input=manifest, check=False
        )
        assert out.returncode != 0
        assert 'no matches for kind "Gadget" in version "nocrd.example.com/v1"' in out.stderr
        assert "ensure CRDs are installed first" in out.stderr
        assert "validating" not in out.stderr


def test_openapi_documents_through_the_python_client(sim_cluster: SimClusterHandle) -> None:
    api = sim_cluster.api_client()

    def get(path: str) -> dict:
        resp = api.call_api("GET", sim_cluster.url + path, {"Accept": "application/json"})
        resp.read()
        assert resp.status == 200
        return json.loads(resp.data)

    root = get("/openapi/v3")
    assert "apis/apps/v1" in root["paths"]
    doc = get(root["paths"]["apis/apps/v1"]["serverRelativeURL"].split("?")[0])
    schema = doc["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"]
    assert schema["x-kubernetes-group-version-kind"] == [
        {"group": "apps", "version": "v1", "kind": "Deployment"}
    ]
    spec = doc["components"]["schemas"]["io.k8s.api.apps.v1.DeploymentSpec"]
    assert spec["properties"]["replicas"]["type"] == "integer"
    v2 = get("/openapi/v2")
    assert v2["swagger"] == "2.0"
    assert "io.k8s.api.core.v1.Pod" in v2["definitions"]
    text = json.dumps(v2["definitions"])
    assert "#/components/" not in text and "#/definitions/io.k8s.api.core.v1.PodSpec" in text


def test_discovery_serves_autoscaling_discovery_and_admissionregistration(
    sim_cluster: SimClusterHandle, sim_namespace: str
) -> None:
    k = sim_cluster.kubectl
    versions = k("api-versions").stdout.split()
    for gv in (
        "autoscaling/v1",
        "autoscaling/v2",
        "discovery.k8s.io/v1",
        "admissionregistration.k8s.io/v1",
    ):
        assert gv in versions
    manifest = KINDS_MANIFEST
    first = k("apply", "-n", sim_namespace, "-f", "-", input=manifest).stdout
    assert "endpointslice.discovery.k8s.io/web-abc created" in first
    assert "validatingwebhookconfiguration.admissionregistration.k8s.io/needs-vwc created" in first
    assert "horizontalpodautoscaler.autoscaling/web created" in first
    # Client-side apply again: a strategic merge patch, as for any built-in kind.
    again = k("apply", "-n", sim_namespace, "-f", "-", input=manifest).stdout
    assert "endpointslice.discovery.k8s.io/web-abc unchanged" in again
    try:
        api = sim_cluster.api_client()
        hpa1 = client.AutoscalingV1Api(api).read_namespaced_horizontal_pod_autoscaler(
            "web", sim_namespace
        )
        assert hpa1.api_version == "autoscaling/v1" and hpa1.spec.max_replicas == 3
        hpa2 = client.AutoscalingV2Api(api).read_namespaced_horizontal_pod_autoscaler(
            "web", sim_namespace
        )
        assert hpa2.spec.metrics[0].resource.name == "cpu"
        slices = client.DiscoveryV1Api(api).list_namespaced_endpoint_slice(
            sim_namespace, label_selector="kubernetes.io/service-name=web"
        )
        assert [s.metadata.name for s in slices.items] == ["web-abc"]
        vwc = client.AdmissionregistrationV1Api(api).read_validating_webhook_configuration(
            "needs-vwc"
        )
        assert vwc.webhooks[0].name == "check.example.com"
    finally:
        k("delete", "validatingwebhookconfiguration", "needs-vwc", check=False)
        k("delete", "mutatingwebhookconfiguration", "needs-mwc", check=False)


KINDS_MANIFEST = """
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-abc, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 80, protocol: TCP}]
endpoints: [{addresses: ["10.0.0.1"], conditions: {ready: true}}]
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: needs-vwc}
webhooks:
- name: check.example.com
  admissionReviewVersions: [v1]
  sideEffects: None
  clientConfig: {service: {name: hook, namespace: default, path: /validate}}
  rules: [{apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [configmaps]}]
---
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {name: needs-mwc}
webhooks:
- name: mutate.example.com
  admissionReviewVersions: [v1]
  sideEffects: None
  clientConfig: {url: "https://hook.example.com/mutate"}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 1
  maxReplicas: 3
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 80}}
"""


def test_probe_defaults(sim_cluster: SimClusterHandle, sim_namespace: str) -> None:
    api = client.CoreV1Api(sim_cluster.api_client())
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="probed"),
        spec=client.V1PodSpec(
            containers=[
                client.V1Container(
                    name="app",
                    image="nginx:1.25",
                    liveness_probe=client.V1Probe(
                        http_get=client.V1HTTPGetAction(path="/healthz", port=80)
                    ),
                    readiness_probe=client.V1Probe(
                        tcp_socket=client.V1TCPSocketAction(port=80), period_seconds=5
                    ),
                )
            ]
        ),
    )
    created = api.create_namespaced_pod(sim_namespace, pod)
    live = created.spec.containers[0].liveness_probe
    assert (live.period_seconds, live.timeout_seconds) == (10, 1)
    assert (live.success_threshold, live.failure_threshold) == (1, 3)
    assert live.http_get.scheme == "HTTP"
    assert created.spec.containers[0].readiness_probe.period_seconds == 5
    # Templates are defaulted too (kubectl reads them back from the Deployment).
    k = sim_cluster.kubectl
    k("create", "deployment", "-n", sim_namespace, "probed", "--image=nginx:1.25")
    k(
        "patch",
        "-n",
        sim_namespace,
        "deployment/probed",
        "--type=json",
        "-p",
        '[{"op":"add","path":"/spec/template/spec/containers/0/startupProbe",'
        '"value":{"exec":{"command":["true"]}}}]',
    )
    d = _get(sim_cluster, sim_namespace, "deployment/probed")
    startup = d["spec"]["template"]["spec"]["containers"][0]["startupProbe"]
    assert startup == {
        "exec": {"command": ["true"]},
        "timeoutSeconds": 1,
        "periodSeconds": 10,
        "successThreshold": 1,
        "failureThreshold": 3,
    }


def test_error_values_are_formatted_as_go_prints_them(
    sim_cluster: SimClusterHandle, sim_namespace: str
) -> None:
    apps = client.AppsV1Api(sim_cluster.api_client())
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "mismatch"},
        "spec": {
            "selector": {"matchLabels": {"app": "a"}},
            "template": {
                "metadata": {"labels": {"app": "b", "tier": "web"}},
                "spec": {"containers": [{"name": "c", "image": "nginx:1.25"}]},
            },
        },
    }
    with pytest.raises(ApiException) as err:
        apps.create_namespaced_deployment(sim_namespace, body)
    status = json.loads(err.value.body)
    assert (err.value.status, status["reason"]) == (422, "Invalid")
    assert status["message"] == (
        'Deployment.apps "mismatch" is invalid: spec.template.metadata.labels: Invalid value: '
        'map[string]string{"app":"b", "tier":"web"}: `selector` does not match template `labels`'
    )
    body["spec"]["template"]["metadata"]["labels"] = {"app": "a"}
    apps.create_namespaced_deployment(sim_namespace, body)
    out = sim_cluster.kubectl(
        "patch",
        "-n",
        sim_namespace,
        "deployment/mismatch",
        "--type=merge",
        "-p",
        '{"spec":{"selector":{"matchLabels":{"app":"z"}},'
        '"template":{"metadata":{"labels":{"app":"z"}}}}}',
        check=False,
    )
    assert (
        'spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":"z"}, '
        "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"
    ) in out.stderr
    assert "{'" not in out.stderr
