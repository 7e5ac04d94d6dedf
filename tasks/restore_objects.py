"""Restore backed-up objects into drill namespaces, check parity and readiness, clean up.

Shared by the three drills (backup, git, Velero). The pure half (:func:`plan_restore`,
:func:`parity_report`, :func:`compare_environments`, :func:`workload_ready`, the drill
namespace names and the restore order) decides what to create, in which order, and
whether what the cluster holds afterwards equals the source; the I/O half drives a
:class:`~shipyard.core.kube.KubeClient`.

Isolation rules of a drill: every namespaced object goes into ``<ns>-drill-<id>``
namespaces labelled ``shipyard.io/drill=<id>``; cluster-scoped objects that already exist
(typically CRDs on the same cluster) are never modified, and those the drill creates are
deleted by :func:`cleanup_drill` together with the drill namespaces.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import groupby
from typing import Any

from pydantic import BaseModel, Field

from shipyard.core.errors import PermanentError, TransientError
from shipyard.core.kube import KubeClient, KubeConflict, Resource
from shipyard.core.manifests import diff_objects, group_of, normalize, significant
from shipyard.core.parallel import DEFAULT_WORKERS, parallel_map
from tasks.backup_manifest import BackupManifest

__all__ = [
    "DRILL_LABEL",
    "ExistingPolicy",
    "ParityReport",
    "RestoreOutcome",
    "cleanup_drill",
    "compare_environments",
    "drill_namespace",
    "map_namespace",
    "measure_parity",
    "new_drill_id",
    "parity_report",
    "plan_restore",
    "restore_plan",
    "restore_rank",
    "wait_workloads",
    "workload_ready",
]

log = logging.getLogger(__name__)
JSON = dict[str, Any]
DRILL_LABEL = "shipyard.io/drill"
WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet"})


def drill_namespace(namespace: str, drill_id: str) -> str:
    """The drill namespace for ``namespace``: ``<ns>-drill-<id>``, a valid DNS label.

    Long names are shortened with a hash so two source namespaces never collide.
    """
    suffix = f"-drill-{drill_id}"
    name = f"{namespace}{suffix}"
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(namespace.encode()).hexdigest()[:6]
    keep = 63 - len(suffix) - len(digest) - 1
    return f"{namespace[:keep].rstrip('-')}-{digest}{suffix}"


def new_drill_id() -> str:
    """A fresh random drill id (six hex digits): the suffix of the drill namespaces."""
    return f"{random.SystemRandom().getrandbits(24):06x}"


def map_namespace(obj: Mapping[str, Any], mapping: Mapping[str, str]) -> JSON:
    """A copy of ``obj`` moved into the drill namespaces given by ``mapping``.

    Rewrites ``metadata.namespace``, the name of Namespace objects, and RBAC subjects
    that point into a mapped namespace, so the drill copy is self-contained.
    """
    out: JSON = copy.deepcopy(dict(obj))
    meta = out.setdefault("metadata", {})
    kind = out.get("kind")
    if kind == "Namespace" and meta.get("name") in mapping:
        meta["name"] = mapping[meta["name"]]
    namespace = meta.get("namespace")
    if namespace in mapping:
        meta["namespace"] = mapping[namespace]
    if kind in ("RoleBinding", "ClusterRoleBinding"):
        for subject in out.get("subjects") or []:
            if isinstance(subject, dict) and subject.get("namespace") in mapping:
                subject["namespace"] = mapping[subject["namespace"]]
    return out


# Restore order: what others depend on first (CRDs, namespaces, RBAC, config, workloads,
# then what routes to workloads). Unknown kinds (custom resources) go after workloads.
_RANK: dict[str, int] = {
    "CustomResourceDefinition": 0,
    "Namespace": 1,
    "ServiceAccount": 2,
    "ClusterRole": 2,
    "Role": 2,
    "ClusterRoleBinding": 3,
    "RoleBinding": 3,
    "ResourceQuota": 4,
    "LimitRange": 4,
    "ConfigMap": 5,
    "Secret": 5,
    "PersistentVolumeClaim": 5,
    "StorageClass": 0,
    "IngressClass": 0,
    "Deployment": 6,
    "StatefulSet": 6,
    "DaemonSet": 6,
    "ReplicaSet": 6,
    "Job": 6,
    "CronJob": 6,
    "Pod": 6,
    "HorizontalPodAutoscaler": 7,
    "PodDisruptionBudget": 7,
    "Service": 8,
    "Ingress": 9,
    "NetworkPolicy": 9,
}
CUSTOM_RESOURCE_RANK = 7


def restore_rank(kind: str) -> int:
    """Position of ``kind`` in the restore order (lower first)."""
    return _RANK.get(kind, CUSTOM_RESOURCE_RANK)


class ExistingPolicy(StrEnum):
    """What to do when an object to restore already exists in the target."""

    SKIP = "skip"
    UPDATE = "update"
    FAIL = "fail"


@dataclass(frozen=True)
class PlannedObject:
    """One object to create: the backup path it came from and the mapped object."""

    path: str
    obj: JSON
    secret: bool

    @property
    def kind(self) -> str:
        return str(self.obj.get("kind", ""))

    @property
    def namespace(self) -> str | None:
        ns = (self.obj.get("metadata") or {}).get("namespace")
        return str(ns) if ns else None

    @property
    def name(self) -> str:
        return str((self.obj.get("metadata") or {}).get("name", ""))

    @property
    def ref(self) -> str:
        """``Kind/namespace/name`` as shown in reports."""
        return "/".join(p for p in (self.kind, self.namespace, self.name) if p)


def plan_restore(
    manifest: BackupManifest,
    objects: Mapping[str, JSON],
    mapping: Mapping[str, str],
    drill_id: str,
) -> list[PlannedObject]:
    """Objects in restore order (CRDs, namespaces, RBAC, config, workloads, services...),
    moved into the drill namespaces; drill namespaces carry the drill label."""
    planned: list[PlannedObject] = []
    for entry in manifest.objects:
        obj = map_namespace(objects[entry.path], mapping)
        if obj.get("kind") == "Namespace":
            labels = obj.setdefault("metadata", {}).setdefault("labels", {})
            labels[DRILL_LABEL] = drill_id
        planned.append(PlannedObject(entry.path, obj, entry.secret))
    return sorted(planned, key=lambda p: (restore_rank(p.kind), p.path))


@dataclass
class RestoreOutcome:
    """What a restore did, for the report and for cleanup."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    created_cluster_scoped: list[tuple[str, str]] = field(default_factory=list)  # (path, ref)

    @property
    def restored(self) -> int:
        return len(self.created) + len(self.updated)


