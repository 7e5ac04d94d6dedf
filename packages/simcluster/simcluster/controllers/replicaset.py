"""The ReplicaSet controller: keeps a ReplicaSet's pod count at ``spec.replicas``.

It is the layer Deployments roll out through, so its status (ready and available
counts, honouring ``minReadySeconds``) is what the Deployment controller reads.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from simcluster.clock import now_iso
from simcluster.controllers.base import CONTROLLER_MANAGER, owned_by, write_status
from simcluster.controllers.pods import PodController, pod_active, pod_available, pod_ready
from simcluster.selectors import selector_to_string

JSON = dict[str, Any]


class ReplicaSetController(PodController):
    """Keeps ``spec.replicas`` pods per ReplicaSet and reports their readiness.

    Missing pods are created (at most 500 per pass); surplus pods are deleted
    least useful first: not ready before ready, not running before running, and then
    in order of creation.
    """

    name = "replicaset"
    component = "replicaset-controller"
    resource = ("apps", "replicasets")
    kind = "ReplicaSet"

    def reconcile(self, key: Hashable) -> None:
        rs = self.live(key)
        if rs is None:
            return
        pods = owned_by(self.store, self.pods_rt(), rs)
        active = [p for p in pods if pod_active(p)]
        desired = int(rs["spec"].get("replicas", 1))
        template = rs["spec"].get("template") or {}
        failure = None
        if len(active) < desired:
            for _ in range(min(desired - len(active), 500)):
                failure = self.create_pod(rs, template, {})
                if failure is not None:
                    self.enqueue_after(key, max(1.0, self.config.schedule_retry))
                    break
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
        pods = self.active_pods(rs)
        min_ready = int(rs["spec"].get("minReadySeconds", 0))
        ready = sum(1 for p in pods if pod_ready(p))
        available = sum(1 for p in pods if pod_available(p, min_ready))
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
        conditions = (rs.get("status") or {}).get("conditions") or []
        if failure is not None:
            # ReplicaFailure, as the real controller reports it (Deployments copy it).
            prev = next((c for c in conditions if c.get("type") == "ReplicaFailure"), None)
            status["conditions"] = [
                {
                    "type": "ReplicaFailure",
                    "status": "True",
                    "lastTransitionTime": (prev or {}).get("lastTransitionTime") or now_iso(),
                    "reason": "FailedCreate",
                    "message": failure.message,
                }
            ]
        elif len(active) >= desired:
            conditions = [c for c in conditions if c.get("type") != "ReplicaFailure"]
            if conditions:
                status["conditions"] = conditions
        elif conditions:
            status["conditions"] = conditions
        write_status(self.store, self.primary_rt(), rs, status, CONTROLLER_MANAGER)
