"""autoscaling/v1 <-> v2 HorizontalPodAutoscaler conversion (storage is v2).

What kube-apiserver's conversion does for the common case: v1's
``spec.targetCPUUtilizationPercentage`` is v2's ``Resource`` cpu ``Utilization`` metric;
v1's ``status.currentCPUUtilizationPercentage`` is the matching current metric; v2's
conditions travel in v1 as the ``autoscaling.alpha.kubernetes.io/conditions`` annotation
(a JSON list). Other v2 metrics and ``behavior`` are not carried in the v1 view (the real
server keeps them in further alpha annotations).
"""

from __future__ import annotations

import json
from typing import Any

JSON = dict[str, Any]

KEY = ("autoscaling", "horizontalpodautoscalers")
CONDITIONS = "autoscaling.alpha.kubernetes.io/conditions"


def _is_cpu_utilization(metric: JSON) -> bool:
    res = metric.get("resource") or {}
    target = res.get("target") or {}
    return (
        metric.get("type") == "Resource"
        and res.get("name") == "cpu"
        and target.get("type") == "Utilization"
    )


def to_storage(obj: JSON) -> None:
    """Turn a v1 body's fields into v2 ones, in place (a v2 body is left as it is)."""
    obj["apiVersion"] = "autoscaling/v2"
    spec = obj.get("spec")
    if isinstance(spec, dict) and "targetCPUUtilizationPercentage" in spec:
        value = spec.pop("targetCPUUtilizationPercentage")
        metrics = [m for m in spec.get("metrics") or [] if not _is_cpu_utilization(m)]
        if value is not None:
            metric = {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": value}}
            metrics.insert(0, {"type": "Resource", "resource": metric})
        spec["metrics"] = metrics
    status = obj.get("status")
    if isinstance(status, dict):
        status.pop("currentCPUUtilizationPercentage", None)
    annotations = (obj.get("metadata") or {}).get("annotations")
    if isinstance(annotations, dict) and CONDITIONS in annotations:
        annotations.pop(CONDITIONS)
        if not annotations:
            obj["metadata"].pop("annotations")


def to_v1(obj: JSON) -> JSON:
    """The stored (v2) object as autoscaling/v1 serves it."""
    out = {**obj, "apiVersion": "autoscaling/v1"}
    spec = dict(obj.get("spec") or {})
    metrics = spec.pop("metrics", None) or []
    spec.pop("behavior", None)
    cpu = next((m for m in metrics if _is_cpu_utilization(m)), None)
    if cpu is not None:
        spec["targetCPUUtilizationPercentage"] = cpu["resource"]["target"]["averageUtilization"]
    out["spec"] = spec
    status = dict(obj.get("status") or {})
    current = status.pop("currentMetrics", None) or []
    conditions = status.pop("conditions", None)
    for m in current:
        res = m.get("resource") or {}
        if m.get("type") == "Resource" and res.get("name") == "cpu":
            util = (res.get("current") or {}).get("averageUtilization")
            if util is not None:
                status["currentCPUUtilizationPercentage"] = util
    out["status"] = status
    if conditions:
        meta = dict(obj.get("metadata") or {})
        meta["annotations"] = {
            **(meta.get("annotations") or {}),
            CONDITIONS: json.dumps(conditions, separators=(",", ":")),
        }
        out["metadata"] = meta
    return out
