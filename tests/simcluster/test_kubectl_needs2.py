"""What kubectl needs from an API server, part 2 (issue 13): EndpointSlices and Endpoints
kept by a controller, HPAs on a cluster without metrics, namespaces that terminate, and
events in creation order. Driven through kubectl and the official Python client."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.fixtures.simcluster import SimClusterHandle

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")


def _until(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"condition not met in {timeout}s (last: {last!r})")


WEB = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: app
        image: nginx:1.25
        ports: [{name: http, containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web, labels: {team: a}}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
"""


UNREADY = """
apiVersion: v1
kind: Pod
metadata:
  name: lame
  labels: {app: web}
  annotations: {sim.shipyard.dev/ready: "false"}
spec:
  containers:
  - {name: app, image: nginx:1.25, ports: [{name: http, containerPort: 8080}]}
"""


def _slices(sim: SimClusterHandle, ns: str) -> list[dict]:
    out = sim.kubectl(
        "get", "endpointslices", "-n", ns, "-l", "kubernetes.io/service-name=web", "-o", "json"
    ).stdout
    return json.loads(out)["items"]


def _endpoints(sim: SimClusterHandle, ns: str) -> list[dict]:
    return [e for s in _slices(sim, ns) for e in s.get("endpoints") or []]


def test_endpointslices_follow_pods(sim_cluster: SimClusterHandle, sim_namespace: str) -> None:
    k, ns = sim_cluster.kubectl, sim_namespace
    k("apply", "-n", ns, "-f", "-", input=WEB)
    eps = _until(
        lambda: (
            (e := _endpoints(sim_cluster, ns))
            and len(e) == 2
            and all(x["conditions"]["ready"] for x in e)
            and e
        )
    )
    (sl,) = _slices(sim_cluster, ns)
    svc = json.loads(k("get", "-n", ns, "service", "web", "-o", "json").stdout)
    assert sl["addressType"] == "IPv4"
    assert sl["metadata"]["name"].startswith("web-")
    assert sl["metadata"]["labels"] == {
        "kubernetes.io/service-name": "web",
        "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
        "team": "a",
    }
    (ref,) = sl["metadata"]["ownerReferences"]
    assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == (
        "Service",
        "web",
        svc["metadata"]["uid"],
        True,
    )
    assert sl["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    pods = json.loads(k("get", "-n", ns, "pods", "-l", "app=web", "-o", "json").stdout)["items"]
    assert sorted(e["addresses"][0] for e in eps) == sorted(p["status"]["podIP"] for p in pods)
    for e in eps:
        assert e["conditions"] == {"ready": True, "serving": True, "terminating": False}
        assert e["targetRef"]["kind"] == "Pod" and e["nodeName"].startswith("sim-node-")

    # The core/v1 Endpoints object, through the Python client.
    core = client.CoreV1Api(sim_cluster.api_client())
    ep = core.read_namespaced_endpoints("web", ns)
    assert len(ep.subsets) == 1 and len(ep.subsets[0].addresses) == 2
    assert ep.subsets[0].ports[0].port == 8080 and ep.subsets[0].ports[0].name == "http"
    discovery = client.DiscoveryV1Api(sim_cluster.api_client())
    listed = discovery.list_namespaced_endpoint_slice(
        ns, label_selector="kubernetes.io/service-name=web"
    )
    assert len(listed.items) == 1 and listed.items[0].address_type == "IPv4"

    # Scale up: a third endpoint; a pod turning unready: ready=false, serving=false.
    k("scale", "-n", ns, "deployment/web", "--replicas=3")
    _until(lambda: len(_endpoints(sim_cluster, ns)) == 3)
    # A selected pod that never becomes Ready: ready=false, serving=false (notReadyAddresses).
    k("apply", "-n", ns, "-f", "-", input=UNREADY)

    def conditions_of(pod: str) -> dict:
        by_pod = {e["targetRef"]["name"]: e for e in _endpoints(sim_cluster, ns)}
        return by_pod.get(pod, {}).get("conditions", {})

    _until(
        lambda: conditions_of("lame") == {"ready": False, "serving": False, "terminating": False}
    )
    subset = core.read_namespaced_endpoints("web", ns).subsets[0]
    assert len(subset.addresses) == 3
    assert [a.target_ref.name for a in subset.not_ready_addresses] == ["lame"]

    # A Ready pod being deleted (held by a finalizer): ready=false, serving, terminating.
    victim = pods[0]["metadata"]["name"]
    k(
        "patch",
        "-n",
        ns,
        "pod",
        victim,
        "--type=merge",
        "-p",
        '{"metadata": {"finalizers": ["example.com/hold"]}}',
    )
    k("delete", "-n", ns, "pod", victim, "--wait=false")
    _until(lambda: conditions_of(victim) == {"ready": False, "serving": True, "terminating": True})
    k("patch", "-n", ns, "pod", victim, "--type=merge", "-p", '{"metadata": {"finalizers": null}}')
    _until(lambda: conditions_of(victim) == {})
    k("delete", "-n", ns, "pod", "lame", "--wait=false")

    # Scale to zero: the slice stays (no endpoints), the Endpoints object has no subsets.
    k("scale", "-n", ns, "deployment/web", "--replicas=0")
    _until(lambda: not _endpoints(sim_cluster, ns))
    assert len(_slices(sim_cluster, ns)) == 1
    _until(lambda: not core.read_namespaced_endpoints("web", ns).subsets)

    # Deleting the Service removes its slices (owner) and its Endpoints.
    k("delete", "-n", ns, "service", "web")
    _until(lambda: not _slices(sim_cluster, ns))

    def endpoints_gone() -> bool:
        try:
            core.read_namespaced_endpoints("web", ns)
        except ApiException as exc:
            return exc.status == 404
        return False

    _until(endpoints_gone)


def test_service_without_selector_gets_no_slices(
    sim_cluster: SimClusterHandle, sim_namespace: str
) -> None:
    k, ns = sim_cluster.kubectl, sim_namespace
    k("create", "service", "clusterip", "web", "-n", ns, "--tcp=80:8080")
    k(
        "patch",
        "-n",
        ns,
        "service",
        "web",
        "--type=json",
        "-p",
        '[{"op": "remove", "path": "/spec/selector"}]',
    )
    time.sleep(0.3)
    assert _slices(sim_cluster, ns) == []


API = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: api}
spec:
  replicas: 1
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers: [{name: app, image: nginx:1.25}]
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: api}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: api}
  minReplicas: 2
  maxReplicas: 4
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 70}}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: ghost}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: nope}
  maxReplicas: 3
