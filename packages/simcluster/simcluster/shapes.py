"""JSON shape checks for built-in kinds: what decoding into Go structs enforces.

A real API server rejects a body whose fields have the wrong JSON type (a string where
a list of ownerReferences belongs) with 400 BadRequest before any validation runs.
Checking the same shapes up front keeps malformed input out of the store and away
from the controllers. Unknown fields are not checked.
"""

from __future__ import annotations

from typing import Any

from simcluster.errors import ApiError, bad_request

JSON = dict[str, Any]
# A shape is a scalar type name, a dict of field shapes (an object), a one-item list
# (a list of that shape), or ("map", shape) for string-keyed maps.
Shape = Any

STR, INT, BOOL, NUM, OBJ = "string", "integer", "boolean", "number", "object"
STR_MAP = ("map", STR)

OWNER_REF = {
    "apiVersion": STR,
    "kind": STR,
    "name": STR,
    "uid": STR,
    "controller": BOOL,
    "blockOwnerDeletion": BOOL,
}
META = {
    "name": STR,
    "generateName": STR,
    "namespace": STR,
    "uid": STR,
    "resourceVersion": STR,
    "generation": INT,
    "labels": STR_MAP,
    "annotations": STR_MAP,
    "ownerReferences": [OWNER_REF],
    "finalizers": [STR],
    "managedFields": [OBJ],
}
SELECTOR = {
    "matchLabels": STR_MAP,
    "matchExpressions": [{"key": STR, "operator": STR, "values": [STR]}],
}
ENV = {"name": STR, "value": STR, "valueFrom": OBJ}
CONTAINER = {
    "name": STR,
    "image": STR,
    "command": [STR],
    "args": [STR],
    "workingDir": STR,
    "ports": [{"name": STR, "containerPort": INT, "protocol": STR, "hostPort": INT}],
    "env": [ENV],
    "envFrom": [OBJ],
    "volumeMounts": [{"name": STR, "mountPath": STR}],
    "resources": OBJ,
    "imagePullPolicy": STR,
}
POD_SPEC = {
    "containers": [CONTAINER],
    "initContainers": [CONTAINER],
    "volumes": [{"name": STR}],
    "imagePullSecrets": [{"name": STR}],
    "restartPolicy": STR,
    "nodeName": STR,
    "serviceAccountName": STR,
    "nodeSelector": STR_MAP,
    "tolerations": [OBJ],
    "terminationGracePeriodSeconds": INT,
    "activeDeadlineSeconds": INT,
}
TEMPLATE = {"metadata": META, "spec": POD_SPEC}
WORKLOAD = {
    "replicas": INT,
    "selector": SELECTOR,
    "template": TEMPLATE,
    "strategy": {"type": STR, "rollingUpdate": OBJ},
    "updateStrategy": {"type": STR, "rollingUpdate": OBJ},
    "minReadySeconds": INT,
    "revisionHistoryLimit": INT,
    "progressDeadlineSeconds": INT,
    "paused": BOOL,
    "serviceName": STR,
    "podManagementPolicy": STR,
}
JOB_SPEC = {
    "template": TEMPLATE,
    "selector": SELECTOR,
    "parallelism": INT,
    "completions": INT,
    "backoffLimit": INT,
    "activeDeadlineSeconds": INT,
    "suspend": BOOL,
    "ttlSecondsAfterFinished": INT,
}

