"""What the pod-owning workload controllers share: pod predicates, template hashing,
and ``PodController``, which creates and deletes the pods a workload owns.

ReplicaSets, StatefulSets, DaemonSets and Jobs all stamp pods out of a template and
judge them by the same readiness rules, so those rules live here once.
"""

from __future__ import annotations

import json
import time
from typing import Any

from simcluster import events
from simcluster.clock import parse_iso
from simcluster.controllers.base import CONTROLLER_MANAGER, OwnerController, owned_by, owner_ref
from simcluster.errors import ApiError
from simcluster.resources import ResourceType
from simcluster.store import clone

JSON = dict[str, Any]

REVISION_HASH = "controller-revision-hash"
_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"


def template_hash(template: JSON) -> str:
    """A pod-template-hash like the real one: FNV-1a of the template, safe-encoded."""
    h = 0x811C9DC5
    for byte in json.dumps(template, sort_keys=True, separators=(",", ":")).encode():
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return "".join(_ALPHANUMS[ord(c) % len(_ALPHANUMS)] for c in str(h))


def pod_ready(pod: JSON) -> bool:
    """Whether the pod's Ready condition is True."""
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") == "True"
    return False


def pod_active(pod: JSON) -> bool:
    """Whether the pod still counts: not being deleted and not Succeeded or Failed."""
    return not pod["metadata"].get("deletionTimestamp") and (pod.get("status") or {}).get(
        "phase"
    ) not in ("Succeeded", "Failed")


def pod_available(pod: JSON, min_ready: int) -> bool:
    """Whether the pod has been Ready for at least ``min_ready`` seconds."""
    if not pod_ready(pod):
        return False
    if min_ready <= 0:
        return True
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return time.time() - parse_iso(c.get("lastTransitionTime", "")) >= min_ready
    return False


def pod_revision(pod: JSON) -> str | None:
    """The pod's ``controller-revision-hash`` label (None when unlabelled)."""
    return (pod["metadata"].get("labels") or {}).get(REVISION_HASH)


class PodController(OwnerController):
    """An ``OwnerController`` whose owned objects are pods made from a template."""

    owns = ("", "pods")

    def pods_rt(self) -> ResourceType:
        return self.rt("", "pods")

    def active_pods(self, owner: JSON) -> list[JSON]:
        """The active pods ``owner`` controls."""
        return [p for p in owned_by(self.store, self.pods_rt(), owner) if pod_active(p)]

    def create_pod(
        self,
        owner: JSON,
        template: JSON,
        extra_labels: JSON,
        name: str | None = None,
        node: str | None = None,
    ) -> ApiError | None:
        """Create a pod for ``owner`` from ``template`` and record the outcome as an event.

        Rejections the API server gives for bad input (403, 404, 409, 422) become a
        ``FailedCreate`` warning on the owner (``Error creating: <the API's message>``, as
        the real controllers word it) and are returned rather than raised.
        """
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
                manager=CONTROLLER_MANAGER,
            )
        except ApiError as exc:
            if exc.code not in (403, 404, 409, 422):
                raise
            message = f"Error creating: {exc.message}"
            if self.kind == "StatefulSet":
                message = (
                    f"create Pod {name} in StatefulSet {owner['metadata']['name']} "
                    f"failed error: {exc.message}"
                )
            events.record(self.store, owner, "Warning", "FailedCreate", message, self.component)
            return exc
        message = f"Created pod: {pod['metadata']['name']}"
        events.record(self.store, owner, "Normal", "SuccessfulCreate", message, self.component)
        return None

    def delete_pod(self, pod: JSON) -> None:
        self.delete_quietly(self.pods_rt(), pod)
