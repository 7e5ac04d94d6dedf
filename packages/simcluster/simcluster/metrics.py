"""``GET /metrics``: what kube-state-metrics and Argo CD's controller would export.

The simulator serves, under the real exporters' names and labels, the series that
alert rules and dashboards read from a real cluster, so the same rules run against both:

- kube-state-metrics: ``kube_node_info``, ``kube_node_status_allocatable`` /
  ``_capacity`` (``resource`` cpu/memory/pods, ``unit`` core/byte/integer),
  ``kube_pod_info``, ``kube_pod_status_phase`` (one series per phase, 0 or 1),
  ``kube_pod_container_resource_requests`` / ``_limits`` (cpu in cores, memory in
  bytes), ``kube_deployment_spec_replicas``, ``kube_deployment_status_replicas``
  (``_available``, ``_updated``, ``_observed_generation``),
  ``kube_deployment_metadata_generation``, ``kube_namespace_status_phase``;
- Argo CD: ``argocd_app_info`` (value 1) from each stored ``argoproj.io`` Application's
  status, and the counter ``argocd_app_sync_total``, counted once per operation (by its
  ``startedAt``) when ``status.operationState.phase`` reaches Succeeded, Failed or Error.

Gauges are computed from the store at scrape time (one pass over nodes, pods,
deployments, namespaces and Applications; no copies). The sync counter cannot be: it
counts transitions, so :class:`ClusterMetrics` listens to store changes. The text is
the Prometheus exposition format 0.0.4, rendered here (no client library needed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from simcluster.resources import ResourceType
from simcluster.scheduler import quantity
from simcluster.store import Store, WatchEvent

__all__ = ["CONTENT_TYPE", "FAMILIES", "ClusterMetrics", "escape", "render_family", "sample_line"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
JSON = dict[str, Any]
Labels = dict[str, str]
Sample = tuple[Labels, float]

POD_PHASES = ("Pending", "Succeeded", "Failed", "Unknown", "Running")
NAMESPACE_PHASES = ("Active", "Terminating")
FINISHED_PHASES = ("Succeeded", "Failed", "Error")
# kube-state-metrics' resource -> unit naming (v2): cpu in cores, memory in bytes.
UNITS = {"cpu": "core", "memory": "byte", "pods": "integer", "ephemeral-storage": "byte"}
APP_KEY = ("argoproj.io", "applications")


def escape(value: str) -> str:
    """A label value escaped for the text format (backslash, double quote, newline)."""
    if "\\" not in value and '"' not in value and "\n" not in value:
        return value  # the common case, without three scans and copies
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def sample_line(name: str, labels: Labels, value: float) -> str:
    """One sample in text format 0.0.4."""
    if not labels:
        return f"{name} {_number(value)}"
    inner = ",".join(f'{k}="{escape(v)}"' for k, v in labels.items())
    return f"{name}{{{inner}}} {_number(value)}"


def render_family(name: str, kind: str, help_text: str, samples: Iterable[Sample]) -> str:
    """One metric family (HELP, TYPE and its samples) in text format 0.0.4."""
    return _family(name, kind, help_text, [sample_line(name, ls, v) for ls, v in samples])


def _family(name: str, kind: str, help_text: str, lines: list[str]) -> str:
    return "\n".join([f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *lines]) + "\n"


def _resource_units(resources: Any) -> Iterator[tuple[str, str, float]]:
    """(resource, unit, value) of a ResourceList, in kube-state-metrics' units."""
    if not isinstance(resources, dict):
        return
    for resource, raw in sorted(resources.items()):
        unit = UNITS.get(resource)
        if unit is None:
            continue
        yield resource.replace("-", "_"), unit, quantity(raw)


# The families in exposition order: name, type, help. Gauges come from objects, the
# counter from store changes.
FAMILIES: tuple[tuple[str, str, str], ...] = (
    ("kube_node_info", "gauge", "Information about a cluster node."),
    (
        "kube_node_status_allocatable",
        "gauge",
        "The allocatable for different resources of a node that are available for scheduling.",
    ),
    ("kube_node_status_capacity", "gauge", "The capacity for different resources of a node."),
    ("kube_pod_info", "gauge", "Information about pod."),
    ("kube_pod_status_phase", "gauge", "The pods current phase."),
    (
        "kube_pod_container_resource_requests",
        "gauge",
        "The number of requested request resource by a container.",
    ),
    (
        "kube_pod_container_resource_limits",
        "gauge",
        "The number of requested limit resource by a container.",
    ),
    ("kube_deployment_spec_replicas", "gauge", "Number of desired pods for a deployment."),
    ("kube_deployment_status_replicas", "gauge", "The number of replicas per deployment."),
    (
        "kube_deployment_status_replicas_available",
        "gauge",
        "The number of available replicas per deployment.",
    ),
    (
        "kube_deployment_status_replicas_updated",
        "gauge",
        "The number of updated replicas per deployment.",
    ),
    (
        "kube_deployment_status_observed_generation",
        "gauge",
        "The generation observed by the deployment controller.",
    ),
    (
        "kube_deployment_metadata_generation",
        "gauge",
        "Sequence number representing a specific generation of the desired state.",
    ),
    ("kube_namespace_status_phase", "gauge", "kubernetes namespace status phase."),
    ("argocd_app_info", "gauge", "Information about application."),
    ("argocd_app_sync_total", "counter", "Number of application syncs."),
)
Series = list[tuple[str, Labels, float]]  # (family, labels, value) of one object