class KindIndex:
    """(apiVersion, kind) -> REST resource, refreshed after CRDs are created."""

    def __init__(self, kube: KubeClient, workers: int) -> None:
        self.kube = kube
        self.workers = workers
        self._kinds: dict[tuple[str, str], Resource] = {}
        self.refresh()

    def refresh(self) -> None:
        self._kinds = {(k.api_version, k.kind): k for k in self.kube.discover(self.workers)}

    def lookup(self, obj: JSON, wait: float = 10.0) -> Resource:
        key = (str(obj.get("apiVersion")), str(obj.get("kind")))
        deadline = time.monotonic() + wait
        while key not in self._kinds:
            if time.monotonic() > deadline:
                raise PermanentError(f"the target cluster does not serve {key[0]} {key[1]}")
            time.sleep(0.2)
            self.refresh()
        return self._kinds[key]


def object_url(kind: Resource, obj: JSON) -> str:
    """REST path of one object."""
    meta = obj.get("metadata") or {}
    return kind.path(meta.get("namespace"), meta.get("name"))


def restore_plan(
    kube: KubeClient,
    plan: Sequence[PlannedObject],
    *,
    policy: ExistingPolicy = ExistingPolicy.FAIL,
    workers: int = DEFAULT_WORKERS,
    outcome: RestoreOutcome | None = None,
) -> RestoreOutcome:
    """Create the planned objects rank by rank (each rank in parallel).

    ``outcome`` is filled as objects are created, so a caller's ``finally`` can clean up
    what exists even when this raises halfway.
    """
    result = outcome if outcome is not None else RestoreOutcome()
    index = KindIndex(kube, workers)
    for rank, group in groupby(plan, key=lambda p: restore_rank(p.kind)):
        items = list(group)
        if rank > 0 and any(p.kind == "CustomResourceDefinition" for p in plan):
            index.refresh()

        def apply(item: PlannedObject) -> None:
            _apply_one(kube, index, item, policy, result)

        parallel_map(apply, items, workers)
    return result


