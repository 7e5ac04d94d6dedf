"""The simulated kube-scheduler: binds a pod to a node that fits it, or leaves it Pending.

A node fits when it is schedulable, matches the pod's ``nodeSelector`` and required node
affinity, has room for the pod's requests (cpu, memory, pod count: the requests of the
pods already bound to it count) and satisfies required inter-pod (anti-)affinity. A
missing PersistentVolumeClaim fails before any node is looked at, as the real
VolumeBinding plugin does.

Pods are placed at admission (so a pod that fits is bound when its create returns, as the
simulator always did); a pod that fits nowhere is created with ``PodScheduled=False``
reason ``Unschedulable`` and the real scheduler's message, e.g.::

    0/1 nodes are available: 1 Insufficient memory. preemption: 0/1 nodes are
    available: 1 No preemption victims found for incoming pod.

:class:`Scheduler` records the ``FailedScheduling`` event and retries Pending pods when a
node or a bound pod changes, and every ``SimConfig.schedule_retry`` seconds.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any, cast

from simcluster import events
from simcluster.clock import now_iso
from simcluster.controllers.base import Controller
from simcluster.errors import ApiError
from simcluster.resources import ResourceType
from simcluster.selectors import match_label_selector
from simcluster.store import WatchEvent, clone

if TYPE_CHECKING:
    from simcluster.store import Store

JSON = dict[str, Any]
COMPONENT = "default-scheduler"
_rr = itertools.count()

UNRESOLVABLE = "unresolvable"
RESOLVABLE = "resolvable"

_SUFFIX = {
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$")


def quantity(value: Any) -> float:
    """A Kubernetes quantity (``500m``, ``16Gi``, ``2``) as a number (0 when unreadable)."""
    m = _QUANTITY.match(str(value).strip())
    if not m:
        return 0.0
    number, suffix = m.groups()
    try:
        return float(number) * _SUFFIX.get(suffix, 1 if not suffix else 0)
    except ValueError:
        return 0.0


def pod_requests(spec: JSON) -> dict[str, float]:
    """Effective requests: the containers' sum, or the largest init container's if more.

    A container with limits and no requests requests its limits (API server defaulting).
    """

    def of(c: Any) -> dict[str, float]:
        res = c.get("resources") if isinstance(c, dict) else None
        if not isinstance(res, dict):
            return {}
        req = {**(res.get("limits") or {}), **(res.get("requests") or {})}
        return {k: quantity(req[k]) for k in ("cpu", "memory") if k in req}

    total: dict[str, float] = {"cpu": 0.0, "memory": 0.0}
    for c in spec.get("containers") or []:
        for k, v in of(c).items():
            total[k] += v
    for c in spec.get("initContainers") or []:
        for k, v in of(c).items():
            total[k] = max(total[k], v)
    return total


def _active(pod: JSON) -> bool:
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


def _match_node_term(term: JSON, node: JSON) -> bool:
    labels = node["metadata"].get("labels") or {}
    for expr in term.get("matchExpressions") or []:
        if not _match_expr(expr, labels):
            return False
    for expr in term.get("matchFields") or []:
        if not _match_expr(expr, {"metadata.name": node["metadata"]["name"]}):
            return False
    return bool(term.get("matchExpressions") or term.get("matchFields"))


def _match_expr(expr: JSON, labels: dict[str, str]) -> bool:
    key, op = expr.get("key", ""), expr.get("operator", "")
    values = [str(v) for v in expr.get("values") or []]
    have = labels.get(key)
    if op == "In":
        return have in values
    if op == "NotIn":
        return have not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    if op in ("Gt", "Lt") and have is not None and values:
        try:
            a, b = int(have), int(values[0])
        except ValueError:
            return False
        return a > b if op == "Gt" else a < b
    return False


def _node_affinity_ok(spec: JSON, node: JSON) -> bool:
    labels = node["metadata"].get("labels") or {}
    for k, v in (spec.get("nodeSelector") or {}).items():
        if labels.get(k) != v:
            return False
    required = (
        ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
            "requiredDuringSchedulingIgnoredDuringExecution"
        )
        or {}
    ).get("nodeSelectorTerms")
    if required:
        return any(_match_node_term(t, node) for t in required if isinstance(t, dict))
    return True


def _term_namespaces(term: JSON, pod_ns: str, store: Store) -> set[str] | None:
    """Namespaces a pod (anti-)affinity term looks at (None: all)."""
    names = set(term.get("namespaces") or [])
    sel = term.get("namespaceSelector")
    if sel is not None:
        if not sel:
            return None
        ns_rt = store.registry.by_key("", "namespaces")
        assert ns_rt is not None
        names |= {
            n["metadata"]["name"]
            for n in store.select(ns_rt)
            if match_label_selector(sel, n["metadata"].get("labels") or {})
        }
        return names
    return names or {pod_ns}


def _term_matches(term: JSON, namespaces: set[str] | None, other: JSON) -> bool:
    meta = other["metadata"]
    if namespaces is not None and meta.get("namespace") not in namespaces:
        return False
    return match_label_selector(term.get("labelSelector"), meta.get("labels") or {})


def _required(affinity: JSON | None, kind: str) -> list[JSON]:
    terms = ((affinity or {}).get(kind) or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or []
    return [t for t in terms if isinstance(t, dict)]


class _Snapshot:
    """Nodes and the pods bound to them, taken once per scheduling attempt."""

    def __init__(self, store: Store, skip_uid: str) -> None:
        node_rt = store.registry.by_key("", "nodes")
        pod_rt = store.registry.by_key("", "pods")
        assert node_rt is not None and pod_rt is not None
        self.nodes = sorted(store.select(node_rt), key=lambda n: n["metadata"]["name"])
        self.by_node: dict[str, list[JSON]] = {n["metadata"]["name"]: [] for n in self.nodes}
        for p in store.select(pod_rt):
            node = (p.get("spec") or {}).get("nodeName")
            if node in self.by_node and p["metadata"]["uid"] != skip_uid and _active(p):
                self.by_node[node].append(p)
        self.node_of = {n["metadata"]["name"]: n for n in self.nodes}

    def topology(self, node: JSON, key: str) -> str | None:
        return (node["metadata"].get("labels") or {}).get(key)

    def pods_in_domain(self, node: JSON, key: str) -> list[JSON]:
        value = self.topology(node, key)
        if value is None:
            return []
        return [
            p
            for name, pods in self.by_node.items()
            if self.topology(self.node_of[name], key) == value
            for p in pods
        ]


def _filter(snap: _Snapshot, store: Store, pod: JSON, node: JSON) -> tuple[list[str], str]:
    """Why ``node`` does not fit ``pod`` ([] when it fits) and whether preemption could help."""
    spec = pod.get("spec") or {}
    name = node["metadata"]["name"]
    if (node.get("spec") or {}).get("unschedulable") and not any(
        t.get("key") == "node.kubernetes.io/unschedulable"
        for t in spec.get("tolerations") or []
        if isinstance(t, dict)
    ):
        return ["node(s) were unschedulable"], UNRESOLVABLE
    if not _node_affinity_ok(spec, node):
        return ["node(s) didn't match Pod's node affinity/selector"], UNRESOLVABLE
    alloc = (node.get("status") or {}).get("allocatable") or {}
    bound = snap.by_node.get(name, [])
    reasons = []
    if len(bound) + 1 > quantity(alloc.get("pods", "110")):
        reasons.append("Too many pods")
    want = pod_requests(spec)
    used = {"cpu": 0.0, "memory": 0.0}
    for p in bound:
        for k, v in pod_requests(p.get("spec") or {}).items():
            used[k] += v
    for k in ("cpu", "memory"):
        if want[k] and want[k] + used[k] > quantity(alloc.get(k, "0")) + 1e-9:
            reasons.append(f"Insufficient {k}")
    if reasons:
        return reasons, RESOLVABLE
    affinity = spec.get("affinity") or {}
    ns = pod["metadata"].get("namespace", "default")
    for term in _required(affinity, "podAntiAffinity"):
        namespaces = _term_namespaces(term, ns, store)
        others = snap.pods_in_domain(node, term.get("topologyKey", ""))
        if any(_term_matches(term, namespaces, o) for o in others):
            return ["node(s) didn't match pod anti-affinity rules"], RESOLVABLE
    for term in _required(affinity, "podAffinity"):
        namespaces = _term_namespaces(term, ns, store)
        others = snap.pods_in_domain(node, term.get("topologyKey", ""))
        if not any(_term_matches(term, namespaces, o) for o in others):
            # The first pod of a group that affines to itself may go anywhere.
            anywhere = any(
                _term_matches(term, namespaces, o) for pods in snap.by_node.values() for o in pods
            )
            if anywhere or not _term_matches(term, namespaces, pod):
                return ["node(s) didn't match pod affinity rules"], RESOLVABLE
    for other in [p for pods in snap.by_node.values() for p in pods]:
        for term in _required((other.get("spec") or {}).get("affinity"), "podAntiAffinity"):
            key = term.get("topologyKey", "")
            other_node = snap.node_of.get(other["spec"]["nodeName"])
            if other_node is None or snap.topology(other_node, key) is None:
                continue
            if snap.topology(other_node, key) != snap.topology(node, key):
                continue
            namespaces = _term_namespaces(term, other["metadata"].get("namespace", ""), store)
            if _term_matches(term, namespaces, pod):
                return ["node(s) didn't satisfy existing pods anti-affinity rules"], RESOLVABLE
    return [], ""


def _histogram(counts: dict[str, int]) -> str:
    return ", ".join(sorted(f"{n} {reason}" for reason, n in counts.items()))


def _missing_claim(store: Store, pod: JSON) -> str | None:
    pvc_rt = store.registry.by_key("", "persistentvolumeclaims")
    if pvc_rt is None:
        return None
    ns = pod["metadata"].get("namespace", "default")
    for vol in (pod.get("spec") or {}).get("volumes") or []:
        claim = ((vol or {}).get("persistentVolumeClaim") or {}).get("claimName")
        if claim and store.try_get(pvc_rt, ns, claim) is None:
            return f'persistentvolumeclaim "{claim}" not found'
    return None


def place(store: Store, pod: JSON) -> tuple[str | None, str]:
    """(node name, "") for a node that fits ``pod``, or (None, the scheduler's message)."""
    snap = _Snapshot(store, pod["metadata"].get("uid", ""))
    total = len(snap.nodes)
    head = f"0/{total} nodes are available:"
    prefilter = _missing_claim(store, pod)
    if prefilter is not None:
        tail = f"{total} Preemption is not helpful for scheduling." if total else ""
        return None, f"{head} {prefilter}. preemption: {head} {tail}".rstrip()
    fits: list[str] = []
    reasons: dict[str, int] = {}
    preempt: dict[str, int] = {}
    for node in snap.nodes:
        why, kind = _filter(snap, store, pod, node)
        if not why:
            fits.append(node["metadata"]["name"])
            continue
        for r in why:
            reasons[r] = reasons.get(r, 0) + 1
        msg = (
            "Preemption is not helpful for scheduling"
            if kind == UNRESOLVABLE
            else "No preemption victims found for incoming pod"
        )
        preempt[msg] = preempt.get(msg, 0) + 1
    if fits:
        # Least loaded first (the real scorer spreads too), round-robin among equals.
        least = min(len(snap.by_node[n]) for n in fits)
        candidates = [n for n in fits if len(snap.by_node[n]) == least]
        return candidates[next(_rr) % len(candidates)], ""
    if not total:
        return None, "no nodes available to schedule pods"
    return None, f"{head} {_histogram(reasons)}. preemption: {head} {_histogram(preempt)}."


def unschedulable_status(message: str, now: str) -> JSON:
    """The status of a pod no node fits."""
    return {
        "phase": "Pending",
        "qosClass": "BestEffort",
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "False",
                "lastProbeTime": None,
                "lastTransitionTime": now,
                "reason": "Unschedulable",
                "message": message,
            }
        ],
    }


