"""The HorizontalPodAutoscaler controller, as it behaves on a cluster without metrics-server.

The simulator serves no ``metrics.k8s.io`` (nor custom/external metrics) API, so, like
kube-controller-manager on such a cluster, the controller only:

- reads the target's scale (Deployment, StatefulSet, ReplicaSet, or any kind with a
  ``scale`` subresource); if it is missing: ``AbleToScale=False`` / ``FailedGetScale``;
- clamps ``spec.replicas`` into ``[minReplicas, maxReplicas]`` (``SuccessfulRescale``
  event, ``lastScaleTime``, ``desiredReplicas``);
- leaves a target scaled to 0 alone (``ScalingActive=False`` / ``ScalingDisabled``);
- otherwise reports ``AbleToScale=True`` / ``SucceededGetScale`` and
  ``ScalingActive=False`` with ``FailedGet<Type>Metric`` and the message the real
  controller gives when the metrics API is absent, and keeps the replica count.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, cast

from simcluster import events
from simcluster.clock import now_iso
from simcluster.controllers.base import (
    CONTROLLER_MANAGER,
    Controller,
    object_key,
    set_condition,
    write_status,
)
from simcluster.errors import ApiError
from simcluster.resources import ResourceType
from simcluster.store import WatchEvent, clone

JSON = dict[str, Any]

HPA = ("autoscaling", "horizontalpodautoscalers")
COMPONENT = "horizontal-pod-autoscaler"
NO_RESOURCE_METRICS = (
    "unable to fetch metrics from resource metrics API: the server could not find the "
    "requested resource (get pods.metrics.k8s.io)"
)
NO_CUSTOM_METRICS = (
    "unable to fetch metrics from custom metrics API: no custom metrics API "
    "(custom.metrics.k8s.io) registered"
)
NO_EXTERNAL_METRICS = (
    "unable to fetch metrics from external metrics API: no external metrics API "
    "(external.metrics.k8s.io) registered"
)
DEFAULT_METRICS = [
    {
        "type": "Resource",
        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}},
    }
]


def metric_failure(metric: JSON) -> tuple[str, str]:
    """(reason, error) the real controller reports for ``metric`` with no metrics API."""
    mtype = metric.get("type", "")
    if mtype in ("Resource", "ContainerResource"):
        src = metric.get("resource" if mtype == "Resource" else "containerResource") or {}
        name = src.get("name", "cpu")
        target = src.get("target") or {}
        what = "utilization" if target.get("type", "Utilization") == "Utilization" else "usage"
        reason = (
            "FailedGetResourceMetric"
            if mtype == "Resource"
            else ("FailedGetContainerResourceMetric")
        )
        return reason, (
            f"failed to get {name} resource metric value: failed to get {name} {what}: "
            f"unable to get metrics for resource {name}: {NO_RESOURCE_METRICS}"
        )
    if mtype == "External":
        name = ((metric.get("external") or {}).get("metric") or {}).get("name", "")
        return "FailedGetExternalMetric", f"unable to get external metric {name}: " + (
            NO_EXTERNAL_METRICS
        )
    kind = "pods" if mtype == "Pods" else "object"
    name = ((metric.get(kind) or {}).get("metric") or {}).get("name", "")
    reason = "FailedGetPodsMetric" if mtype == "Pods" else "FailedGetObjectMetric"
    return reason, f"unable to get metric {name}: {NO_CUSTOM_METRICS}"


class HorizontalPodAutoscalerController(Controller):
    """Reconciles HPAs against their scale targets (no metrics: bounds only)."""

    name = "horizontal-pod-autoscaler"

    def keys_for(self, rt: ResourceType, event: WatchEvent) -> list[Hashable]:
        if rt.key == HPA:
            return object_key(event) if event.type != "DELETED" else []
        if "scale" not in rt.subresources:
            return []
        meta = event.obj["metadata"]
        ns = meta.get("namespace", "")
        hpa_rt = self.store.registry.by_key(*HPA)
        if hpa_rt is None:
            return []
        keys: list[Hashable] = []
        for hpa in self.store.select(hpa_rt, ns):
            ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
            if ref.get("name") == meta["name"] and ref.get("kind") == rt.kind:
                keys.append((ns, hpa["metadata"]["name"]))
        return keys

    def start(self) -> None:
        for hpa in self.store.select(self.rt(*HPA)):
            self.enqueue((hpa["metadata"]["namespace"], hpa["metadata"]["name"]))

    def reconcile(self, key: Hashable) -> None:
        ns, name = cast(tuple[str, str], key)
        hpa_rt = self.rt(*HPA)
        hpa = self.store.try_get(hpa_rt, ns, name)
        if hpa is None or hpa["metadata"].get("deletionTimestamp"):
            return
        spec = hpa.get("spec") or {}
        status = clone(hpa.get("status") or {})
        conditions: list[JSON] = status.get("conditions") or []
        now = now_iso()
        status.setdefault("currentReplicas", 0)
        status.setdefault("desiredReplicas", 0)
        ref = spec.get("scaleTargetRef") or {}
        target_rt = self.store.registry.by_kind(ref.get("apiVersion", ""), ref.get("kind", ""))
        target = None
        if target_rt is not None and "scale" in target_rt.subresources:
            target = self.store.try_get(target_rt, ns, ref.get("name", ""))
        if target is None:
            if target_rt is None or "scale" not in target_rt.subresources:
                group = ref.get("apiVersion", "").rpartition("/")[0]
                why = f'no matches for kind "{ref.get("kind", "")}" in group "{group}"'
            else:
                group = f".{target_rt.group}" if target_rt.group else ""
                why = f'{target_rt.plural}{group} "{ref.get("name", "")}" not found'
            message = f"the HPA controller was unable to get the target's current scale: {why}"
            conditions = set_condition(
                conditions, "AbleToScale", "False", "FailedGetScale", message, now, False
            )
            self._event(hpa, "Warning", "FailedGetScale", why)
            self._write(hpa_rt, hpa, status, conditions)
            return
        current = int((target.get("spec") or {}).get("replicas", 1))
        low = int(spec.get("minReplicas") or 1)
        high = int(spec.get("maxReplicas") or 0)
        conditions = set_condition(
            conditions,
            "AbleToScale",
            "True",
            "SucceededGetScale",
            "the HPA controller was able to get the target's current scale",
            now,
            False,
        )
        status["currentReplicas"] = int((target.get("status") or {}).get("replicas", current))
        desired: int | None = None
        if current == 0 and low != 0:
            conditions = set_condition(
                conditions,
                "ScalingActive",
                "False",
                "ScalingDisabled",
                "scaling is disabled since the replica count of the target is zero",
                now,
                False,
            )
            status["desiredReplicas"] = 0
        elif current > high:
            desired, why = high, "Current number of replicas above Spec.MaxReplicas"
        elif current < low:
            desired, why = low, "Current number of replicas below Spec.MinReplicas"
        else:
            metrics = spec.get("metrics") or DEFAULT_METRICS
            reason, error = metric_failure(metrics[0])
            conditions = set_condition(
                conditions,
                "ScalingActive",
                "False",
                reason,
                f"the HPA was unable to compute the replica count: {error}",
                now,
                False,
            )
            self._event(hpa, "Warning", reason, error.partition(": ")[2] or error)
            self._event(
                hpa,
                "Warning",
                "FailedComputeMetricsReplicas",
                f"invalid metrics ({len(metrics)} invalid out of {len(metrics)}), "
                f"first error is: {error}",
            )
        if desired is not None and target_rt is not None:
            new = clone(target)
            new["spec"]["replicas"] = desired
            try:
                self.store.update(target_rt, new, ns, manager=CONTROLLER_MANAGER)
            except ApiError as exc:
                conditions = set_condition(
                    conditions,
                    "AbleToScale",
                    "False",
                    "FailedUpdateScale",
                    f"the HPA controller was unable to update the target scale: {exc}",
                    now,
                    False,
                )
                self._write(hpa_rt, hpa, status, conditions)
                return
            conditions = set_condition(
                conditions,
                "AbleToScale",
                "True",
                "SucceededRescale",
                f"the HPA controller was able to update the target scale to {desired}",
                now,
                False,
            )
            self._event(hpa, "Normal", "SuccessfulRescale", f"New size: {desired}; reason: {why}")
            status["desiredReplicas"] = desired
            status["lastScaleTime"] = now
        self._write(hpa_rt, hpa, status, conditions)

    def _write(self, rt: ResourceType, hpa: JSON, status: JSON, conditions: list[JSON]) -> None:
        for c in conditions:
            c.pop("lastUpdateTime", None)
        status["conditions"] = conditions
        if hpa["metadata"].get("generation") is not None:
            status["observedGeneration"] = hpa["metadata"]["generation"]
        try:
            write_status(self.store, rt, hpa, status, CONTROLLER_MANAGER)
        except ApiError:
            pass

    def _event(self, hpa: JSON, etype: str, reason: str, message: str) -> None:
        events.record(self.store, hpa, etype, reason, message, COMPONENT)