def _apply_one(
    kube: KubeClient,
    index: KindIndex,
    item: PlannedObject,
    policy: ExistingPolicy,
    result: RestoreOutcome,
) -> None:
    kind = index.lookup(item.obj)
    body = dict(item.obj)
    collection = kind.path(item.namespace)
    try:
        kube.request("POST", collection, body)
    except KubeConflict:
        _on_conflict(kube, kind, item, policy, result)
        return
    except PermanentError as exc:
        raise PermanentError(f"restoring {item.ref} failed: {exc.message}") from None
    result.created.append(item.path)
    if not kind.namespaced and item.kind != "Namespace":
        result.created_cluster_scoped.append((object_url(kind, item.obj), item.ref))


def _on_conflict(
    kube: KubeClient,
    kind: Resource,
    item: PlannedObject,
    policy: ExistingPolicy,
    result: RestoreOutcome,
) -> None:
    """An object already exists: shared cluster-scoped objects are never touched."""
    if not kind.namespaced and item.kind != "Namespace":
        result.skipped.append(item.path)
        return
    if policy is ExistingPolicy.SKIP:
        result.skipped.append(item.path)
        return
    if policy is ExistingPolicy.FAIL:
        raise PermanentError(f"{item.ref} already exists in the drill target (policy: fail)")
    url = object_url(kind, item.obj)
    current = kube.get(url) or {}
    body = dict(item.obj)
    body["metadata"] = {
        **body.get("metadata", {}),
        "resourceVersion": (current.get("metadata") or {}).get("resourceVersion"),
    }
    kube.request("PUT", url, body)
    result.updated.append(item.path)


# --- parity ---------------------------------------------------------------------------


class ParityReport(BaseModel):
    """How closely the restored objects match the backup."""

    expected: int = Field(description="Objects in the backup.")
    matched: int = Field(description="Objects present and equal after normalization.")
    mismatches: list[str] = Field(
        default_factory=list, description="One line per difference; no Secret values."
    )

    @property
    def parity(self) -> float:
        return 1.0 if self.expected == 0 else self.matched / self.expected


def parity_report(
    plan: Sequence[PlannedObject], live: Mapping[str, JSON | None], *, max_lines: int = 50
) -> ParityReport:
    """Compare each planned object with what the cluster holds (path -> object or None).

    Both sides go through :func:`~shipyard.core.manifests.normalize`; fields the server added
    under ``spec`` are tolerated (defaulting), anything else counts.
    """
    matched = 0
    lines: list[str] = []
    for item in plan:
        actual = live.get(item.path)
        if actual is None:
            lines.append(f"{item.ref}: missing after restore")
            continue
        diffs = significant(diff_objects(normalize(item.obj), normalize(actual)))
        if not diffs:
            matched += 1
            continue
        for d in diffs[:5]:
            lines.append(f"{item.ref} {d.render(secret=item.secret)}")
    return ParityReport(expected=len(plan), matched=matched, mismatches=lines[:max_lines])


def measure_parity(
    kube: KubeClient, plan: Sequence[PlannedObject], *, workers: int = DEFAULT_WORKERS
) -> ParityReport:
    """Read back the restored objects (one list per kind and namespace) and compare."""
    index = KindIndex(kube, workers)
    groups: dict[tuple[str, str, str | None], list[PlannedObject]] = {}
    for item in plan:
        key = (str(item.obj.get("apiVersion")), item.kind, item.namespace)
        groups.setdefault(key, []).append(item)

    def fetch(key: tuple[str, str, str | None]) -> dict[str, JSON]:
        items = groups[key]
        kind = index.lookup(items[0].obj)
        if not kind.namespaced:
            # cluster-scoped: fetch just the planned names
            found = {i.name: kube.get(object_url(kind, i.obj)) for i in items}
            return {n: o for n, o in found.items() if o is not None}
        return {
            str((o.get("metadata") or {}).get("name")): o for o in kube.list_objects(kind, key[2])
        }

    keys = list(groups)
    fetched = parallel_map(fetch, keys, workers)
    live: dict[str, JSON | None] = {}
    for key, by_name in zip(keys, fetched, strict=True):
        for item in groups[key]:
            live[item.path] = by_name.get(item.name)
    return parity_report(plan, live)


def _identity(obj: JSON) -> tuple[str, str, str]:
    return (
        group_of(str(obj.get("apiVersion", ""))),
        str(obj.get("kind")),
        str((obj.get("metadata") or {}).get("name")),
    )


