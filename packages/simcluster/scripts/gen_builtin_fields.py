"""Regenerate simcluster/validation/builtin_fields.json from the official Python client.

The simulator does not depend on the ``kubernetes`` package; this script is run by hand
(``.venv/bin/python packages/simcluster/scripts/gen_builtin_fields.py``) when the set of
served kinds changes. It records, per model type, its JSON field names and which fields
are nested objects, lists of objects or maps of objects: all that strict decoding
(unknown fields) needs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import kubernetes.client as k

# (group, version, kind) -> model class, for the built-in kinds the simulator serves.
KINDS = {
    ("", "v1", "Namespace"): "V1Namespace",
    ("", "v1", "Node"): "V1Node",
    ("", "v1", "Pod"): "V1Pod",
    ("", "v1", "Service"): "V1Service",
    ("", "v1", "Endpoints"): "V1Endpoints",
    ("", "v1", "ConfigMap"): "V1ConfigMap",
    ("", "v1", "Secret"): "V1Secret",
    ("", "v1", "ServiceAccount"): "V1ServiceAccount",
    ("", "v1", "Event"): "CoreV1Event",
    ("", "v1", "PersistentVolumeClaim"): "V1PersistentVolumeClaim",
    ("", "v1", "PersistentVolume"): "V1PersistentVolume",
    ("", "v1", "ResourceQuota"): "V1ResourceQuota",
    ("", "v1", "LimitRange"): "V1LimitRange",
    ("apps", "v1", "Deployment"): "V1Deployment",
    ("apps", "v1", "ReplicaSet"): "V1ReplicaSet",
    ("apps", "v1", "StatefulSet"): "V1StatefulSet",
    ("apps", "v1", "DaemonSet"): "V1DaemonSet",
    ("apps", "v1", "ControllerRevision"): "V1ControllerRevision",
    ("batch", "v1", "Job"): "V1Job",
    ("batch", "v1", "CronJob"): "V1CronJob",
    ("autoscaling", "v2", "HorizontalPodAutoscaler"): "V2HorizontalPodAutoscaler",
    ("autoscaling", "v1", "HorizontalPodAutoscaler"): "V1HorizontalPodAutoscaler",
    ("policy", "v1", "PodDisruptionBudget"): "V1PodDisruptionBudget",
    ("rbac.authorization.k8s.io", "v1", "Role"): "V1Role",
    ("rbac.authorization.k8s.io", "v1", "RoleBinding"): "V1RoleBinding",
    ("rbac.authorization.k8s.io", "v1", "ClusterRole"): "V1ClusterRole",
    ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding"): "V1ClusterRoleBinding",
    ("networking.k8s.io", "v1", "Ingress"): "V1Ingress",
    ("networking.k8s.io", "v1", "IngressClass"): "V1IngressClass",
    ("networking.k8s.io", "v1", "NetworkPolicy"): "V1NetworkPolicy",
    ("coordination.k8s.io", "v1", "Lease"): "V1Lease",
    ("storage.k8s.io", "v1", "StorageClass"): "V1StorageClass",
    ("discovery.k8s.io", "v1", "EndpointSlice"): "V1EndpointSlice",
    ("apiextensions.k8s.io", "v1", "CustomResourceDefinition"): "V1CustomResourceDefinition",
}

_MODEL = re.compile(r"^[A-Z]\w*$")


def ref(openapi_type: str) -> str:
    """'' (scalar or free-form), 'T' (object), '[T' (list of T), '{T' (map of T)."""
    m = re.fullmatch(r"[Ll]ist\[(\w+)\]", openapi_type)
    if m and _MODEL.match(m.group(1)):
        return "[" + m.group(1)
    m = re.fullmatch(r"(?:dict\(str, (\w+)\)|Dict\[str, (\w+)\])", openapi_type)
    value = m and (m.group(1) or m.group(2))
    if value and _MODEL.match(value):
        return "{" + value
    return openapi_type if _MODEL.match(openapi_type) else ""


def main() -> None:
    types: dict[str, dict[str, str]] = {}
    todo = list(KINDS.values())
    while todo:
        name = todo.pop()
        if name in types:
            continue
        cls: Any = getattr(k, name)
        fields: dict[str, str] = {}
        for attr, json_name in cls.attribute_map.items():
            r = ref(cls.openapi_types[attr])
            fields[json_name] = r
            if r:
                todo.append(r.lstrip("[{"))
        types[name] = fields
    kinds = {"/".join(key): cls for key, cls in KINDS.items()}
    out = Path(__file__).parents[1] / "simcluster" / "validation" / "builtin_fields.json"
    out.write_text(
        json.dumps({"kinds": kinds, "types": types}, sort_keys=True, separators=(",", ":")) + "\n"
    )
    print(f"{out}: {len(types)} types, {out.stat().st_size} bytes")


if __name__ == "__main__":
    main()
