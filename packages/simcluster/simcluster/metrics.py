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

from collections.abc import Iterable, Iterator
from typing import Any

from simcluster.resources import ResourceType
from simcluster.scheduler import quantity
from simcluster.store import Store, WatchEvent

__all__ = ["CONTENT_TYPE", "ClusterMetrics", "escape", "render_family"]

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
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def render_family(name: str, kind: str, help_text: str, samples: Iterable[Sample]) -> str:
    """One metric family (HELP, TYPE and its samples) in text format 0.0.4."""
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        inner = ",".join(f'{k}="{escape(v)}"' for k, v in labels.items())
        lines.append(f"{name}{{{inner}}} {_number(value)}" if inner else f"{name} {_number(value)}")
    return "\n".join(lines) + "\n"


def _resource_units(resources: Any) -> Iterator[tuple[str, str, float]]:
    """(resource, unit, value) of a ResourceList, in kube-state-metrics' units."""
    if not isinstance(resources, dict):
        return
    for resource, raw in sorted(resources.items()):
        unit = UNITS.get(resource)
        if unit is None:
            continue
        yield resource.replace("-", "_"), unit, quantity(raw)


class ClusterMetrics:
    """The simulator's /metrics: gauges from the store, the sync counter from its changes."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._sync_totals: dict[tuple[str, str, str, str, str], int] = {}
        self._counted: dict[str, str] = {}  # Application uid -> startedAt last counted
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

    def _objects(self, group: str, plural: str) -> list[JSON]:
        rt = self.store.registry.by_key(group, plural)
        return self.store.select(rt) if rt is not None else []

    def render(self) -> str:
        """The whole exposition text, computed now from the store."""
        parts = [
            *self._nodes(self._objects("", "nodes")),
            *self._pods(self._objects("", "pods")),
            *self._deployments(self._objects("apps", "deployments")),
            *self._namespaces(self._objects("", "namespaces")),
            *self._applications(self._objects(*APP_KEY)),
        ]
        return "".join(parts)

    def _nodes(self, nodes: list[JSON]) -> list[str]:
        info: list[Sample] = []
        alloc: list[Sample] = []
        cap: list[Sample] = []
        for node in nodes:
            name = node["metadata"]["name"]
            status = node.get("status") or {}
            ni = status.get("nodeInfo") or {}
            addresses = {a.get("type"): a.get("address", "") for a in status.get("addresses") or []}
            info.append(
                (
                    {
                        "node": name,
                        "kernel_version": str(ni.get("kernelVersion", "")),
                        "os_image": str(ni.get("osImage", "")),
                        "container_runtime_version": str(ni.get("containerRuntimeVersion", "")),
                        "kubelet_version": str(ni.get("kubeletVersion", "")),
                        "kubeproxy_version": str(ni.get("kubeProxyVersion", "")),
                        "provider_id": str((node.get("spec") or {}).get("providerID", "")),
                        "pod_cidr": str((node.get("spec") or {}).get("podCIDR", "")),
                        "internal_ip": str(addresses.get("InternalIP", "")),
                        "system_uuid": str(ni.get("systemUUID", "")),
                    },
                    1,
                )
            )
            for target, field in ((alloc, "allocatable"), (cap, "capacity")):
                for resource, unit, value in _resource_units(status.get(field)):
                    target.append(({"node": name, "resource": resource, "unit": unit}, value))
        return [
            render_family("kube_node_info", "gauge", "Information about a cluster node.", info),
            render_family(
                "kube_node_status_allocatable",
                "gauge",
                "The allocatable for different resources of a node that are available for "
                "scheduling.",
                alloc,
            ),
            render_family(
                "kube_node_status_capacity",
                "gauge",
                "The capacity for different resources of a node.",
                cap,
            ),
        ]

    def _pods(self, pods: list[JSON]) -> list[str]:
        info: list[Sample] = []
        phases: list[Sample] = []
        requests: list[Sample] = []
        limits: list[Sample] = []
        for pod in pods:
            meta, spec = pod["metadata"], pod.get("spec") or {}
            status = pod.get("status") or {}
            ns, name, uid = meta.get("namespace", ""), meta["name"], meta.get("uid", "")
            node = str(spec.get("nodeName") or "")
            owner: JSON = next(
                (r for r in meta.get("ownerReferences") or [] if r.get("controller")), {}
            )
            info.append(
                (
                    {
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
                    },
                    1,
                )
            )
            phase = status.get("phase") or "Pending"
            for p in POD_PHASES:
                phases.append(
                    ({"namespace": ns, "pod": name, "uid": uid, "phase": p}, 1 if p == phase else 0)
                )
            for c in spec.get("containers") or []:
                res = c.get("resources") if isinstance(c, dict) else None
                if not isinstance(res, dict):
                    continue
                base = {
                    "namespace": ns,
                    "pod": name,
                    "uid": uid,
                    "container": str(c.get("name", "")),
                }
                for target, field in ((requests, "requests"), (limits, "limits")):
                    for resource, unit, value in _resource_units(res.get(field)):
                        labels = {**base, "node": node, "resource": resource, "unit": unit}
                        target.append((labels, value))
        return [
            render_family("kube_pod_info", "gauge", "Information about pod.", info),
            render_family("kube_pod_status_phase", "gauge", "The pods current phase.", phases),
            render_family(
                "kube_pod_container_resource_requests",
                "gauge",
                "The number of requested request resource by a container.",
                requests,
            ),
            render_family(
                "kube_pod_container_resource_limits",
                "gauge",
                "The number of requested limit resource by a container.",
                limits,
            ),
        ]

    def _deployments(self, deployments: list[JSON]) -> list[str]:
        fields = (
            ("kube_deployment_spec_replicas", "Number of desired pods for a deployment."),
            ("kube_deployment_status_replicas", "The number of replicas per deployment."),
            (
                "kube_deployment_status_replicas_available",
                "The number of available replicas per deployment.",
            ),
            (
                "kube_deployment_status_replicas_updated",
                "The number of updated replicas per deployment.",
            ),
            (
                "kube_deployment_status_observed_generation",
                "The generation observed by the deployment controller.",
            ),
            (
                "kube_deployment_metadata_generation",
                "Sequence number representing a specific generation of the desired state.",
            ),
        )
        samples: dict[str, list[Sample]] = {name: [] for name, _ in fields}
        for d in deployments:
            meta, spec, status = d["metadata"], d.get("spec") or {}, d.get("status") or {}
            labels = {"namespace": meta.get("namespace", ""), "deployment": meta["name"]}
            values = (
                spec.get("replicas", 1),
                status.get("replicas", 0),
                status.get("availableReplicas", 0),
                status.get("updatedReplicas", 0),
                status.get("observedGeneration", 0),
                meta.get("generation", 0),
            )
            for (name, _), value in zip(fields, values, strict=True):
                samples[name].append((labels, float(value or 0)))
        return [render_family(name, "gauge", text, samples[name]) for name, text in fields]

    def _namespaces(self, namespaces: list[JSON]) -> list[str]:
        samples: list[Sample] = []
        for ns in namespaces:
            phase = (ns.get("status") or {}).get("phase") or "Active"
            for p in NAMESPACE_PHASES:
                samples.append(
                    ({"namespace": ns["metadata"]["name"], "phase": p}, 1 if p == phase else 0)
                )
        return [
            render_family(
                "kube_namespace_status_phase",
                "gauge",
                "kubernetes namespace status phase.",
                samples,
            )
        ]

    def _applications(self, apps: list[JSON]) -> list[str]:
        info: list[Sample] = []
        for app in apps:
            meta, spec, status = app["metadata"], app.get("spec") or {}, app.get("status") or {}
            dest = spec.get("destination") or {}
            source: JSON = spec.get("source") or next(iter(spec.get("sources") or []), {}) or {}
            info.append(
                (
                    {
                        "name": meta["name"],
                        "namespace": meta.get("namespace", ""),
                        "project": str(spec.get("project", "")),
                        "dest_namespace": str(dest.get("namespace", "")),
                        "dest_server": str(dest.get("server") or dest.get("name") or ""),
                        "repo": str(source.get("repoURL", "")),
                        "sync_status": str((status.get("sync") or {}).get("status") or "Unknown"),
                        "health_status": str(
                            (status.get("health") or {}).get("status") or "Unknown"
                        ),
                    },
                    1,
                )
            )
        totals: list[Sample] = [
            (
                {"name": n, "namespace": ns, "project": p, "dest_server": s, "phase": ph},
                float(count),
            )
            for (n, ns, p, s, ph), count in sorted(self._sync_totals.items())
        ]
        return [
            render_family("argocd_app_info", "gauge", "Information about application.", info),
            render_family(
                "argocd_app_sync_total", "counter", "Number of application syncs.", totals
            ),
        ]
