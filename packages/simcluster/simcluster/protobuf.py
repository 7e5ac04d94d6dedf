"""Decoding Kubernetes protobuf request bodies for the kinds kubectl's generators send.

kubectl's ``create configmap|secret|namespace|serviceaccount|deployment|job|cronjob|
service`` generators send ``application/vnd.kubernetes.protobuf``. This decodes those
kinds (the ``k8s\\0`` envelope, ``runtime.Unknown``, ObjectMeta and the kinds' own
fields, numbered as in k8s.io/api's ``generated.proto``) into the JSON the rest of the
simulator works with. Other kinds are refused (415), as documented.

The workload kinds are decoded from :data:`MESSAGES`, a table of the messages' field
numbers; a field the table does not know is refused rather than silently dropped.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

JSON = dict[str, Any]
MAGIC = b"k8s\x00"


class ProtobufError(ValueError):
    """The body is not protobuf the simulator can decode."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ProtobufError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def fields(data: bytes) -> Iterator[tuple[int, int, Any]]:
    """Yield ``(field number, wire type, value)``; length-delimited values as bytes."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        value: Any
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            size, pos = _varint(data, pos)
            value = data[pos : pos + size]
            pos += size
        elif wire == 1:
            value, pos = data[pos : pos + 8], pos + 8
        elif wire == 5:
            value, pos = data[pos : pos + 4], pos + 4
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
        yield number, wire, value


def _map_entry(data: bytes, binary: bool) -> tuple[str, Any]:
    key, value = "", b""
    for number, _, raw in fields(data):
        if number == 1:
            key = raw.decode()
        elif number == 2:
            value = raw
    return key, base64.b64encode(value).decode() if binary else value.decode()


def _owner_reference(data: bytes) -> JSON:
    names = {5: "apiVersion", 1: "kind", 3: "name", 4: "uid"}
    out: JSON = {}
    for number, _, raw in fields(data):
        if number in names:
            out[names[number]] = raw.decode()
        elif number == 6:
            out["controller"] = bool(raw)
        elif number == 7:
            out["blockOwnerDeletion"] = bool(raw)
    return out


def object_meta(data: bytes) -> JSON:
    """ObjectMeta fields a client may set on create."""
    strings = {1: "name", 2: "generateName", 3: "namespace", 5: "uid", 6: "resourceVersion"}
    meta: JSON = {}
    for number, _, raw in fields(data):
        if number in strings:
            if raw:
                meta[strings[number]] = raw.decode()
        elif number in (11, 12):
            k, v = _map_entry(raw, binary=False)
            meta.setdefault("labels" if number == 11 else "annotations", {})[k] = v
        elif number == 13:
            meta.setdefault("ownerReferences", []).append(_owner_reference(raw))
        elif number == 14:
            meta.setdefault("finalizers", []).append(raw.decode())
    return meta


def _configmap(data: bytes) -> JSON:
    out: JSON = {}
    for number, _, raw in fields(data):
        if number == 1:
            out["metadata"] = object_meta(raw)
        elif number in (2, 3):
            k, v = _map_entry(raw, binary=number == 3)
            out.setdefault("data" if number == 2 else "binaryData", {})[k] = v
        elif number == 4:
            out["immutable"] = bool(raw)
    return out


def _secret(data: bytes) -> JSON:
    out: JSON = {}
    for number, _, raw in fields(data):
        if number == 1:
            out["metadata"] = object_meta(raw)
        elif number == 2:
            k, v = _map_entry(raw, binary=True)
            out.setdefault("data", {})[k] = v
        elif number == 3:
            out["type"] = raw.decode()
        elif number == 4:
            k, v = _map_entry(raw, binary=False)
            out.setdefault("stringData", {})[k] = v
        elif number == 5:
            out["immutable"] = bool(raw)
    return out


def _namespace(data: bytes) -> JSON:
    out: JSON = {}
    for number, _, raw in fields(data):
        if number == 1:
            out["metadata"] = object_meta(raw)
        elif number == 2:
            finalizers = [r.decode() for n, _, r in fields(raw) if n == 1]
            out["spec"] = {"finalizers": finalizers} if finalizers else {}
    return out


def _service_account(data: bytes) -> JSON:
    out: JSON = {}
    for number, _, raw in fields(data):
        if number == 1:
            out["metadata"] = object_meta(raw)
        elif number == 3:
            name = next((r.decode() for n, _, r in fields(raw) if n == 1), "")
            out.setdefault("imagePullSecrets", []).append({"name": name})
        elif number == 4:
            out["automountServiceAccountToken"] = bool(raw)
    return out


# -- table-driven messages (workload kinds) -------------------------------------------
#
# Field kinds: "s" string, "i"/"b" a non-pointer int/bool (zero omitted, as its JSON
# ``omitempty`` does), "I"/"B" a pointer int/bool (kept when zero), "m" map of strings,
# "q" map of Quantities, "ios" IntOrString, "meta" ObjectMeta, "skip" ignored (status);
# any other kind names a message in MESSAGES. A trailing "[]" makes the field repeated.

Field = tuple[str, str]

_POD_META_SPEC: dict[int, Field] = {1: ("metadata", "meta")}

MESSAGES: dict[str, dict[int, Field]] = {
    "LabelSelector": {1: ("matchLabels", "m"), 2: ("matchExpressions", "Requirement[]")},
    "Requirement": {1: ("key", "s"), 2: ("operator", "s"), 3: ("values", "s[]")},
    "PodTemplateSpec": {**_POD_META_SPEC, 2: ("spec", "PodSpec")},
    "PodSpec": {
        1: ("volumes", "unsupported[]"),
        2: ("containers", "Container[]"),
        3: ("restartPolicy", "s"),
        4: ("terminationGracePeriodSeconds", "I"),
        5: ("activeDeadlineSeconds", "I"),
        6: ("dnsPolicy", "s"),
        7: ("nodeSelector", "m"),
        8: ("serviceAccountName", "s"),
        9: ("serviceAccount", "s"),
        10: ("nodeName", "s"),
        11: ("hostNetwork", "b"),
        12: ("hostPID", "b"),
        13: ("hostIPC", "b"),
        15: ("imagePullSecrets", "LocalObjectReference[]"),
        16: ("hostname", "s"),
        17: ("subdomain", "s"),
        19: ("schedulerName", "s"),
        20: ("initContainers", "Container[]"),
        21: ("automountServiceAccountToken", "B"),
        24: ("priorityClassName", "s"),
        25: ("priority", "I"),
        27: ("shareProcessNamespace", "B"),
        29: ("runtimeClassName", "s"),
        30: ("enableServiceLinks", "B"),
        31: ("preemptionPolicy", "s"),
        35: ("setHostnameAsFQDN", "B"),
        37: ("hostUsers", "B"),
    },
    "Container": {
        1: ("name", "s"),
        2: ("image", "s"),
        3: ("command", "s[]"),
        4: ("args", "s[]"),
        5: ("workingDir", "s"),
        6: ("ports", "ContainerPort[]"),
        7: ("env", "EnvVar[]"),
        8: ("resources", "ResourceRequirements"),
        9: ("volumeMounts", "VolumeMount[]"),
        13: ("terminationMessagePath", "s"),
        14: ("imagePullPolicy", "s"),
        16: ("stdin", "b"),
        17: ("stdinOnce", "b"),
        18: ("tty", "b"),
        20: ("terminationMessagePolicy", "s"),
        24: ("restartPolicy", "s"),
    },
    "ContainerPort": {
        1: ("name", "s"),
        2: ("hostPort", "i"),
        3: ("containerPort", "i"),
        4: ("protocol", "s"),
        5: ("hostIP", "s"),
    },
    "EnvVar": {1: ("name", "s"), 2: ("value", "s")},
    "ResourceRequirements": {1: ("limits", "q"), 2: ("requests", "q")},
    "VolumeMount": {
        1: ("name", "s"),
        2: ("readOnly", "b"),
        3: ("mountPath", "s"),
        4: ("subPath", "s"),
        5: ("mountPropagation", "s"),
        6: ("subPathExpr", "s"),
    },
    "LocalObjectReference": {1: ("name", "s")},
    "Deployment": {**_POD_META_SPEC, 2: ("spec", "DeploymentSpec"), 3: ("status", "skip")},
    "DeploymentSpec": {
        1: ("replicas", "I"),
        2: ("selector", "LabelSelector"),
        3: ("template", "PodTemplateSpec"),
        4: ("strategy", "DeploymentStrategy"),
        5: ("minReadySeconds", "i"),
        6: ("revisionHistoryLimit", "I"),
        7: ("paused", "b"),
        9: ("progressDeadlineSeconds", "I"),
    },
    "DeploymentStrategy": {1: ("type", "s"), 2: ("rollingUpdate", "RollingUpdate")},
    "RollingUpdate": {1: ("maxUnavailable", "ios"), 2: ("maxSurge", "ios")},
    "Job": {**_POD_META_SPEC, 2: ("spec", "JobSpec"), 3: ("status", "skip")},
    "JobSpec": {
        1: ("parallelism", "I"),
        2: ("completions", "I"),
        3: ("activeDeadlineSeconds", "I"),
        4: ("selector", "LabelSelector"),
        5: ("manualSelector", "B"),
        6: ("template", "PodTemplateSpec"),
        7: ("backoffLimit", "I"),
        8: ("ttlSecondsAfterFinished", "I"),
        9: ("completionMode", "s"),
        10: ("suspend", "B"),
    },
    "CronJob": {**_POD_META_SPEC, 2: ("spec", "CronJobSpec"), 3: ("status", "skip")},
    "CronJobSpec": {
        1: ("schedule", "s"),
        2: ("startingDeadlineSeconds", "I"),
        3: ("concurrencyPolicy", "s"),
        4: ("suspend", "B"),
        5: ("jobTemplate", "JobTemplateSpec"),
        6: ("successfulJobsHistoryLimit", "I"),
        7: ("failedJobsHistoryLimit", "I"),
        8: ("timeZone", "s"),
    },
    "JobTemplateSpec": {**_POD_META_SPEC, 2: ("spec", "JobSpec")},
    "Service": {**_POD_META_SPEC, 2: ("spec", "ServiceSpec"), 3: ("status", "skip")},
    "ServiceSpec": {
        1: ("ports", "ServicePort[]"),
        2: ("selector", "m"),
        3: ("clusterIP", "s"),
        4: ("type", "s"),
        5: ("externalIPs", "s[]"),
        7: ("sessionAffinity", "s"),
        8: ("loadBalancerIP", "s"),
        9: ("loadBalancerSourceRanges", "s[]"),
        10: ("externalName", "s"),
        11: ("externalTrafficPolicy", "s"),
        12: ("healthCheckNodePort", "i"),
        13: ("publishNotReadyAddresses", "b"),
        17: ("ipFamilyPolicy", "s"),
        18: ("clusterIPs", "s[]"),
        19: ("ipFamilies", "s[]"),
        21: ("loadBalancerClass", "s"),
        22: ("internalTrafficPolicy", "s"),
    },
    "HorizontalPodAutoscaler": {
        **_POD_META_SPEC,
        2: ("spec", "HorizontalPodAutoscalerSpec"),
        3: ("status", "skip"),
    },
    "HorizontalPodAutoscalerSpec": {  # autoscaling/v1 (kubectl autoscale)
        1: ("scaleTargetRef", "CrossVersionObjectReference"),
        2: ("minReplicas", "I"),
        3: ("maxReplicas", "i"),
        4: ("targetCPUUtilizationPercentage", "I"),
    },
    "CrossVersionObjectReference": {1: ("kind", "s"), 2: ("name", "s"), 3: ("apiVersion", "s")},
    "ServicePort": {
        1: ("name", "s"),
        2: ("protocol", "s"),
        3: ("port", "i"),
        4: ("targetPort", "ios"),
        5: ("nodePort", "i"),
        6: ("appProtocol", "s"),
    },
}


def _int_or_string(data: bytes) -> int | str | None:
    kind, int_val, str_val = 0, 0, ""
    for number, _, raw in fields(data):
        if number == 1:
            kind = raw
        elif number == 2:
            int_val = raw - (1 << 64) if raw >= 1 << 63 else raw
        elif number == 3:
            str_val = raw.decode()
    if kind == 1:
        return str_val
    return int_val or None  # 0 is "unset" (targetPort defaults to port)


def _scalar(kind: str, raw: Any) -> Any:
    if kind == "s":
        return raw.decode()
    if kind in ("i", "I"):
        return raw - (1 << 64) if raw >= 1 << 63 else raw
    if kind in ("b", "B"):
        return bool(raw)
    if kind == "ios":
        return _int_or_string(raw)
    if kind == "meta":
        return object_meta(raw)
    return message(kind, raw)


def _empty(raw: Any) -> bool:
    return raw in (b"", 0)


def message(name: str, data: bytes) -> JSON:
    """Decode ``data`` as the message ``name`` of :data:`MESSAGES`."""
    table = MESSAGES[name]
    out: JSON = {}
    for number, _, raw in fields(data):
        spec = table.get(number)
        if spec is None or spec[1].startswith("unsupported"):
            if _empty(raw):
                continue
            label = spec[0] if spec else f"field {number}"
            raise ProtobufError(f"protobuf {name}.{label} is not supported")
        key, kind = spec
        repeated = kind.endswith("[]")
        kind = kind.removesuffix("[]")
        if kind == "skip":
            continue
        if kind in ("m", "q"):
            k, v = _map_entry(raw, binary=False) if kind == "m" else _quantity_entry(raw)
            out.setdefault(key, {})[k] = v
            continue
        value = _scalar(kind, raw)
        if repeated:
            out.setdefault(key, []).append(value)
        elif value is None or (kind in ("s", "i", "b") and not value):
            continue
        else:
            out[key] = value
    return out


def _quantity_entry(data: bytes) -> tuple[str, str]:
    key, value = "", ""
    for number, _, raw in fields(data):
        if number == 1:
            key = raw.decode()
        elif number == 2:
            value = next((r.decode() for n, _, r in fields(raw) if n == 1), "")
    return key, value


def _table(name: str) -> Any:
    return lambda data: message(name, data)


DECODERS = {
    ("apps/v1", "Deployment"): _table("Deployment"),
    ("batch/v1", "Job"): _table("Job"),
    ("batch/v1", "CronJob"): _table("CronJob"),
    ("v1", "Service"): _table("Service"),
    ("autoscaling/v1", "HorizontalPodAutoscaler"): _table("HorizontalPodAutoscaler"),
    ("v1", "ConfigMap"): _configmap,
    ("v1", "Secret"): _secret,
    ("v1", "Namespace"): _namespace,
    ("v1", "ServiceAccount"): _service_account,
}


def decode(body: bytes) -> JSON:
    """The JSON object for a protobuf-encoded body (ProtobufError if unsupported)."""
    if not body.startswith(MAGIC):
        raise ProtobufError("missing the k8s protobuf envelope")
    api_version = kind = ""
    raw = b""
    for number, _, value in fields(body[len(MAGIC) :]):
        if number == 1:
            for n, _, v in fields(value):
                if n == 1:
                    api_version = v.decode()
                elif n == 2:
                    kind = v.decode()
        elif number == 2:
            raw = value
    decoder = DECODERS.get((api_version, kind))
    if decoder is None:
        raise ProtobufError(f"protobuf bodies of {api_version} {kind} are not supported")
    return {"apiVersion": api_version, "kind": kind, **decoder(raw)}