"""


def _conditions(hpa: dict) -> dict[str, tuple[str, str, str]]:
    return {
        c["type"]: (c["status"], c["reason"], c["message"])
        for c in hpa.get("status", {}).get("conditions") or []
    }


def test_hpa_clamps_replicas_and_reports_missing_metrics(
    sim_cluster: SimClusterHandle, sim_namespace: str
) -> None:
    k, ns = sim_cluster.kubectl, sim_namespace
    k("apply", "-n", ns, "-f", "-", input=API)

    def replicas() -> int:
        d = json.loads(k("get", "-n", ns, "deployment", "api", "-o", "json").stdout)
        return int(d["spec"]["replicas"])

    _until(lambda: replicas() == 2)

    def hpa(name: str = "api") -> dict:
        return json.loads(k("get", "-n", ns, "hpa", name, "-o", "json").stdout)

    _until(lambda: "ScalingActive" in _conditions(hpa()))
    got = hpa()
    conds = _conditions(got)
    assert conds["AbleToScale"] == (
        "True",
        "SucceededGetScale",
        "the HPA controller was able to get the target's current scale",
    )
    assert conds["ScalingActive"] == (
        "False",
        "FailedGetResourceMetric",
        "the HPA was unable to compute the replica count: failed to get cpu resource metric "
        "value: failed to get cpu utilization: unable to get metrics for resource cpu: unable "
        "to fetch metrics from resource metrics API: the server could not find the requested "
        "resource (get pods.metrics.k8s.io)",
    )
    assert got["status"]["desiredReplicas"] == 2 and "lastScaleTime" in got["status"]
    _until(lambda: hpa()["status"]["currentReplicas"] == 2)
    events = json.loads(
        k(
            "get", "-n", ns, "events", "--field-selector", "involvedObject.name=api", "-o", "json"
        ).stdout
    )["items"]
    reasons = {
        (e["reason"], e["message"])
        for e in events
        if e["involvedObject"]["kind"] == ("HorizontalPodAutoscaler")
    }
    assert (
        "SuccessfulRescale",
        "New size: 2; reason: Current number of replicas below Spec.MinReplicas",
    ) in reasons

    # Above maxReplicas: brought back to it.
    k("scale", "-n", ns, "deployment/api", "--replicas=9")
    _until(lambda: replicas() == 4)
    _until(lambda: hpa()["status"]["desiredReplicas"] == 4)

    # A target that does not exist.
    ghost = _until(lambda: (g := hpa("ghost")) and "AbleToScale" in _conditions(g) and g)
    assert _conditions(ghost)["AbleToScale"] == (
        "False",
        "FailedGetScale",
        "the HPA controller was unable to get the target's current scale: "
        'deployments.apps "nope" not found',
    )

    # The Python client, both versions.
    api = sim_cluster.api_client()
    v2 = client.AutoscalingV2Api(api).read_namespaced_horizontal_pod_autoscaler("api", ns)
    assert v2.status.desired_replicas == 4 and v2.spec.min_replicas == 2
    v1 = client.AutoscalingV1Api(api).read_namespaced_horizontal_pod_autoscaler("api", ns)
    assert v1.status.desired_replicas == 4 and v1.spec.max_replicas == 4


def test_hpa_scaling_disabled_at_zero(sim_cluster: SimClusterHandle, sim_namespace: str) -> None:
    k, ns = sim_cluster.kubectl, sim_namespace
    k("apply", "-n", ns, "-f", "-", input=API.split("---")[0] + "---" + API.split("---")[1])
    k("scale", "-n", ns, "deployment/api", "--replicas=0")

    def active() -> tuple[str, str, str] | None:
        hpa = json.loads(k("get", "-n", ns, "hpa", "api", "-o", "json").stdout)
        return _conditions(hpa).get("ScalingActive")

    _until(lambda: (active() or ("",))[1] == "ScalingDisabled")
    d = json.loads(k("get", "-n", ns, "deployment", "api", "-o", "json").stdout)
    assert d["spec"]["replicas"] == 0


def test_namespace_terminates_then_disappears(sim_cluster: SimClusterHandle) -> None:
    k = sim_cluster.kubectl
    ns = f"term-{time.monotonic_ns() % 10**8}"
    k("create", "namespace", ns)
    k(
        "apply",
        "-n",
        ns,
        "-f",
        "-",
        input="kind: ConfigMap\napiVersion: v1\n"
        "metadata: {name: held, finalizers: [example.com/hold]}\n",
    )
    k("create", "configmap", "plain", "-n", ns)
    k("delete", "namespace", ns, "--wait=false")

    def nsobj() -> dict:
        return json.loads(k("get", "namespace", ns, "-o", "json").stdout)

    _until(
        lambda: (
            "NamespaceFinalizersRemaining"
            in {c["type"] for c in nsobj().get("status", {}).get("conditions") or []}
        )
    )
    got = nsobj()
    assert got["status"]["phase"] == "Terminating" and got["metadata"]["deletionTimestamp"]
    conds = {
        c["type"]: (c["status"], c["reason"], c["message"]) for c in got["status"]["conditions"]
    }
    assert conds["NamespaceContentRemaining"] == (
        "True",
        "SomeResourcesRemain",
        "Some resources are remaining: configmaps. has 1 resource instances",
    )
    assert conds["NamespaceFinalizersRemaining"] == (
        "True",
        "SomeFinalizersRemain",
        "Some content in the namespace has finalizers remaining: example.com/hold in 1 "
        "resource instances",
    )
    assert conds["NamespaceDeletionDiscoveryFailure"][:2] == ("False", "ResourcesDiscovered")
    assert "Terminating" in k("get", "namespace", ns).stdout

    # New content is refused with 403, as kube-apiserver's NamespaceLifecycle admission does.
    proc = k("create", "configmap", "late", "-n", ns, check=False)
    assert proc.returncode != 0
    assert (
        f'error: failed to create configmap: configmaps "late" is forbidden: unable to create new '
        f"content in namespace {ns} because it is being terminated"
    ) in proc.stderr
    apps = client.AppsV1Api(sim_cluster.api_client())
    with pytest.raises(ApiException) as err:
        apps.create_namespaced_deployment(
            ns,
            {
                "metadata": {"name": "d"},
                "spec": {
                    "selector": {"matchLabels": {"a": "b"}},
                    "template": {
                        "metadata": {"labels": {"a": "b"}},
                        "spec": {"containers": [{"name": "c", "image": "nginx"}]},
                    },
                },
            },
        )
    status = json.loads(err.value.body)
    assert err.value.status == 403 and status["reason"] == "Forbidden"
    assert status["message"] == (
        f'deployments.apps "d" is forbidden: unable to create new content in namespace {ns} '
        "because it is being terminated"
    )
    assert status["details"] == {"name": "d", "group": "apps", "kind": "deployments"}

    # Releasing the last finalizer lets the namespace go.
    k(
        "patch",
        "-n",
        ns,
        "configmap",
        "held",
        "--type=merge",
        "-p",
        '{"metadata": {"finalizers": null}}',
    )
    _until(lambda: k("get", "namespace", ns, check=False).returncode != 0)
    assert "NotFound" in k("get", "namespace", ns, check=False).stderr


def test_events_listed_in_creation_order_within_a_second(
    sim_cluster: SimClusterHandle, sim_namespace: str
) -> None:
    k, ns = sim_cluster.kubectl, sim_namespace
    k("run", "p", "-n", ns, "--image=nginx:1.25")
    want = ["Scheduled", "Pulling", "Pulled", "Created", "Started"]

    def reasons(*extra: str) -> list[str]:
        out = k(
            "get",
            "events",
            "-n",
            ns,
            "--field-selector",
            "involvedObject.name=p",
            *extra,
            "-o",
            "jsonpath={.items[*].reason}",
        ).stdout
        return out.split()

    _until(lambda: reasons() == want)
    assert reasons("--sort-by=.metadata.creationTimestamp") == want
    assert reasons("--sort-by=.lastTimestamp") == want
    items = json.loads(
        k(
            "get", "events", "-n", ns, "--field-selector", "involvedObject.name=p", "-o", "json"
        ).stdout
    )["items"]
    rvs = [int(e["metadata"]["resourceVersion"]) for e in items]
    assert rvs == sorted(rvs)
    # Real names: <involved object>.<hex of the creation time in ns>, so they sort in order.
    names = [e["metadata"]["name"] for e in items]
    assert all(n.startswith("p.") and len(n) == len("p.") + 16 for n in names)
    assert names == sorted(names)
    described = k("describe", "pod", "p", "-n", ns).stdout.split("Events:")[1]
    positions = [described.index(f"  {r}  ") for r in want]
    assert positions == sorted(positions)
    # The Python client sees the same order.
    api = client.CoreV1Api(sim_cluster.api_client())
    listed = api.list_namespaced_event(ns, field_selector="involvedObject.name=p")
    assert [e.reason for e in listed.items] == want


def test_hpa_v1_v2_conversion(sim_cluster: SimClusterHandle, sim_namespace: str) -> None:
    k, ns = sim_cluster.kubectl, sim_namespace
    k("apply", "-n", ns, "-f", "-", input=API.split("---")[0])
    k("autoscale", "-n", ns, "deployment/api", "--min=2", "--max=4", "--cpu-percent=70")
    api = sim_cluster.api_client()
    v1api, v2api = client.AutoscalingV1Api(api), client.AutoscalingV2Api(api)
    v2 = v2api.read_namespaced_horizontal_pod_autoscaler("api", ns)
    (metric,) = v2.spec.metrics
    assert (metric.type, metric.resource.name, metric.resource.target.average_utilization) == (
        "Resource",
        "cpu",
        70,
    )
    v1 = v1api.read_namespaced_horizontal_pod_autoscaler("api", ns)
    assert v1.spec.target_cpu_utilization_percentage == 70 and v1.spec.min_replicas == 2
    raw = json.loads(
        k("get", "-n", ns, "horizontalpodautoscalers.v1.autoscaling", "api", "-o", "json").stdout
    )
    assert raw["apiVersion"] == "autoscaling/v1" and "metrics" not in raw["spec"]
    # v2 conditions travel in v1 as the alpha annotation.
    _until(
        lambda: (
            "ScalingActive"
            in _conditions(
                json.loads(
                    k(
                        "get",
                        "-n",
                        ns,
                        "horizontalpodautoscalers.v2.autoscaling",
                        "api",
                        "-o",
                        "json",
                    ).stdout
                )
            )
        )
    )
    v1 = v1api.read_namespaced_horizontal_pod_autoscaler("api", ns)
    conds = json.loads(v1.metadata.annotations["autoscaling.alpha.kubernetes.io/conditions"])
    assert {c["type"] for c in conds} >= {"AbleToScale", "ScalingActive"}
    # A v1 update changes the v2 metric.
    v1.spec.target_cpu_utilization_percentage = 55
    v1api.replace_namespaced_horizontal_pod_autoscaler("api", ns, v1)
    v2 = v2api.read_namespaced_horizontal_pod_autoscaler("api", ns)
    assert v2.spec.metrics[0].resource.target.average_utilization == 55
    assert "autoscaling.alpha.kubernetes.io/conditions" not in (v2.metadata.annotations or {})


def test_printer_columns(sim_cluster: SimClusterHandle, sim_namespace: str) -> None:
    k, ns = sim_cluster.kubectl, sim_namespace
    k("apply", "-n", ns, "-f", "-", input=WEB)
    k("apply", "-n", ns, "-f", "-", input=API.split("---")[0] + "---" + API.split("---")[1])
    _until(lambda: len(_endpoints(sim_cluster, ns)) == 2)
    hpa = k("get", "-n", ns, "hpa", "api").stdout.splitlines()
    assert hpa[0].split() == [
        "NAME",
        "REFERENCE",
        "TARGETS",
        "MINPODS",
        "MAXPODS",
        "REPLICAS",
        "AGE",
    ]
    assert hpa[1].split()[:6] == ["api", "Deployment/api", "cpu:", "<unknown>/70%", "2", "4"]
    slices = k("get", "-n", ns, "endpointslices").stdout.splitlines()
    assert slices[0].split() == ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]
    assert slices[1].split()[1:3] == ["IPv4", "8080"]
    eps = k("get", "-n", ns, "endpoints", "web").stdout.splitlines()
    assert eps[0].split() == ["NAME", "ENDPOINTS", "AGE"]
    assert eps[1].split()[1].count(":8080") == 2
