"""Decoding Kubernetes protobuf request bodies for a few simple kinds.

kubectl's ``create configmap|secret|namespace|serviceaccount`` generators send
``application/vnd.kubernetes.protobuf``. This decodes those kinds (the ``k8s\\0``
envelope, ``runtime.Unknown``, ObjectMeta and the kinds' own fields) into the JSON the
rest of the simulator works with. Other kinds are refused (415), as documented.
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


DECODERS = {
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