def admit_pod(store: Store, pod: JSON) -> None:
    """At create: bind ``pod`` to a node that fits, or mark it Unschedulable."""
    spec = pod["spec"]
    created = pod["metadata"]["creationTimestamp"]
    node = spec.get("nodeName")
    message = ""
    if not node:
        node, message = place(store, pod)
    if node:
        spec["nodeName"] = node
        pod["status"] = {
            "phase": "Pending",
            "qosClass": "BestEffort",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "True",
                    "lastProbeTime": None,
                    "lastTransitionTime": created,
                }
            ],
        }
    else:
        spec.pop("nodeName", None)
        pod["status"] = unschedulable_status(message, created)


class Scheduler(Controller):
    """Records FailedScheduling for Pending pods and binds them once a node fits."""

    name = "scheduler"

    def __init__(self, store: Store, config: Any) -> None:
        super().__init__(store, config)
        self._unbound: set[tuple[str, str]] = set()

    def keys_for(self, rt: ResourceType, event: WatchEvent) -> list[Hashable]:
        if rt.key == ("", "nodes"):
            return list(self._unbound)
        if rt.key == ("", "persistentvolumeclaims") and event.type == "ADDED":
            return list(self._unbound)
        if rt.key != ("", "pods"):
            return []
        meta = event.obj["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        unbound = not (event.obj.get("spec") or {}).get("nodeName")
        if event.type == "DELETED" or meta.get("deletionTimestamp") or not unbound:
            self._unbound.discard(key)
            freed = event.type == "DELETED" or not _active(event.obj)
            return list(self._unbound) if freed and self._unbound else []
        if event.type == "ADDED":
            self._unbound.add(key)
            return [key]
        return []

    def start(self) -> None:
        for pod in self.store.select(self.rt("", "pods")):
            if not (pod.get("spec") or {}).get("nodeName"):
                key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
                self._unbound.add(key)
                self.enqueue(key)
        self._tick()

    def _tick(self) -> None:
        for key in list(self._unbound):
            self.enqueue(key)
        if self._loop is not None:
            self._loop.call_later(max(0.1, self.config.schedule_retry), self._tick)

    def reconcile(self, key: Hashable) -> None:
        ns, name = cast(tuple[str, str], key)
        rt = self.rt("", "pods")
        pod = self.store.try_get(rt, ns, name)
        if pod is None or pod["metadata"].get("deletionTimestamp") or pod["spec"].get("nodeName"):
            self._unbound.discard((ns, name))
            return
        node, message = place(self.store, pod)
        try:
            if node:
                bound = clone(pod)
                bound["spec"]["nodeName"] = node
                bound = self.store.update(
                    rt, bound, ns, subresource="binding", manager="kube-scheduler"
                )
                bound = clone(bound)
                for c in (bound.get("status") or {}).get("conditions") or []:
                    if c.get("type") == "PodScheduled":
                        c.update(status="True", lastTransitionTime=now_iso())
                        c.pop("reason", None)
                        c.pop("message", None)
                self.store.update(rt, bound, ns, subresource="status", manager="kube-scheduler")
                self._unbound.discard((ns, name))
                return
            old = pod.get("status") or {}
            conds = [c for c in old.get("conditions") or [] if c.get("type") == "PodScheduled"]
            if not conds or conds[0].get("message") != message:
                new = clone(pod)
                new["status"] = unschedulable_status(message, now_iso())
                pod = self.store.update(rt, new, ns, subresource="status", manager=COMPONENT)
        except ApiError:
            return
        events.record(self.store, pod, "Warning", "FailedScheduling", message, COMPONENT)
