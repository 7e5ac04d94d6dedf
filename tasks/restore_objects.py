"""Restore backed-up objects into drill namespaces, check parity and readiness, clean up.

The pure half (:func:`plan_restore`, :func:`parity_report`, :func:`workload_ready`)
decides what to create, in which order, and whether what the cluster holds afterwards
equals the backup; the I/O half drives a :class:`~tasks.backup_cluster.KubeApi`.

Isolation rules of a drill: every namespaced object goes into ``<ns>-drill-<id>``
namespaces labelled ``shipyard.io/drill=<id>``; cluster-scoped objects that already exist
(typically CRDs on the same cluster) are never modified, and those the drill creates are
deleted by :func:`cleanup_drill` together with the drill namespaces.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import groupby
from typing import Any

from pydantic import BaseModel, Field

from shipyard.core.errors import PermanentError, TransientError
from tasks.backup_cluster import KubeApi, KubeConflict, parallel_map
from tasks.backup_manifest import BackupManifest
from tasks.normalize import (
    ResourceKind,
    diff_objects,
    map_namespace,
    normalize,
    restore_rank,
    significant,
)

__all__ = [
    "DRILL_LABEL",
    "ExistingPolicy",
    "ParityReport",
    "RestoreOutcome",
    "cleanup_drill",
    "measure_parity",
    "parity_report",
    "plan_restore",
    "restore_plan",
    "wait_workloads",
    "workload_ready",
]

log = logging.getLogger(__name__)
JSON = dict[str, Any]
DRILL_LABEL = "shipyard.io/drill"
WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet"})


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

    def __init__(self, kube: KubeApi, workers: int) -> None:
        self.kube = kube
        self.workers = workers
        self._kinds: dict[tuple[str, str], ResourceKind] = {}
        self.refresh()

    def refresh(self) -> None:
        self._kinds = {(k.api_version, k.kind): k for k in self.kube.discover(self.workers)}

    def lookup(self, obj: JSON, wait: float = 10.0) -> ResourceKind:
        key = (str(obj.get("apiVersion")), str(obj.get("kind")))
        deadline = time.monotonic() + wait
        while key not in self._kinds:
            if time.monotonic() > deadline:
                raise PermanentError(f"the target cluster does not serve {key[0]} {key[1]}")
            time.sleep(0.2)
            self.refresh()
        return self._kinds[key]


def object_url(kind: ResourceKind, obj: JSON) -> str:
    """REST path of one object."""
    meta = obj.get("metadata") or {}
    return f"{kind.collection_path(meta.get('namespace'))}/{meta.get('name')}"


def restore_plan(
    kube: KubeApi,
    plan: Sequence[PlannedObject],
    *,
    policy: ExistingPolicy = ExistingPolicy.FAIL,
    workers: int = 8,
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
    kube: KubeApi,
    index: KindIndex,
    item: PlannedObject,
    policy: ExistingPolicy,
    result: RestoreOutcome,
) -> None:
    kind = index.lookup(item.obj)
    body = dict(item.obj)
    collection = kind.collection_path(item.namespace)
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
    kube: KubeApi,
    kind: ResourceKind,
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

    Both sides go through :func:`~tasks.normalize.normalize`; fields the server added
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
    kube: KubeApi, plan: Sequence[PlannedObject], *, workers: int = 8
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
        return {str((o.get("metadata") or {}).get("name")): o for o in kube.list(kind, key[2])}

    keys = list(groups)
    fetched = parallel_map(fetch, keys, workers)
    live: dict[str, JSON | None] = {}
    for key, by_name in zip(keys, fetched, strict=True):
        for item in groups[key]:
            live[item.path] = by_name.get(item.name)
    return parity_report(plan, live)


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
    kube: KubeApi,
    plan: Sequence[PlannedObject],
    *,
    timeout: float,
    workers: int = 8,
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
    kube: KubeApi,
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


def _delete(kube: KubeApi, url: str) -> None:
    body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
    for attempt in range(3):
        try:
            kube.request("DELETE", url, body)
            return
        except TransientError:
            if attempt == 2:
                raise
            time.sleep(0.5 * (attempt + 1))


def drill_namespaces_of(kube: KubeApi, drill_id: str) -> list[str]:
    """Namespaces labelled with ``drill_id`` (for cleanup of a crashed drill)."""
    doc = kube.request(
        "GET", "/api/v1/namespaces", query={"labelSelector": f"{DRILL_LABEL}={drill_id}"}
    )
    return [str(o["metadata"]["name"]) for o in (doc or {}).get("items") or []]