def node_series(node: JSON) -> Series:
    """kube_node_* of one Node."""
    name = node["metadata"]["name"]
    spec, status = node.get("spec") or {}, node.get("status") or {}
    ni = status.get("nodeInfo") or {}
    addresses = {a.get("type"): a.get("address", "") for a in status.get("addresses") or []}
    info = {
        "node": name,
        "kernel_version": str(ni.get("kernelVersion", "")),
        "os_image": str(ni.get("osImage", "")),
        "container_runtime_version": str(ni.get("containerRuntimeVersion", "")),
        "kubelet_version": str(ni.get("kubeletVersion", "")),
        "kubeproxy_version": str(ni.get("kubeProxyVersion", "")),
        "provider_id": str(spec.get("providerID", "")),
        "pod_cidr": str(spec.get("podCIDR", "")),
        "internal_ip": str(addresses.get("InternalIP", "")),
        "system_uuid": str(ni.get("systemUUID", "")),
    }
    out: Series = [("kube_node_info", info, 1)]
    for family, field in (
        ("kube_node_status_allocatable", "allocatable"),
        ("kube_node_status_capacity", "capacity"),
    ):
        for resource, unit, value in _resource_units(status.get(field)):
            out.append((family, {"node": name, "resource": resource, "unit": unit}, value))
    return out


def pod_series(pod: JSON) -> Series:
    """kube_pod_* of one Pod (container resources from the spec, whatever the phase)."""
    meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
    ns, name, uid = str(meta.get("namespace", "")), meta["name"], str(meta.get("uid", ""))
    node = str(spec.get("nodeName") or "")
    owner: JSON = next((r for r in meta.get("ownerReferences") or [] if r.get("controller")), {})
    info = {
        "namespace": ns,
        "pod": name,
        "uid": uid,
        "host_ip": str(status.get("hostIP", "")),
        "pod_ip": str(status.get("podIP", "")),
        "node": node,
        "created_by_kind": str(owner.get("kind", "")),
        "created_by_name": str(owner.get("name", "")),
        "priority_class": str(spec.get("priorityClassName", "")),
        "host_network": "true" if spec.get("hostNetwork") else "false",
    }
    out: Series = [("kube_pod_info", info, 1)]
    phase = status.get("phase") or "Pending"
    for p in POD_PHASES:
        labels = {"namespace": ns, "pod": name, "uid": uid, "phase": p}
        out.append(("kube_pod_status_phase", labels, 1 if p == phase else 0))
    for c in spec.get("containers") or []:
        res = c.get("resources") if isinstance(c, dict) else None
        if not isinstance(res, dict):
            continue
        base = {"namespace": ns, "pod": name, "uid": uid, "container": str(c.get("name", ""))}
        limits: JSON = res.get("limits") or {}
        requests: JSON = res.get("requests") or {}
        # The API server defaults a missing request to its limit (the stored spec a real
        # kube-state-metrics reads has it); the simulator stores the spec as given.
        for family, resources in (
            ("kube_pod_container_resource_requests", {**limits, **requests}),
            ("kube_pod_container_resource_limits", limits),
        ):
            for resource, unit, value in _resource_units(resources):
                out.append(
                    (family, {**base, "node": node, "resource": resource, "unit": unit}, value)
                )
    return out


def deployment_series(d: JSON) -> Series:
    """kube_deployment_* of one Deployment."""
    meta, spec, status = d["metadata"], d.get("spec") or {}, d.get("status") or {}
    labels = {"namespace": str(meta.get("namespace", "")), "deployment": meta["name"]}
    values = (
        ("kube_deployment_spec_replicas", spec.get("replicas", 1)),
        ("kube_deployment_status_replicas", status.get("replicas")),
        ("kube_deployment_status_replicas_available", status.get("availableReplicas")),
        ("kube_deployment_status_replicas_updated", status.get("updatedReplicas")),
        ("kube_deployment_status_observed_generation", status.get("observedGeneration")),
        ("kube_deployment_metadata_generation", meta.get("generation")),
    )
    return [(family, labels, float(value or 0)) for family, value in values]


