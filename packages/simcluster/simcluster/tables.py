"""Server-side printing: ``meta.k8s.io/v1 Table`` responses for ``kubectl get``.

kubectl asks for tables (``Accept: application/json;as=Table;...``) and prints the
columns the server chooses, so these mirror the real server's columns for the kinds
people look at; custom resources get their CRD's additionalPrinterColumns.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from simcluster.clock import parse_iso
from simcluster.resources import ResourceType
from simcluster.selectors import field_value

JSON = dict[str, Any]
Column = tuple[str, str, int, Callable[[JSON], Any]]


def age(obj: JSON) -> str:
    """Human age like kubectl's (``12s``, ``5m``, ``3h``, ``2d``)."""
    created = parse_iso((obj.get("metadata") or {}).get("creationTimestamp", ""))
    if not created:
        return "<unknown>"
    secs = max(0, int(time.time() - created))
    if secs < 120:
        return f"{secs}s"
    if secs < 3600 * 3:
        return f"{secs // 60}m"
    if secs < 86400 * 2:
        return f"{secs // 3600}h"
    return f"{secs // 86400}d"


def pod_status(pod: JSON) -> str:
    """The STATUS column: waiting/terminated reason, else phase; Terminating if deleting."""
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return "Terminating"
    status = pod.get("status") or {}
    reason = status.get("reason") or status.get("phase", "Pending")
    for cs in status.get("containerStatuses") or []:
        state = cs.get("state") or {}
        if "waiting" in state and state["waiting"].get("reason"):
            reason = state["waiting"]["reason"]
        elif "terminated" in state:
            reason = state["terminated"].get("reason") or "Completed"
    return str(reason)


def _pod_ready(pod: JSON) -> str:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    total = len((pod.get("spec") or {}).get("containers") or [])
    return f"{sum(1 for c in statuses if c.get('ready'))}/{total}"


def _restarts(pod: JSON) -> int:
    return sum(
        int(c.get("restartCount", 0))
        for c in (pod.get("status") or {}).get("containerStatuses") or []
    )


def _s(obj: JSON, path: str) -> str:
    return field_value(obj, path)


def _n(obj: JSON, path: str) -> int:
    v = field_value(obj, path)
    return int(v) if v.lstrip("-").isdigit() else 0


def _images(obj: JSON) -> str:
    spec = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    return ",".join(c.get("image", "") for c in spec.get("containers") or [])


def _containers(obj: JSON) -> str:
    spec = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    return ",".join(c.get("name", "") for c in spec.get("containers") or [])


def _ports(svc: JSON) -> str:
    ports = (svc.get("spec") or {}).get("ports") or []
    return ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in ports) or "<none>"


def _job_status(job: JSON) -> str:
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("status") == "True" and c.get("type") in ("Complete", "Failed", "Suspended"):
            return str(c["type"])
    return "Running"


def _more(items: list[str], empty: str = "<none>") -> str:
    """The first three of ``items``, as kubectl's printers abbreviate lists."""
    if not items:
        return empty
    text = ",".join(items[:3])
    return text + (f" + {len(items) - 3} more..." if len(items) > 3 else "")


def _slice_endpoints(s: JSON) -> str:
    return _more([a for e in s.get("endpoints") or [] for a in e.get("addresses") or []])


def _endpoints(ep: JSON) -> str:
    return _more(
        [
            f"{a.get('ip')}:{p.get('port')}"
            for sub in ep.get("subsets") or []
            for p in sub.get("ports") or [{}]
            for a in sub.get("addresses") or []
        ]
    )


def _hpa_targets(hpa: JSON) -> str:
    cells = []
    for m in (hpa.get("spec") or {}).get("metrics") or []:
        res = m.get("resource") or {}
        target = res.get("target") or {}
        if m.get("type") == "Resource" and target.get("type") == "Utilization":
            cells.append(f"{res.get('name')}: <unknown>/{target.get('averageUtilization')}%")
        else:
            cells.append("<unknown>/<unknown>")
    return ", ".join(cells) or "<none>"


NAME: Column = ("Name", "string", 0, lambda o: o["metadata"]["name"])
AGE: Column = ("Age", "string", 0, age)

