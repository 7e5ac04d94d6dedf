"""The Deployment controller: rolls Deployments out through ReplicaSets.

Each distinct pod template gets its own ReplicaSet, named and labelled with the
template's ``pod-template-hash``; the controller scales the new one up and the old ones
down (RollingUpdate within maxSurge/maxUnavailable, or Recreate), keeps the revision
annotations ``kubectl rollout`` reads, prunes history past ``revisionHistoryLimit`` and
reports the Available and Progressing conditions (including the progress deadline).
"""

from __future__ import annotations

import math
import time
from collections.abc import Hashable
from typing import Any

from simcluster import events
from simcluster.clock import now_iso, parse_iso
from simcluster.controllers.base import (
    CONTROLLER_MANAGER,
    OwnerController,
    owned_by,
    owner_ref,
    set_condition,
    write_status,
)
from simcluster.controllers.pods import pod_active, template_hash
from simcluster.store import clone

JSON = dict[str, Any]

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
CHANGE_CAUSE = "kubernetes.io/change-cause"


def _resolve(value: Any, total: int, round_up: bool) -> int:
    """An int-or-percent (maxSurge/maxUnavailable) as a count of ``total``."""
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


def _revision(rs: JSON) -> int:
    """A ReplicaSet's revision annotation (0 when missing or malformed)."""
    try:
        return int((rs["metadata"].get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def _same_template(rs: JSON, template: JSON) -> bool:
    """Whether ``rs`` runs ``template`` (ignoring the pod-template-hash label)."""
    t = clone((rs.get("spec") or {}).get("template") or {})
    labels = (t.get("metadata") or {}).get("labels") or {}
    labels.pop(HASH_LABEL, None)
    want = clone(template)
    want.setdefault("metadata", {}).setdefault("labels", {})
    t.setdefault("metadata", {}).setdefault("labels", labels)
    return bool(t == want)


class DeploymentController(OwnerController):
    """Rolls Deployments out through ReplicaSets (RollingUpdate and Recreate)."""

    name = "deployment"
    component = "deployment-controller"
    resource = ("apps", "deployments")
    kind = "Deployment"
    owns = ("apps", "replicasets")
    _deployment: JSON | None = None

    def reconcile(self, key: Hashable) -> None:
        d_rt, rs_rt = self.primary_rt(), self.rt("apps", "replicasets")
        d = self._deployment = self.live(key)
        if d is None:
            return
        ns = d["metadata"]["namespace"]
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
            d = self.store.update(d_rt, nd, ns, manager=CONTROLLER_MANAGER)
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
            rs_rt, body, d["metadata"]["namespace"], manager=CONTROLLER_MANAGER
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
            manager=CONTROLLER_MANAGER,
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
                self.component,
            )
        new = clone(rs)
        new["spec"]["replicas"] = replicas
        if d_replicas is not None:
            new["metadata"].setdefault("annotations", {})[DESIRED] = str(d_replicas)
        self.store.update(
            self.rt("apps", "replicasets"),
            new,
            rs["metadata"]["namespace"],
            manager=CONTROLLER_MANAGER,
        )
        return True

    def _recreate(self, new_rs: JSON, olds: list[JSON], replicas: int) -> bool:
        changed = False
        for rs in olds:
            changed |= self._scale(rs, 0)
        if any(int((rs.get("status") or {}).get("replicas", 0)) > 0 for rs in olds):
            return changed
        pods_left = any(
            pod_active(p) for rs in olds for p in owned_by(self.store, self.rt("", "pods"), rs)
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
            self.delete_quietly(self.rt("apps", "replicasets"), rs)

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
        failure = next(
            (
                c
                for rs in rss
                for c in (rs.get("status") or {}).get("conditions") or []
                if c.get("type") == "ReplicaFailure" and c.get("status") == "True"
            ),
            None,
        )
        if failure is not None:  # copied from the ReplicaSet, as the real controller does
            conditions = set_condition(
                conditions, "ReplicaFailure", "True", failure["reason"], failure["message"], now
            )
        else:
            conditions = [c for c in conditions if c.get("type") != "ReplicaFailure"]
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
        write_status(self.store, self.primary_rt(), d, status, CONTROLLER_MANAGER)
