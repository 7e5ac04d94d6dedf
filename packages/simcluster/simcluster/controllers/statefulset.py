"""The StatefulSet controller: stable, ordinal pods ``<name>-0 .. <name>-(N-1)``.

Pods carry the template's revision in ``controller-revision-hash``; with the default
OrderedReady policy they are created one at a time in order, each waiting for the one
before to be Ready, and on a template change replaced highest ordinal first.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from simcluster.controllers.base import CONTROLLER_MANAGER, owned_by, write_status
from simcluster.controllers.pods import (
    REVISION_HASH,
    PodController,
    pod_active,
    pod_ready,
    pod_revision,
    template_hash,
)

JSON = dict[str, Any]


def _ordinal(pod_name: str, sts_name: str) -> int:
    """The ordinal in ``<sts_name>-<n>`` (-1 when the pod name has no ordinal)."""
    suffix = pod_name[len(sts_name) + 1 :]
    return int(suffix) if suffix.isdigit() else -1


class StatefulSetController(PodController):
    """Ordinal pods ``<name>-0..N-1``, created in order and replaced highest-first on update."""

    name = "statefulset"
    component = "statefulset-controller"
    resource = ("apps", "statefulsets")
    kind = "StatefulSet"

    def reconcile(self, key: Hashable) -> None:
        sts = self.live(key)
        if sts is None:
            return
        name = sts["metadata"]["name"]
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
                    (p for p in pods.values() if pod_revision(p) != revision),
                    key=lambda p: -_ordinal(p["metadata"]["name"], name),
                )
                if stale:
                    self.delete_pod(stale[0])
        pods_now = self.active_pods(sts)
        updated = sum(1 for p in pods_now if pod_revision(p) == revision)
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
            "currentReplicas": sum(1 for p in pods_now if pod_revision(p) == current_rev),
            "updatedReplicas": updated,
            "currentRevision": current_rev,
            "updateRevision": revision,
            "collisionCount": 0,
        }
        write_status(self.store, self.primary_rt(), sts, status, CONTROLLER_MANAGER)
