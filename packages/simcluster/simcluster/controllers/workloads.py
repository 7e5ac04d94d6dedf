"""Workload controllers: Deployment, ReplicaSet, StatefulSet, DaemonSet, Job.

They follow the real controllers' observable contract (labels, annotations, status
fields and conditions that kubectl and clients read) in simplified form.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from collections.abc import Hashable
from typing import Any, cast

from simcluster import cron, events
from simcluster.clock import now_iso, parse_iso
from simcluster.config import SimConfig
from simcluster.controllers.base import Controller, owned_by, owner_ref, set_condition, write_status
from simcluster.errors import ApiError
from simcluster.resources import ResourceType
from simcluster.selectors import selector_to_string
from simcluster.store import Store, WatchEvent, clone

JSON = dict[str, Any]

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
CHANGE_CAUSE = "kubernetes.io/change-cause"
REVISION_HASH = "controller-revision-hash"
_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"


def template_hash(template: JSON) -> str:
    """A pod-template-hash like the real one: FNV-1a of the template, safe-encoded."""
    h = 0x811C9DC5
    for byte in json.dumps(template, sort_keys=True, separators=(",", ":")).encode():
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return "".join(_ALPHANUMS[ord(c) % len(_ALPHANUMS)] for c in str(h))


def pod_ready(pod: JSON) -> bool:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") == "True"
    return False


def pod_active(pod: JSON) -> bool:
    return not pod["metadata"].get("deletionTimestamp") and (pod.get("status") or {}).get(
        "phase"
    ) not in ("Succeeded", "Failed")


def _available(pod: JSON, min_ready: int) -> bool:
    if not pod_ready(pod):
        return False
    if min_ready <= 0:
        return True
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return time.time() - parse_iso(c.get("lastTransitionTime", "")) >= min_ready
    return False


def _owner_key(event: WatchEvent, kind: str) -> list[Hashable]:
    meta = event.obj["metadata"]
    return [
        (meta.get("namespace", ""), ref["name"])
        for ref in meta.get("ownerReferences") or []
        if ref.get("controller") and ref.get("kind") == kind
    ]


def _key(event: WatchEvent) -> list[Hashable]:
    meta = event.obj["metadata"]
    return [(meta.get("namespace", ""), meta["name"])]


def _resolve(value: Any, total: int, round_up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        try:
            pct = float(value[:-1])
        except ValueError:
            return 0
        raw = pct * total / 100
        return math.ceil(raw) if round_up else math.floor(raw)
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


class _Base(Controller):
    component = "controller-manager"

    def pods_rt(self) -> ResourceType:
        return self.rt("", "pods")

    def create_pod(
        self,
        owner: JSON,
        template: JSON,
        extra_labels: JSON,
        name: str | None = None,
        node: str | None = None,
    ) -> None:
        meta_t = template.get("metadata") or {}
        meta: JSON = {
            "labels": {**(meta_t.get("labels") or {}), **extra_labels},
            "ownerReferences": [owner_ref(owner)],
        }
        if meta_t.get("annotations"):
            meta["annotations"] = dict(meta_t["annotations"])
        if name:
            meta["name"] = name
        else:
            meta["generateName"] = f"{owner['metadata']['name']}-"
        spec = clone(template.get("spec") or {})
        if node:
            spec["nodeName"] = node
        try:
            pod = self.store.create(
                self.pods_rt(),
                {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec},
                owner["metadata"]["namespace"],
                manager="kube-controller-manager",
            )
        except ApiError as exc:
            if exc.code not in (403, 404, 409, 422):
                raise
            events.record(self.store, owner, "Warning", "FailedCreate", exc.message, self.component)
            return
        message = f"Created pod: {pod['metadata']['name']}"
        events.record(self.store, owner, "Normal", "SuccessfulCreate", message, self.component)

    def delete_pod(self, pod: JSON) -> None:
        try:
            self.store.delete(self.pods_rt(), pod["metadata"]["namespace"], pod["metadata"]["name"])
        except ApiError:
            pass


class ReplicaSetController(_Base):
    """Keeps ``spec.replicas`` pods per ReplicaSet and reports their readiness."""

    name = "replicaset"
    component = "replicaset-controller"

    def keys_for(self, rt: ResourceType, event: WatchEvent) -> list[Hashable]:
        if rt.key == ("apps", "replicasets") and event.type != "DELETED":
            return _key(event)
        if rt.key == ("", "pods"):
            return _owner_key(event, "ReplicaSet")
        return []

    def start(self) -> None:
        for rs in self.store.select(self.rt("apps", "replicasets")):
            self.enqueue((rs["metadata"]["namespace"], rs["metadata"]["name"]))

    def reconcile(self, key: Hashable) -> None:
        ns, name = cast(tuple[str, str], key)
        rs_rt = self.rt("apps", "replicasets")
        rs = self.store.try_get(rs_rt, ns, name)
        if rs is None or rs["metadata"].get("deletionTimestamp"):
            return
        pods = owned_by(self.store, self.pods_rt(), rs)
        active = [p for p in pods if pod_active(p)]
        desired = int(rs["spec"].get("replicas", 1))
        template = rs["spec"].get("template") or {}
        if len(active) < desired:
            for _ in range(min(desired - len(active), 500)):
                self.create_pod(rs, template, {})
        elif len(active) > desired:
            ranked = sorted(
                active,
                key=lambda p: (
                    pod_ready(p),
                    (p.get("status") or {}).get("phase") == "Running",
                    p["metadata"]["creationTimestamp"],
                ),
            )
            for pod in ranked[: len(active) - desired]:
                self.delete_pod(pod)
        pods = [p for p in owned_by(self.store, self.pods_rt(), rs) if pod_active(p)]
        min_ready = int(rs["spec"].get("minReadySeconds", 0))
        ready = sum(1 for p in pods if pod_ready(p))
        available = sum(1 for p in pods if _available(p, min_ready))
        if min_ready and available < ready:
            self.enqueue_after(key, min_ready)
        status: JSON = {
            "replicas": len(pods),
            "fullyLabeledReplicas": len(pods),
            "observedGeneration": rs["metadata"].get("generation", 1),
        }
        if ready:
            status["readyReplicas"] = ready
        if available:
            status["availableReplicas"] = available
        selector = rs["spec"].get("selector")
        if isinstance(selector, dict):
            status["selector"] = selector_to_string(selector)
        write_status(self.store, rs_rt, rs, status, "kube-controller-manager")


class DeploymentController(_Base):
    """Rolls Deployments out through ReplicaSets (RollingUpdate and Recreate)."""

    name = "deployment"
    _deployment: JSON | None = None

    def keys_for(self, rt: ResourceType, event: WatchEvent) -> list[Hashable]:
        if rt.key == ("apps", "deployments") and event.type != "DELETED":
            return _key(event)
        if rt.key == ("apps", "replicasets"):
            return _owner_key(event, "Deployment")
        return []

    def start(self) -> None:
        for d in self.store.select(self.rt("apps", "deployments")):
            self.enqueue((d["metadata"]["namespace"], d["metadata"]["name"]))

    def reconcile(self, key: Hashable) -> None:
        ns, name = cast(tuple[str, str], key)
        d_rt, rs_rt = self.rt("apps", "deployments"), self.rt("apps", "replicasets")
        d = self.store.try_get(d_rt, ns, name)
        self._deployment = d
        if d is None or d["metadata"].get("deletionTimestamp"):
            return
        spec = d["spec"]
        replicas = int(spec.get("replicas", 1))
        template = spec.get("template") or {}
        rss = owned_by(self.store, rs_rt, d)
        new_rs = next((rs for rs in rss if _same_template(rs, template)), None)
        max_rev = max((_revision(rs) for rs in rss), default=0)
        progressed = False
        if spec.get("paused"):
            self._sync_status(d, rss, new_rs, False)
            return
        if new_rs is None:
            new_rs = self._create_rs(d, template, max_rev + 1)
            progressed = True
            rss = [*rss, new_rs]
        elif _revision(new_rs) < max_rev:
            new_rs = self._set_rs_annotations(new_rs, d, max_rev + 1)
            progressed = True
        rev = str(_revision(new_rs))
        if (d["metadata"].get("annotations") or {}).get(REVISION) != rev:
            nd = clone(d)
            nd["metadata"].setdefault("annotations", {})[REVISION] = rev
            d = self.store.update(d_rt, nd, ns, manager="kube-controller-manager")
        olds = [rs for rs in rss if rs["metadata"]["uid"] != new_rs["metadata"]["uid"]]
        strategy = spec.get("strategy") or {}
        if strategy.get("type") == "Recreate":
            progressed |= self._recreate(new_rs, olds, replicas)
        else:
            progressed |= self._rolling(d, new_rs, olds, replicas)
        rss = owned_by(self.store, rs_rt, d)
        new_rs = next(
            (rs for rs in rss if rs["metadata"]["uid"] == new_rs["metadata"]["uid"]), new_rs
        )
        self._cleanup(d, rss, new_rs)
        self._sync_status(d, rss, new_rs, progressed)

    def _create_rs(self, d: JSON, template: JSON, revision: int) -> JSON:
        h = template_hash(template)
        t = clone(template)
        t.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = h
        selector = clone(d["spec"].get("selector") or {})
        selector.setdefault("matchLabels", {})[HASH_LABEL] = h
        annotations = {
            k: v
            for k, v in (d["metadata"].get("annotations") or {}).items()
            if k not in (REVISION, "kubectl.kubernetes.io/last-applied-configuration")
        }
        annotations.update(
            {
                REVISION: str(revision),
                DESIRED: str(d["spec"].get("replicas", 1)),
                MAX_REPLICAS: str(d["spec"].get("replicas", 1)),
            }
        )
        body = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": f"{d['metadata']['name']}-{h}",
                "labels": dict(t["metadata"]["labels"]),
                "annotations": annotations,
                "ownerReferences": [owner_ref(d)],
            },
            "spec": {
                "replicas": 0,
                "minReadySeconds": d["spec"].get("minReadySeconds", 0),
                "selector": selector,
                "template": t,
            },
        }
        rs_rt = self.rt("apps", "replicasets")
        existing = self.store.try_get(
            rs_rt, d["metadata"]["namespace"], f"{d['metadata']['name']}-{h}"
        )
        if existing is not None:
            return existing
        return self.store.create(
            rs_rt, body, d["metadata"]["namespace"], manager="kube-controller-manager"
        )

    def _set_rs_annotations(self, rs: JSON, d: JSON, revision: int) -> JSON:
        new = clone(rs)
        ann = new["metadata"].setdefault("annotations", {})
        old_rev = ann.get(REVISION)
        history = [h for h in (ann.get(REVISION_HISTORY) or "").split(",") if h]
        if old_rev:
            history.append(old_rev)
        ann[REVISION] = str(revision)
        ann[REVISION_HISTORY] = ",".join(history)
        cause = (d["metadata"].get("annotations") or {}).get(CHANGE_CAUSE)
        if cause:
            ann[CHANGE_CAUSE] = cause
        return self.store.update(
            self.rt("apps", "replicasets"),
            new,
            rs["metadata"]["namespace"],
            manager="kube-controller-manager",
        )

    def _scale(self, rs: JSON, replicas: int, d_replicas: int | None = None) -> bool:
        if int(rs["spec"].get("replicas", 0)) == replicas:
            return False
        old_n = int(rs["spec"].get("replicas", 0))
        if self._deployment is not None:
            verb = "up" if replicas > old_n else "down"
            events.record(
                self.store,
                self._deployment,
                "Normal",
                "ScalingReplicaSet",
                f"Scaled {verb} replica set {rs['metadata']['name']} from {old_n} to {replicas}",
                "deployment-controller",
            )
        new = clone(rs)
        new["spec"]["replicas"] = replicas
        if d_replicas is not None:
            new["metadata"].setdefault("annotations", {})[DESIRED] = str(d_replicas)
        self.store.update(
            self.rt("apps", "replicasets"),
            new,
            rs["metadata"]["namespace"],
            manager="kube-controller-manager",
        )
        return True

    def _recreate(self, new_rs: JSON, olds: list[JSON], replicas: int) -> bool:
        changed = False
        for rs in olds:
            changed |= self._scale(rs, 0)
        if any(int((rs.get("status") or {}).get("replicas", 0)) > 0 for rs in olds):
            return changed
        pods_left = any(
            pod_active(p) for rs in olds for p in owned_by(self.store, self.pods_rt(), rs)
        )
        if pods_left:
            return changed
        return self._scale(new_rs, replicas, replicas) or changed

    def _rolling(self, d: JSON, new_rs: JSON, olds: list[JSON], replicas: int) -> bool:
        ru = (d["spec"].get("strategy") or {}).get("rollingUpdate") or {}
        surge = _resolve(ru.get("maxSurge", "25%"), replicas, True)
        unavailable = _resolve(ru.get("maxUnavailable", "25%"), replicas, False)
        if surge == 0 and unavailable == 0:
            unavailable = 1
        live_olds = [rs for rs in olds if int(rs["spec"].get("replicas", 0)) > 0]
        if not live_olds:
            return self._scale(new_rs, replicas, replicas)
        changed = False
        total = int(new_rs["spec"].get("replicas", 0)) + sum(
            int(rs["spec"].get("replicas", 0)) for rs in live_olds
        )
        new_spec = int(new_rs["spec"].get("replicas", 0))
        room = replicas + surge - total
        if room > 0 and new_spec < replicas:
            new_spec = min(replicas, new_spec + room)
            changed |= self._scale(new_rs, new_spec, replicas)
        all_rs = [new_rs, *live_olds]
        all_pods = new_spec + sum(int(rs["spec"].get("replicas", 0)) for rs in live_olds)
        min_available = replicas - unavailable
        new_available = int((new_rs.get("status") or {}).get("availableReplicas", 0))
        new_unavailable = max(0, new_spec - new_available)
        max_down = all_pods - min_available - new_unavailable
        if max_down <= 0:
            return changed
        oldest_first = sorted(
            live_olds, key=lambda rs: (_revision(rs), rs["metadata"]["creationTimestamp"])
        )
        cleaned = 0
        for rs in oldest_first:
            if cleaned >= max_down:
                break
            spec_n = int(rs["spec"].get("replicas", 0))
            avail = int((rs.get("status") or {}).get("availableReplicas", 0))
            unhealthy = max(0, spec_n - avail)
            cut = min(unhealthy, max_down - cleaned)
            if cut > 0:
                changed |= self._scale(rs, spec_n - cut)
                rs["spec"] = {**rs["spec"], "replicas": spec_n - cut}
                cleaned += cut
        total_available = sum(
            int((rs.get("status") or {}).get("availableReplicas", 0)) for rs in all_rs
        )
        can_down = min(total_available - min_available, max_down - cleaned)
        for rs in oldest_first:
            if can_down <= 0:
                break
            spec_n = int(rs["spec"].get("replicas", 0))
            cut = min(spec_n, can_down)
            if cut > 0:
                changed |= self._scale(rs, spec_n - cut)
                can_down -= cut
        return changed

    def _cleanup(self, d: JSON, rss: list[JSON], new_rs: JSON) -> None:
        limit = int(d["spec"].get("revisionHistoryLimit", 10))
        olds = sorted(
            (
                rs
                for rs in rss
                if rs["metadata"]["uid"] != new_rs["metadata"]["uid"]
                and int(rs["spec"].get("replicas", 0)) == 0
                and int((rs.get("status") or {}).get("replicas", 0)) == 0
            ),
            key=_revision,
        )
        for rs in olds[: max(0, len(olds) - limit)]:
            try:
                self.store.delete(
                    self.rt("apps", "replicasets"),
                    rs["metadata"]["namespace"],
                    rs["metadata"]["name"],
                )
            except ApiError:
                pass

    def _sync_status(self, d: JSON, rss: list[JSON], new_rs: JSON | None, progressed: bool) -> None:
        now = now_iso()
        spec = d["spec"]
        replicas = int(spec.get("replicas", 1))
        st = lambda rs, f: int((rs.get("status") or {}).get(f, 0))  # noqa: E731
        total = sum(st(rs, "replicas") for rs in rss)
        updated = st(new_rs, "replicas") if new_rs else 0
        ready = sum(st(rs, "readyReplicas") for rs in rss)
        available = sum(st(rs, "availableReplicas") for rs in rss)
        old = d.get("status") or {}
        status: JSON = {
            "observedGeneration": d["metadata"].get("generation", 1),
            "replicas": total,
            "updatedReplicas": updated,
        }
        if ready:
            status["readyReplicas"] = ready
        if available:
            status["availableReplicas"] = available
        unavailable = max(0, sum(int(rs["spec"].get("replicas", 0)) for rs in rss) - available)
        if unavailable:
            status["unavailableReplicas"] = unavailable
        ru = (spec.get("strategy") or {}).get("rollingUpdate") or {}
        max_unavailable = (
            _resolve(ru.get("maxUnavailable", "25%"), replicas, False)
            if (spec.get("strategy") or {}).get("type") != "Recreate"
            else 0
        )
        conditions = [dict(c) for c in old.get("conditions") or []]
        if available >= replicas - max_unavailable:
            conditions = set_condition(
                conditions,
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
                now,
                False,
            )
        else:
            conditions = set_condition(
                conditions,
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
                now,
                False,
            )
        rs_name = new_rs["metadata"]["name"] if new_rs else ""
        deadline = spec.get("progressDeadlineSeconds")
        current = next((c for c in conditions if c.get("type") == "Progressing"), None)
        complete = (
            new_rs is not None
            and updated == replicas
            and available >= replicas
            and total == replicas
        )
        moved = progressed or any(
            old.get(f, 0) != status.get(f, 0)
            for f in ("updatedReplicas", "readyReplicas", "availableReplicas", "replicas")
        )
        if spec.get("paused"):
            conditions = set_condition(
                conditions,
                "Progressing",
                "Unknown",
                "DeploymentPaused",
                "Deployment is paused",
                now,
            )
        elif complete:
            if not (current and current.get("reason") == "NewReplicaSetAvailable"):
                conditions = set_condition(
                    conditions,
                    "Progressing",
                    "True",
                    "NewReplicaSetAvailable",
                    f'ReplicaSet "{rs_name}" has successfully progressed.',
                    now,
                )
        elif (
            moved
            or current is None
            or current.get("reason")
            in ("NewReplicaSetAvailable", "DeploymentPaused", "DeploymentResumed")
        ):
            conditions = set_condition(
                conditions,
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                f'ReplicaSet "{rs_name}" is progressing.',
                now,
            )
            for c in conditions:
                if c.get("type") == "Progressing":
                    c["lastUpdateTime"] = now
            if deadline is not None:
                self.enqueue_after(
                    (d["metadata"]["namespace"], d["metadata"]["name"]), float(deadline) + 1.05
                )
        elif deadline is not None and current.get("reason") == "ReplicaSetUpdated":
            elapsed = time.time() - parse_iso(current.get("lastUpdateTime", ""))
            if elapsed > float(deadline):
                conditions = set_condition(
                    conditions,
                    "Progressing",
                    "False",
                    "ProgressDeadlineExceeded",
                    f'ReplicaSet "{rs_name}" has timed out progressing.',
                    now,
                )
            else:
                self.enqueue_after(
                    (d["metadata"]["namespace"], d["metadata"]["name"]),
                    float(deadline) - elapsed + 1.05,
                )
        status["conditions"] = sorted(
            conditions, key=lambda c: 0 if c.get("type") == "Available" else 1
        )
        write_status(
            self.store, self.rt("apps", "deployments"), d, status, "kube-controller-manager"
        )


def _revision(rs: JSON) -> int:
    try:
        return int((rs["metadata"].get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def _same_template(rs: JSON, template: JSON) -> bool:
    t = clone((rs.get("spec") or {}).get("template") or {})
    labels = (t.get("metadata") or {}).get("labels") or {}
    labels.pop(HASH_LABEL, None)
    want = clone(template)
    want.setdefault("metadata", {}).setdefault("labels", {})
    t.setdefault("metadata", {}).setdefault("labels", labels)
    return bool(t == want)


class StatefulSetController(_Base):
    """Ordinal pods ``<name>-0..N-1``, created in order and replaced highest-first on update."""

    name = "statefulset"
    component = "statefulset-controller"

    def keys_for(self, rt: ResourceType, event: WatchEvent) -> list[Hashable]:
        if rt.key == ("apps", "statefulsets") and event.type != "DELETED":
            return _key(event)
        if rt.key == ("", "pods"):
            return _owner_key(event, "StatefulSet")
        return []

    def start(self) -> None:
        for s in self.store.select(self.rt("apps", "statefulsets")):
            self.enqueue((s["metadata"]["namespace"], s["metadata"]["name"]))

    def reconcile(self, key: Hashable) -> None:
        ns, name = cast(tuple[str, str], key)
        s_rt = self.rt("apps", "statefulsets")
        sts = self.store.try_get(s_rt, ns, name)
        if sts is None or sts["metadata"].get("deletionTimestamp"):
            return
        replicas = int(sts["spec"].get("replicas", 1))
        template = sts["spec"].get("template") or {}
        revision = f"{name}-{template_hash(template)}"
        ordered = sts["spec"].get("podManagementPolicy", "OrderedReady") == "OrderedReady"
        pods = {p["metadata"]["name"]: p for p in owned_by(self.store, self.pods_rt(), sts)}
        for i in range(replicas):
            pod_name = f"{name}-{i}"
            pod = pods.get(pod_name)
            if pod is None:
                self.create_pod(
                    sts,
                    template,
                    {
                        REVISION_HASH: revision,
                        "statefulset.kubernetes.io/pod-name": pod_name,
                        "apps.kubernetes.io/pod-index": str(i),
                    },
                    name=pod_name,
                )
                if ordered:
                    break
                continue
            if pod_active(pod) and not pod_ready(pod) and ordered:
                break
            if not pod_active(pod) and not pod["metadata"].get("deletionTimestamp"):
                self.delete_pod(pod)
                if ordered:
                    break
        else:
            extra = sorted(
                (p for n, p in pods.items() if _ordinal(n, name) >= replicas),
                key=lambda p: -_ordinal(p["metadata"]["name"], name),
            )
            for pod in extra[:1] if ordered else extra:
                self.delete_pod(pod)
            if not extra and all(
                pod_ready(p) for n, p in pods.items() if _ordinal(n, name) < replicas
            ):
                stale = sorted(
                    (
                        p
                        for p in pods.values()
                        if (p["metadata"].get("labels") or {}).get(REVISION_HASH) != revision
                    ),
                    key=lambda p: -_ordinal(p["metadata"]["name"], name),
                )
                if stale:
                    self.delete_pod(stale[0])
        pods_now = [p for p in owned_by(self.store, self.pods_rt(), sts) if pod_active(p)]
        updated = sum(
            1
            for p in pods_now
            if (p["metadata"].get("labels") or {}).get(REVISION_HASH) == revision
        )
        ready = sum(1 for p in pods_now if pod_ready(p))
        old = sts.get("status") or {}
        current_rev = old.get("currentRevision") or revision
        if updated == replicas == len(pods_now) and ready == replicas:
            current_rev = revision
        status: JSON = {
            "observedGeneration": sts["metadata"].get("generation", 1),
            "replicas": len(pods_now),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "currentReplicas": sum(
                1
                for p in pods_now
                if (p["metadata"].get("labels") or {}).get(REVISION_HASH) == current_rev
            ),
            "updatedReplicas": updated,
            "currentRevision": current_rev,
            "updateRevision": revision,
            "collisionCount": 0,
        }
        write_status(self.store, s_rt, sts, status, "kube-controller-manager")


def _ordinal(pod_name: str, sts_name: str) -> int:
    suffix = pod_name[len(sts_name) + 1 :]
    return int(suffix) if suffix.isdigit() else -1


class DaemonSetController(_Base):
    """One pod per simulated node; template changes replace pods one node at a time."""

    name = "daemonset"
    component = "daemonset-controller"

    def keys_for(self, rt: ResourceType, event: WatchEvent) -> list[Hashable]:
        if rt.key == ("apps", "daemonsets") and event.type != "DELETED":
            return _key(event)
        if rt.key == ("", "pods"):
            return _owner_key(event, "DaemonSet")
        return []

    def start(self) -> None:
        for s in self.store.select(self.rt("apps", "daemonsets")):
            self.enqueue((s["metadata"]["namespace"], s["metadata"]["name"]))

    def reconcile(self, key: Hashable) -> None:
        ns, name = cast(tuple[str, str], key)
        ds_rt = self.rt("apps", "daemonsets")
        ds = self.store.try_get(ds_rt, ns, name)
        if ds is None or ds["metadata"].get("deletionTimestamp"):
            return
        template = ds["spec"].get("template") or {}
        revision = template_hash(template)
        nodes = [n["metadata"]["name"] for n in self.store.select(self.rt("", "nodes"))]
        pods = [p for p in owned_by(self.store, self.pods_rt(), ds) if pod_active(p)]
        by_node: dict[str, list[JSON]] = {}
        for p in pods:
            by_node.setdefault((p.get("spec") or {}).get("nodeName", ""), []).append(p)
        for node in nodes:
            if not by_node.get(node):
                self.create_pod(
                    ds,
                    template,
                    {
                        REVISION_HASH: revision,
                        "pod-template-generation": str(ds["metadata"].get("generation", 1)),
                    },
                    node=node,
                )
        stale = [
            p for p in pods if (p["metadata"].get("labels") or {}).get(REVISION_HASH) != revision
        ]
        if stale and all(pod_ready(p) for p in pods if p not in stale):
            self.delete_pod(stale[0])
        pods = [p for p in owned_by(self.store, self.pods_rt(), ds) if pod_active(p)]
        ready = sum(1 for p in pods if pod_ready(p))
        updated = sum(
            1 for p in pods if (p["metadata"].get("labels") or {}).get(REVISION_HASH) == revision
        )
        status: JSON = {
            "observedGeneration": ds["metadata"].get("generation", 1),
            "desiredNumberScheduled": len(nodes),
            "currentNumberScheduled": len({(p.get("spec") or {}).get("nodeName") for p in pods}),
            "numberMisscheduled": 0,
            "numberReady": ready,
            "numberAvailable": ready,
            "updatedNumberScheduled": updated,
        }
        if len(nodes) - ready:
            status["numberUnavailable"] = len(nodes) - ready
        write_status(self.store, ds_rt, ds, status, "kube-controller-manager")


class JobController(_Base):
    """Runs Job pods to completion; sets succeeded/failed counts and Complete/Failed."""

    name = "job"
    component = "job-controller"

    def keys_for(self, rt: ResourceType, event: WatchEvent) -> list[Hashable]:
        if rt.key == ("batch", "jobs") and event.type != "DELETED":
            return _key(event)
        if rt.key == ("", "pods"):
            return _owner_key(event, "Job")
        return []

    def start(self) -> None:
        for j in self.store.select(self.rt("batch", "jobs")):
            self.enqueue((j["metadata"]["namespace"], j["metadata"]["name"]))

    def reconcile(self, key: Hashable) -> None:
        ns, name = cast(tuple[str, str], key)
        j_rt = self.rt("batch", "jobs")
        job = self.store.try_get(j_rt, ns, name)
        if job is None or job["metadata"].get("deletionTimestamp"):
            return
        spec = job["spec"]
        old = job.get("status") or {}
        conditions = [dict(c) for c in old.get("conditions") or []]
        finished = any(
            c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
            for c in conditions
        )
        pods = owned_by(self.store, self.pods_rt(), job)
        succeeded = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Succeeded")
        failed = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Failed")
        active = [p for p in pods if pod_active(p)]
        now = now_iso()
        completions = int(spec.get("completions") or 1)
        status: JSON = {k: v for k, v in old.items() if k in ("startTime", "completionTime")}
        status.setdefault("startTime", now)
        if not finished:
            deadline = spec.get("activeDeadlineSeconds")
            elapsed = time.time() - parse_iso(status["startTime"])
            if succeeded >= completions:
                conditions = set_condition(
                    conditions,
                    "SuccessCriteriaMet",
                    "True",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                    now,
                )
                conditions = set_condition(
                    conditions,
                    "Complete",
                    "True",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                    now,
                )
                status["completionTime"] = now
                finished = True
            elif failed > int(spec.get("backoffLimit", 6)):
                conditions = set_condition(
                    conditions,
                    "FailureTarget",
                    "True",
                    "BackoffLimitExceeded",
                    "Job has reached the specified backoff limit",
                    now,
                )
                conditions = set_condition(
                    conditions,
                    "Failed",
                    "True",
                    "BackoffLimitExceeded",
                    "Job has reached the specified backoff limit",
                    now,
                )
                finished = True
            elif deadline is not None and elapsed >= float(deadline):
                conditions = set_condition(
                    conditions,
                    "FailureTarget",
                    "True",
                    "DeadlineExceeded",
                    "Job was active longer than specified deadline",
                    now,
                )
                conditions = set_condition(
                    conditions,
                    "Failed",
                    "True",
                    "DeadlineExceeded",
                    "Job was active longer than specified deadline",
                    now,
                )
                finished = True
            elif spec.get("suspend"):
                for p in active:
                    self.delete_pod(p)
                active = []
                conditions = set_condition(
                    conditions, "Suspended", "True", "JobSuspended", "Job suspended", now
                )
            else:
                if deadline is not None:
                    self.enqueue_after(key, float(deadline) - elapsed + 0.05)
                want = min(int(spec.get("parallelism", 1)), completions - succeeded) - len(active)
                for _ in range(max(0, want)):
                    self.create_pod(job, spec.get("template") or {}, {})
                active = [p for p in owned_by(self.store, self.pods_rt(), job) if pod_active(p)]
        if finished:
            for p in active:
                self.delete_pod(p)
            active = []
        status.update(
            active=len(active),
            succeeded=succeeded,
            failed=failed,
            ready=sum(1 for p in active if pod_ready(p)),
            terminating=0,
        )
        status["uncountedTerminatedPods"] = {}
        for f in ("active", "succeeded", "failed"):
            if not status[f]:
                status.pop(f)
        if conditions:
            status["conditions"] = conditions
        write_status(self.store, j_rt, job, status, "kube-controller-manager")


class CronJobController(_Base):
    """Creates Jobs from CronJobs on schedule (UTC), with concurrency and history limits."""

    name = "cronjob"
    component = "cronjob-controller"

    def keys_for(self, rt: ResourceType, event: WatchEvent) -> list[Hashable]:
        if rt.key == ("batch", "cronjobs") and event.type != "DELETED":
            return _key(event)
        if rt.key == ("batch", "jobs"):
            return _owner_key(event, "CronJob")
        return []

    def start(self) -> None:
        for cj in self.store.select(self.rt("batch", "cronjobs")):
            self.enqueue((cj["metadata"]["namespace"], cj["metadata"]["name"]))

    def reconcile(self, key: Hashable) -> None:
        ns, name = cast(tuple[str, str], key)
        cj_rt, job_rt = self.rt("batch", "cronjobs"), self.rt("batch", "jobs")
        cj = self.store.try_get(cj_rt, ns, name)
        if cj is None or cj["metadata"].get("deletionTimestamp"):
            return
        spec = cj.get("spec") or {}
        status: JSON = {k: v for k, v in (cj.get("status") or {}).items() if k != "active"}
        jobs = owned_by(self.store, job_rt, cj)
        active = [j for j in jobs if not _job_finished(j)]
        now = dt.datetime.now(dt.UTC)
        since = parse_iso(status.get("lastScheduleTime") or cj["metadata"]["creationTimestamp"])
        after = max(dt.datetime.fromtimestamp(since, dt.UTC), now - dt.timedelta(days=7))
        try:
            due = cron.last_due(str(spec.get("schedule", "")), after, now)
            upcoming = cron.next_after(str(spec.get("schedule", "")), now)
        except cron.CronError as exc:
            events.record(self.store, cj, "Warning", "InvalidSchedule", str(exc), self.component)
            return
        deadline = spec.get("startingDeadlineSeconds")
        too_late = (
            due is not None and deadline is not None and (now - due).total_seconds() > deadline
        )
        if due is not None and not spec.get("suspend") and not too_late:
            policy = spec.get("concurrencyPolicy", "Allow")
            if policy == "Forbid" and active:
                due = None
            elif policy == "Replace":
                for j in active:
                    self.store.delete(job_rt, ns, j["metadata"]["name"], propagation="Background")
                active = []
        if due is not None and not spec.get("suspend") and not too_late:
            job = self._create_job(cj, due)
            if job is not None:
                active.append(job)
            status["lastScheduleTime"] = due.strftime("%Y-%m-%dT%H:%M:%SZ")
        succeeded = [j for j in jobs if _job_finished(j) == "Complete"]
        if succeeded:
            latest = max(str((j.get("status") or {}).get("completionTime", "")) for j in succeeded)
            if latest:
                status["lastSuccessfulTime"] = latest
        if active:
            status["active"] = [
                {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "name": j["metadata"]["name"],
                    "namespace": ns,
                    "uid": j["metadata"]["uid"],
                }
                for j in active
            ]
        self._prune(jobs, "Complete", int(spec.get("successfulJobsHistoryLimit", 3)))
        self._prune(jobs, "Failed", int(spec.get("failedJobsHistoryLimit", 1)))
        write_status(self.store, cj_rt, cj, status, "kube-controller-manager")
        if upcoming is not None:
            self.enqueue_after(key, (upcoming - now).total_seconds() + 0.5)

    def _create_job(self, cj: JSON, due: dt.datetime) -> JSON | None:
        template = (cj.get("spec") or {}).get("jobTemplate") or {}
        meta_t = template.get("metadata") or {}
        name = f"{cj['metadata']['name']}-{int(due.timestamp() // 60)}"
        annotations = {
            **(meta_t.get("annotations") or {}),
            "batch.kubernetes.io/cronjob-scheduled-timestamp": due.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        body = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": name,
                "labels": dict(meta_t.get("labels") or {}),
                "annotations": annotations,
                "ownerReferences": [owner_ref(cj)],
            },
            "spec": clone(template.get("spec") or {}),
        }
        try:
            job = self.store.create(
                self.rt("batch", "jobs"),
                body,
                cj["metadata"]["namespace"],
                manager="kube-controller-manager",
            )
        except ApiError as exc:
            if exc.code != 409:
                events.record(
                    self.store, cj, "Warning", "FailedCreate", exc.message, self.component
                )
            return None
        events.record(
            self.store, cj, "Normal", "SuccessfulCreate", f"Created job {name}", self.component
        )
        return job

    def _prune(self, jobs: list[JSON], outcome: str, keep: int) -> None:
        done = sorted(
            (j for j in jobs if _job_finished(j) == outcome),
            key=lambda j: j["metadata"]["creationTimestamp"],
        )
        for j in done[: max(0, len(done) - keep)]:
            try:
                self.store.delete(
                    self.rt("batch", "jobs"),
                    j["metadata"]["namespace"],
                    j["metadata"]["name"],
                    propagation="Background",
                )
            except ApiError:
                pass


def _job_finished(job: JSON) -> str | None:
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return str(c["type"])
    return None


def all_controllers(store: Store, config: SimConfig) -> list[Controller]:
    return [
        DeploymentController(store, config),
        ReplicaSetController(store, config),
        StatefulSetController(store, config),
        DaemonSetController(store, config),
        JobController(store, config),
        CronJobController(store, config),
    ]
