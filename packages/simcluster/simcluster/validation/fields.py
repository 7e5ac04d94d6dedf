"""Decoding as kube-apiserver does it: unknown fields and base64 byte fields.

``fieldValidation`` decides what an unknown field costs: ``Strict`` (kubectl's default)
refuses the request, ``Warn`` (the server's default) accepts it with a ``Warning``
header, ``Ignore`` accepts it silently; accepted unknown fields are dropped, as decoding
into Go structs drops them. Known fields come from the official client's models
(builtin_fields.json, see scripts/gen_builtin_fields.py) for built-in kinds and from the
CRD's schema for custom resources; other kinds are not checked.

The message depends on the verb, as on a real server:
- create/update: 400 ``Deployment in version "v1" cannot be handled as a Deployment:
  strict decoding error: unknown field "spec.replicaz"``
- merge/JSON/strategic patch: 422 `` "" is invalid: patch: Invalid value: "...":
  strict decoding error: unknown field "spec.replicaz"``
- server-side apply (whatever fieldValidation says): 500 ``failed to create typed patch
  object (ns/name; apps/v1, Kind=Deployment): .spec.replicaz: field not declared in
  schema``
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from simcluster.errors import ApiError
from simcluster.validation import schema
from simcluster.validation.gofmt import go_plain

if TYPE_CHECKING:
    from simcluster.resources import ResourceType
    from simcluster.store import Store

JSON = dict[str, Any]

STRICT, WARN, IGNORE = "Strict", "Warn", "Ignore"
# Byte fields ([]byte in Go): JSON carries them base64-encoded.
BYTE_MAPS = {("", "Secret"): ("data",), ("", "ConfigMap"): ("binaryData",)}
# List keys server-side apply names list items by (``containers[name="web"]``).
_LIST_KEYS = ("name",)


@cache
def _model() -> JSON:
    text = resources.files(__package__).joinpath("builtin_fields.json").read_text()
    data: JSON = json.loads(text)
    return data


def _type_for(rt: ResourceType, version: str) -> str | None:
    kinds: dict[str, str] = _model()["kinds"]
    return kinds.get(f"{rt.group}/{version}/{rt.kind}")


def _walk(
    types: dict[str, dict[str, str]],
    tname: str,
    value: Any,
    path: str,
    out: list[str],
    mutate: bool,
    ssa: bool,
) -> None:
    if not isinstance(value, dict):
        return
    fields = types[tname]
    for key in list(value):
        child = f"{path}.{key}" if path else key
        ref = fields.get(key)
        if ref is None:
            out.append(child)
            if mutate:
                del value[key]
            continue
        if not ref:
            continue
        item = value[key]
        if ref[0] == "[" and isinstance(item, list):
            for i, v in enumerate(item):
                label = f"[{i}]"
                if ssa and isinstance(v, dict) and isinstance(v.get("name"), str):
                    label = f'[name="{v["name"]}"]'
                _walk(types, ref[1:], v, f"{child}{label}", out, mutate, ssa)
        elif ref[0] == "{" and isinstance(item, dict):
            for k, v in item.items():
                _walk(types, ref[1:], v, f"{child}.{k}", out, mutate, ssa)
        elif ref[0] not in "[{":
            _walk(types, ref, item, child, out, mutate, ssa)


def unknown(
    rt: ResourceType,
    version: str,
    obj: JSON,
    store: Store,
    mutate: bool = False,
    ssa: bool = False,
) -> list[str]:
    """Paths of fields the kind does not declare (dropped from ``obj`` with ``mutate``)."""
    tname = _type_for(rt, version)
    types: dict[str, dict[str, str]] = _model()["types"]
    out: list[str] = []
    if tname is not None:
        _walk(types, tname, obj, "", out, mutate, ssa)
        return out
    crd_schema = schema.for_object(rt, {"apiVersion": rt.api_version(version)}, store)
    if crd_schema is None:
        return out
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        _walk(types, "V1ObjectMeta", meta, "metadata", out, mutate, ssa)
    schema.prune(crd_schema, obj, "", out, mutate)
    return out


def mode(query: dict[str, str]) -> str:
    value = query.get("fieldValidation") or WARN
    if value not in (STRICT, WARN, IGNORE):
        raise ApiError(
            400,
            "BadRequest",
            f'fieldValidation parameter unsupported: "{value}"; supported values: '
            '"Ignore", "Strict", "Warn"',
        )
    return value


def _strict_text(paths: list[str]) -> str:
    return "strict decoding error: " + ", ".join(f'unknown field "{p}"' for p in paths)


def warning_header(paths: list[str]) -> dict[str, str]:
    """``Warning: 299 - "unknown field \\"x\\""`` per unknown field (comma-joined)."""
    if not paths:
        return {}
    quoted = [json.dumps(f'unknown field "{p}"') for p in paths]
    return {"warning": ", ".join(f"299 - {q}" for q in quoted)}


# -- base64 ---------------------------------------------------------------------------

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_VALID = frozenset(_ALPHABET)


def base64_error(text: str) -> int | None:
    """Where Go's ``base64.StdEncoding`` stops decoding ``text`` (None: it decodes)."""
    src = text.encode()
    n, si = len(src), 0
    while True:
        j = 0
        while j < 4:
            if si == n:
                if j == 0:
                    return None
                return si - j
            c = chr(src[si])
            si += 1
            if c in _VALID:
                j += 1
                continue
            if c in "\r\n":
                continue
            if c != "=":
                return si - 1
            if j in (0, 1):
                return si - 1
            if j == 2:
                while si < n and chr(src[si]) in "\r\n":
                    si += 1
                if si == n:
                    return n
                if chr(src[si]) != "=":
                    return si - 1
                si += 1
            while si < n and chr(src[si]) in "\r\n":
                si += 1
            if si < n:
                return si
            return None