def namespace_series(ns: JSON) -> Series:
    """kube_namespace_status_phase of one Namespace (one series per phase)."""
    phase = (ns.get("status") or {}).get("phase") or "Active"
    name = ns["metadata"]["name"]
    return [
        ("kube_namespace_status_phase", {"namespace": name, "phase": p}, 1 if p == phase else 0)
        for p in NAMESPACE_PHASES
    ]


def application_series(app: JSON) -> Series:
    """argocd_app_info of one Application (value 1; Unknown where status says nothing)."""
    meta, spec, status = app["metadata"], app.get("spec") or {}, app.get("status") or {}
    dest = spec.get("destination") or {}
    source: JSON = spec.get("source") or next(iter(spec.get("sources") or []), {}) or {}
    info = {
        "name": meta["name"],
        "namespace": str(meta.get("namespace", "")),
        "project": str(spec.get("project", "")),
        "dest_namespace": str(dest.get("namespace", "")),
        "dest_server": str(dest.get("server") or dest.get("name") or ""),
        "repo": str(source.get("repoURL", "")),
        "sync_status": str((status.get("sync") or {}).get("status") or "Unknown"),
        "health_status": str((status.get("health") or {}).get("status") or "Unknown"),
    }
    return [("argocd_app_info", info, 1)]


KINDS: tuple[tuple[str, str, Callable[[JSON], Series]], ...] = (
    ("", "nodes", node_series),
    ("", "pods", pod_series),
    ("apps", "deployments", deployment_series),
    ("", "namespaces", namespace_series),
    (*APP_KEY, application_series),
)


class ClusterMetrics:
    """The simulator's /metrics: gauges from the store, the sync counter from its changes.

    An object's rendered lines are cached by uid and reused while its resourceVersion is
    unchanged, so a scrape mostly joins strings (see bench/sim_metrics.py).
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._sync_totals: dict[tuple[str, str, str, str, str], int] = {}
        self._counted: dict[str, str] = {}  # Application uid -> startedAt last counted
        self._cache: dict[str, tuple[str, list[tuple[str, str]]]] = {}
        store.subscribe(self.on_event)

    # -- the counter -----------------------------------------------------------------

    def on_event(self, rt: ResourceType, event: WatchEvent) -> None:
        """Count an Application's operation once, when it reaches a finished phase."""
        if rt.key != APP_KEY:
            return
        meta = event.obj.get("metadata") or {}
        uid = str(meta.get("uid") or "")
        if event.type == "DELETED":
            self._counted.pop(uid, None)
            return
        state = (event.obj.get("status") or {}).get("operationState")
        if not isinstance(state, dict):
            return
        phase = str(state.get("phase") or "")
        started = str(state.get("startedAt") or "")
        if phase not in FINISHED_PHASES or self._counted.get(uid) == started:
            return
        self._counted[uid] = started
        spec = event.obj.get("spec") or {}
        dest = spec.get("destination") or {}
        key = (
            str(meta.get("name") or ""),
            str(meta.get("namespace") or ""),
            str(spec.get("project") or ""),
            str(dest.get("server") or dest.get("name") or ""),
            phase,
        )
        self._sync_totals[key] = self._sync_totals.get(key, 0) + 1

    # -- scrape ----------------------------------------------------------------------

    def render(self) -> str:
        """The whole exposition text, computed now from the store."""
        lines: dict[str, list[str]] = {name: [] for name, _, _ in FAMILIES}
        cache: dict[str, tuple[str, list[tuple[str, str]]]] = {}
        for group, plural, series in KINDS:
            rt = self.store.registry.by_key(group, plural)
            for obj in self.store.select(rt) if rt is not None else []:
                meta = obj["metadata"]
                uid, rv = str(meta.get("uid", "")), str(meta.get("resourceVersion", ""))
                hit = self._cache.get(uid)
                if hit is None or hit[0] != rv:
                    hit = (rv, [(f, sample_line(f, ls, v)) for f, ls, v in series(obj)])
                cache[uid] = hit
                for family, line in hit[1]:
                    lines[family].append(line)
        self._cache = cache
        for (name, namespace, project, server, phase), count in sorted(self._sync_totals.items()):
            labels = {
                "name": name,
                "namespace": namespace,
                "project": project,
                "dest_server": server,
                "phase": phase,
            }
            lines["argocd_app_sync_total"].append(
                sample_line("argocd_app_sync_total", labels, count)
            )
        return "".join(_family(name, kind, text, lines[name]) for name, kind, text in FAMILIES)