COLUMNS: dict[tuple[str, str], list[Column]] = {
    ("", "pods"): [
        NAME,
        ("Ready", "string", 0, _pod_ready),
        ("Status", "string", 0, pod_status),
        ("Restarts", "string", 0, _restarts),
        AGE,
        ("IP", "string", 1, lambda o: _s(o, "status.podIP") or "<none>"),
        ("Node", "string", 1, lambda o: _s(o, "spec.nodeName") or "<none>"),
    ],
    ("apps", "deployments"): [
        NAME,
        (
            "Ready",
            "string",
            0,
            lambda o: f"{_n(o, 'status.readyReplicas')}/{_n(o, 'spec.replicas')}",
        ),
        ("Up-to-date", "integer", 0, lambda o: _n(o, "status.updatedReplicas")),
        ("Available", "integer", 0, lambda o: _n(o, "status.availableReplicas")),
        AGE,
        ("Containers", "string", 1, _containers),
        ("Images", "string", 1, _images),
    ],
    ("apps", "replicasets"): [
        NAME,
        ("Desired", "integer", 0, lambda o: _n(o, "spec.replicas")),
        ("Current", "integer", 0, lambda o: _n(o, "status.replicas")),
        ("Ready", "integer", 0, lambda o: _n(o, "status.readyReplicas")),
        AGE,
        ("Images", "string", 1, _images),
    ],
    ("apps", "statefulsets"): [
        NAME,
        (
            "Ready",
            "string",
            0,
            lambda o: f"{_n(o, 'status.readyReplicas')}/{_n(o, 'spec.replicas')}",
        ),
        AGE,
    ],
    ("apps", "daemonsets"): [
        NAME,
        ("Desired", "integer", 0, lambda o: _n(o, "status.desiredNumberScheduled")),
        ("Current", "integer", 0, lambda o: _n(o, "status.currentNumberScheduled")),
        ("Ready", "integer", 0, lambda o: _n(o, "status.numberReady")),
        ("Up-to-date", "integer", 0, lambda o: _n(o, "status.updatedNumberScheduled")),
        ("Available", "integer", 0, lambda o: _n(o, "status.numberAvailable")),
        AGE,
    ],
    ("batch", "jobs"): [
        NAME,
        ("Status", "string", 0, _job_status),
        (
            "Completions",
            "string",
            0,
            lambda o: f"{_n(o, 'status.succeeded')}/{_n(o, 'spec.completions')}",
        ),
        AGE,
    ],
    ("", "services"): [
        NAME,
        ("Type", "string", 0, lambda o: _s(o, "spec.type")),
        ("Cluster-IP", "string", 0, lambda o: _s(o, "spec.clusterIP")),
        ("External-IP", "string", 0, lambda o: "<none>"),
        ("Port(s)", "string", 0, _ports),
        AGE,
    ],
    ("discovery.k8s.io", "endpointslices"): [
        NAME,
        ("AddressType", "string", 0, lambda o: o.get("addressType", "")),
        (
            "Ports",
            "string",
            0,
            lambda o: ",".join(str(p.get("port")) for p in o.get("ports") or []) or "<unset>",
        ),
        ("Endpoints", "string", 0, _slice_endpoints),
        AGE,
    ],
    ("", "endpoints"): [NAME, ("Endpoints", "string", 0, _endpoints), AGE],
    ("autoscaling", "horizontalpodautoscalers"): [
        NAME,
        (
            "Reference",
            "string",
            0,
            lambda o: f"{_s(o, 'spec.scaleTargetRef.kind')}/{_s(o, 'spec.scaleTargetRef.name')}",
        ),
        ("Targets", "string", 0, _hpa_targets),
        ("MinPods", "string", 0, lambda o: str(_n(o, "spec.minReplicas") or 1)),
        ("MaxPods", "integer", 0, lambda o: _n(o, "spec.maxReplicas")),
        ("Replicas", "integer", 0, lambda o: _n(o, "status.currentReplicas")),
        AGE,
    ],
    ("", "namespaces"): [NAME, ("Status", "string", 0, lambda o: _s(o, "status.phase")), AGE],
    ("", "nodes"): [
        NAME,
        ("Status", "string", 0, lambda o: "Ready"),
        ("Roles", "string", 0, lambda o: "<none>"),
        AGE,
        ("Version", "string", 0, lambda o: _s(o, "status.nodeInfo.kubeletVersion")),
    ],
    ("", "configmaps"): [NAME, ("Data", "integer", 0, lambda o: len(o.get("data") or {})), AGE],
    ("", "secrets"): [
        NAME,
        ("Type", "string", 0, lambda o: o.get("type", "Opaque")),
        ("Data", "integer", 0, lambda o: len(o.get("data") or {})),
        AGE,
    ],
    ("", "events"): [
        ("Last Seen", "string", 0, age),
        ("Type", "string", 0, lambda o: o.get("type", "")),
        ("Reason", "string", 0, lambda o: o.get("reason", "")),
        (
            "Object",
            "string",
            0,
            lambda o: f"{_s(o, 'involvedObject.kind').lower()}/{_s(o, 'involvedObject.name')}",
        ),
        ("Message", "string", 0, lambda o: o.get("message", "")),
    ],
}


def _path_cell(path: str) -> Callable[[JSON], Any]:
    def cell(obj: JSON) -> Any:
        return _s(obj, path)

    return cell


def _crd_columns(rt: ResourceType) -> list[Column]:
    cols: list[Column] = [NAME]
    for col in rt.printer_columns:
        path = str(col.get("jsonPath", "")).lstrip(".")
        if path == "metadata.creationTimestamp":
            cols.append((col.get("name", "Age"), "string", 0, age))
            continue
        cols.append(
            (
                col.get("name", path),
                "string",
                int(col.get("priority", 0)),
                _path_cell(path),
            )
        )
    if not any(c[0] == "Age" for c in cols):
        cols.append(AGE)
    return cols


def columns_for(rt: ResourceType) -> list[Column]:
    if rt.key in COLUMNS:
        return COLUMNS[rt.key]
    if rt.printer_columns:
        return _crd_columns(rt)
    return [NAME, AGE]


def to_table(rt: ResourceType, objects: list[JSON], list_meta: JSON) -> JSON:
    """A Table of ``objects`` with the full object in each row (includeObject=Object)."""
    cols = columns_for(rt)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": [
            {
                "name": name,
                "type": typ,
                "format": "name" if name == "Name" else "",
                "description": "",
                "priority": prio,
            }
            for name, typ, prio, _ in cols
        ],
        "rows": [{"cells": [_cell(fn, o) for _, _, _, fn in cols], "object": o} for o in objects],
    }


def _cell(fn: Callable[[JSON], Any], obj: JSON) -> Any:
    try:
        return fn(obj)
    except (KeyError, TypeError, ValueError, AttributeError):
        return ""


def wants_table(accept: str) -> bool:
    """Whether the Accept header asks for a Table (kubectl get does)."""
    return "as=Table" in accept