KINDS: dict[tuple[str, str], JSON] = {
    ("", "Pod"): {"spec": POD_SPEC},
    ("", "ConfigMap"): {"data": STR_MAP, "binaryData": STR_MAP, "immutable": BOOL},
    ("", "Secret"): {"data": STR_MAP, "stringData": STR_MAP, "type": STR, "immutable": BOOL},
    ("", "Namespace"): {"spec": {"finalizers": [STR]}},
    ("", "Service"): {
        "spec": {
            "type": STR,
            "selector": STR_MAP,
            "clusterIP": STR,
            "ports": [{"name": STR, "port": INT, "protocol": STR, "nodePort": INT}],
        }
    },
    ("", "ServiceAccount"): {"imagePullSecrets": [{"name": STR}], "secrets": [OBJ]},
    ("apps", "Deployment"): {"spec": WORKLOAD},
    ("apps", "ReplicaSet"): {"spec": WORKLOAD},
    ("apps", "StatefulSet"): {"spec": WORKLOAD},
    ("apps", "DaemonSet"): {"spec": WORKLOAD},
    ("batch", "Job"): {"spec": JOB_SPEC},
    ("batch", "CronJob"): {
        "spec": {
            "schedule": STR,
            "suspend": BOOL,
            "concurrencyPolicy": STR,
            "startingDeadlineSeconds": INT,
            "successfulJobsHistoryLimit": INT,
            "failedJobsHistoryLimit": INT,
            "jobTemplate": {"metadata": META, "spec": JOB_SPEC},
        }
    },
    ("apiextensions.k8s.io", "CustomResourceDefinition"): {
        "spec": {
            "group": STR,
            "scope": STR,
            "names": {
                "plural": STR,
                "singular": STR,
                "kind": STR,
                "listKind": STR,
                "shortNames": [STR],
                "categories": [STR],
            },
            "versions": [
                {
                    "name": STR,
                    "served": BOOL,
                    "storage": BOOL,
                    "schema": OBJ,
                    "subresources": OBJ,
                    "additionalPrinterColumns": [OBJ],
                }
            ],
        }
    },
}

DELETE_OPTIONS = {
    "propagationPolicy": STR,
    "gracePeriodSeconds": INT,
    "orphanDependents": BOOL,
    "preconditions": {"uid": STR, "resourceVersion": STR},
    "dryRun": [STR],
}

_TYPES: dict[str, tuple[type, ...]] = {
    STR: (str,),
    INT: (int,),
    BOOL: (bool,),
    NUM: (int, float),
    OBJ: (dict,),
}


def _go_type(shape: Shape) -> str:
    if isinstance(shape, str):
        return {STR: "string", INT: "int64", BOOL: "bool", NUM: "float64", OBJ: "object"}[shape]
    if isinstance(shape, list):
        return f"[]{_go_type(shape[0])}"
    if isinstance(shape, tuple):
        return f"map[string]{_go_type(shape[1])}"
    return "struct"


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def mismatch(value: Any, shape: Shape, path: str) -> tuple[str, str, str] | None:
    """The first ``(path, got, expected)`` where ``value`` does not fit ``shape``."""
    if value is None:
        return None
    if isinstance(shape, str):
        ok = isinstance(value, _TYPES[shape]) and not (
            shape in (INT, NUM) and isinstance(value, bool)
        )
        return None if ok else (path, _json_type(value), _go_type(shape))
    if isinstance(shape, list):
        if not isinstance(value, list):
            return (path, _json_type(value), _go_type(shape))
        for i, item in enumerate(value):
            found = mismatch(item, shape[0], f"{path}[{i}]")
            if found:
                return found
        return None
    if isinstance(shape, tuple):
        if not isinstance(value, dict):
            return (path, _json_type(value), _go_type(shape))
        for key, item in value.items():
            found = mismatch(item, shape[1], f"{path}.{key}")
            if found:
                return found
        return None
    if not isinstance(value, dict):
        return (path, _json_type(value), _go_type(shape))
    for key, sub in shape.items():
        found = mismatch(value.get(key), sub, f"{path}.{key}" if path else key)
        if found:
            return found
    return None


def _error(kind: str, found: tuple[str, str, str]) -> ApiError:
    path, got, expected = found
    return bad_request(
        f"json: cannot unmarshal {got} into Go struct field {kind}.{path} of type {expected}"
    )


def check_object(group: str, kind: str, obj: JSON) -> None:
    """Raise 400 BadRequest when ``obj`` has a wrongly typed known field."""
    found = mismatch(obj.get("metadata"), META, "metadata")
    if found is None and (group, kind) in KINDS:
        found = mismatch(obj, KINDS[(group, kind)], "")
    if found is not None:
        raise _error(kind, found)


def check_delete_options(opts: JSON) -> None:
    found = mismatch(opts, DELETE_OPTIONS, "")
    if found is not None:
        raise _error("DeleteOptions", found)
