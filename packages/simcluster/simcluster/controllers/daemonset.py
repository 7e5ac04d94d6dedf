"""The DaemonSet controller: one pod per simulated node.

Pods are pinned to their node via ``spec.nodeName``; a template change replaces them
one node at a time, and only while every up-to-date pod is Ready.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from simcluster.controllers.base import CONTROLLER_MANAGER, write_status
from simcluster.controllers.pods import (
    REVISION_HASH,
    PodController,
    pod_ready,
    pod_revision,
    template_hash,
)

JSON = dict[str, Any]


class DaemonSetController(PodController):
    """One pod per simulated node; template changes replace pods one node at a time."""

    name = "daemonset"
    component = "daemonset-controller"
    resource = ("apps", "daemonsets")
    kind = "DaemonSet"

    def reconcile(self, key: Hashable) -> None:
        ds = self.live(key)
        if ds is None:
            return
        template = ds["spec"].get("template") or {}
        revision = template_hash(template)
        nodes = [n["metadata"]["name"] for n in self.store.select(self.rt("", "nodes"))]
        pods = self.active_pods(ds)
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
        stale = [p for p in pods if pod_revision(p) != revision]
        if stale and all(pod_ready(p) for p in pods if p not in stale):
            self.delete_pod(stale[0])
        pods = self.active_pods(ds)
        ready = sum(1 for p in pods if pod_ready(p))
        updated = sum(1 for p in pods if pod_revision(p) == revision)
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
        write_status(self.store, self.primary_rt(), ds, status, CONTROLLER_MANAGER)