def _bytes_error(rt: ResourceType, obj: JSON) -> str | None:
    for field in BYTE_MAPS.get((rt.group, rt.kind), ()):
        data = obj.get(field)
        if not isinstance(data, dict):
            continue
        for value in data.values():
            if isinstance(value, str):
                at = base64_error(value)
                if at is not None:
                    return f"illegal base64 data at input byte {at}"
    return None


# -- the three verbs ------------------------------------------------------------------


def decode(
    rt: ResourceType, version: str, obj: JSON, query: dict[str, str], store: Store
) -> dict[str, str]:
    """Check a create/update body; return the Warning header (400 when Strict)."""
    how = mode(query)
    prefix = f'{rt.kind} in version "{version}" cannot be handled as a {rt.kind}: '
    problem = _bytes_error(rt, obj)
    if problem:
        raise ApiError(400, "BadRequest", prefix + problem)
    paths = unknown(rt, version, obj, store, mutate=how != STRICT)
    if paths and how == STRICT:
        raise ApiError(400, "BadRequest", prefix + _strict_text(paths))
    return warning_header(paths) if how == WARN else {}


def _patch_invalid(shown: str, text: str) -> ApiError:
    value = json.dumps(shown)
    return ApiError(
        422,
        "Invalid",
        f' "" is invalid: patch: Invalid value: {value}: {text}',
        {
            "causes": [
                {
                    "reason": "FieldValueInvalid",
                    "message": f"Invalid value: {value}: {text}",
                    "field": "patch",
                }
            ]
        },
    )


def decode_patched(
    rt: ResourceType,
    version: str,
    patched: JSON,
    patch_body: Any,
    strategic: bool,
    query: dict[str, str],
    store: Store,
) -> dict[str, str]:
    """Check the result of a (non-apply) patch; return the Warning header (422 if Strict)."""
    how = mode(query)
    if strategic:
        shown = go_plain(patch_body)
    else:
        shown = json.dumps(patched, separators=(",", ":"), sort_keys=True)
    problem = _bytes_error(rt, patched)
    if problem:
        raise _patch_invalid(shown, problem)
    paths = unknown(rt, version, patched, store, mutate=how != STRICT)
    if paths and how == STRICT:
        raise _patch_invalid(shown, _strict_text(paths))
    return warning_header(paths) if how == WARN else {}


def check_apply(
    rt: ResourceType, version: str, applied: JSON, namespace: str, name: str, store: Store
) -> None:
    """Server-side apply refuses undeclared fields whatever fieldValidation says."""
    problem = _bytes_error(rt, applied)
    if problem:
        raise ApiError(
            400,
            "BadRequest",
            f'{rt.kind} in version "{version}" cannot be handled as a {rt.kind}: {problem}',
        )
    paths = unknown(rt, version, applied, store, ssa=True)
    if not paths:
        return
    gvk = f"{rt.group}/{version}, Kind={rt.kind}"
    detail = (
        f".{paths[0]}: field not declared in schema"
        if len(paths) == 1
        else "errors:\n" + "\n".join(f"  .{p}: field not declared in schema" for p in paths)
    )
    raise ApiError(
        500,
        "",
        f"failed to create typed patch object ({namespace}/{name}; {gvk}): {detail}",
    )