def compare_environments(
    desired: list[JSON], live: list[JSON], *, secret_kinds: frozenset[str] = frozenset({"Secret"})
) -> tuple[float, list[str], list[str], list[str]]:
    """Parity of two normalized object sets of one namespace (pure).

    Returns (parity, only in desired, only in live, field mismatches); objects are
    matched by group, kind and name, Namespace objects are not compared.
    """
    want = {_identity(o): o for o in desired if o.get("kind") != "Namespace"}
    have = {_identity(o): o for o in live if o.get("kind") != "Namespace"}
    only_desired = sorted("/".join(k[1:]) for k in want.keys() - have.keys())
    only_live = sorted("/".join(k[1:]) for k in have.keys() - want.keys())
    mismatches: list[str] = []
    equal = 0
    for key in sorted(want.keys() & have.keys()):
        diffs = significant(diff_objects(want[key], have[key]))
        diffs = [d for d in diffs if d.path != ".metadata.namespace"]
        if not diffs:
            equal += 1
        for d in diffs[:5]:
            mismatches.append(f"{key[1]}/{key[2]} {d.render(secret=key[1] in secret_kinds)}")
    total = len(want.keys() | have.keys())
    return (1.0 if total == 0 else equal / total), only_desired, only_live, mismatches


def compared_objects(objects: list[JSON]) -> int:
    """How many distinct objects :func:`compare_environments` compares in ``objects``."""
    return len({_identity(o) for o in objects if o.get("kind") != "Namespace"})


# --- readiness ------------------------------------------------------------------------


def workload_ready(obj: Mapping[str, Any]) -> bool:
    """True when a Deployment/StatefulSet/DaemonSet is Available for its current spec."""
    kind = obj.get("kind")
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    meta = obj.get("metadata") or {}
    if status.get("observedGeneration", 0) < meta.get("generation", 0):
        return False
    if kind == "Deployment":
        if spec.get("replicas", 1) == 0:
            return True
        return any(
            c.get("type") == "Available" and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
    if kind == "StatefulSet":
        return int(status.get("readyReplicas", 0)) >= int(spec.get("replicas", 1))
    if kind == "DaemonSet":
        return int(status.get("numberReady", 0)) >= int(status.get("desiredNumberScheduled", 0))
    return True


def wait_workloads(
    kube: KubeClient,
    plan: Sequence[PlannedObject],
    *,
    timeout: float,
    workers: int = DEFAULT_WORKERS,
    poll: float = 0.25,
    clock: Callable[[], float] = time.monotonic,
) -> list[str]:
    """Wait until every restored workload is available; returns those that are not."""
    workloads = [p for p in plan if p.kind in WORKLOAD_KINDS]
    if not workloads:
        return []
    index = KindIndex(kube, workers)
    pending = {p.ref: p for p in workloads}
    deadline = clock() + timeout
    while True:
        refs = list(pending)

        def check(ref: str) -> bool:
            item = pending[ref]
            obj = kube.get(object_url(index.lookup(item.obj), item.obj))
            return obj is not None and workload_ready(obj)

        for ref, ok in zip(refs, parallel_map(check, refs, workers), strict=True):
            if ok:
                pending.pop(ref)
        if not pending or clock() >= deadline:
            return sorted(pending)
        time.sleep(poll)


# --- cleanup --------------------------------------------------------------------------


def cleanup_drill(
    kube: KubeClient,
    drill_namespaces: Sequence[str],
    created_cluster_scoped: Sequence[tuple[str, str]] = (),
    *,
    timeout: float = 60.0,
    poll: float = 0.25,
) -> list[str]:
    """Delete the drill namespaces (and cluster-scoped objects the drill created), wait
    until they are gone; returns what is still there at the deadline."""
    for ns in drill_namespaces:
        _delete(kube, f"/api/v1/namespaces/{ns}")
    for url, _ref in created_cluster_scoped:
        _delete(kube, url)
    remaining = [f"/api/v1/namespaces/{ns}" for ns in drill_namespaces]
    remaining += [url for url, _ in created_cluster_scoped]
    deadline = time.monotonic() + timeout
    while remaining and time.monotonic() < deadline:
        remaining = [u for u in remaining if kube.get(u) is not None]
        if remaining:
            time.sleep(poll)
    return remaining


def _delete(kube: KubeClient, url: str) -> None:
    """Delete in the background, a few more tries than one call's budget: cleanup matters."""
    for attempt in range(3):
        try:
            kube.delete(url)
            return
        except TransientError:
            if attempt == 2:
                raise
            time.sleep(0.5 * (attempt + 1))
