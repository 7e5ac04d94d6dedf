"""Custom resources against their CRD's structural OpenAPI v3 schema.

As apiextensions-apiserver does: unknown fields are pruned (unless
``x-kubernetes-preserve-unknown-fields``), ``default`` values are applied, then the
object is validated (type, required, enum, pattern, bounds, lengths, items, the
``x-kubernetes-int-or-string`` and ``x-kubernetes-embedded-resource`` markers). Causes
carry kube-openapi's messages, e.g. ``spec.replicas: Invalid value: "string":
spec.replicas in body must be of type integer: "string"``.
"""

from __future__ import annotations

import copy
import re
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from simcluster.resources import BUILTINS
from simcluster.validation.gofmt import go_value

if TYPE_CHECKING:
    from simcluster.resources import ResourceType
    from simcluster.store import Store

JSON = dict[str, Any]
Cause = tuple[str, str, str]

_BUILTIN_KEYS = {b.key for b in BUILTINS}
_ROOT_FIELDS = ("apiVersion", "kind", "metadata")


def for_object(rt: ResourceType, obj: JSON, store: Store) -> JSON | None:
    """The openAPIV3Schema of the CRD version ``obj`` is written in (None: not a CR)."""
    if rt.key in _BUILTIN_KEYS:
        return None
    crd_rt = store.registry.by_key("apiextensions.k8s.io", "customresourcedefinitions")
    if crd_rt is None:
        return None
    crd = store.try_get(crd_rt, "", f"{rt.plural}.{rt.group}")
    if crd is None:
        return None
    version = str(obj.get("apiVersion") or "").rpartition("/")[2] or rt.version
    for v in (crd.get("spec") or {}).get("versions") or []:
        if isinstance(v, dict) and v.get("name") == version:
            found = ((v.get("schema") or {}).get("openAPIV3Schema")) or None
            return found if isinstance(found, dict) else None
    return None


# -- pruning --------------------------------------------------------------------------


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def prune(schema: JSON, value: Any, path: str, unknown: list[str], mutate: bool) -> None:
    """Collect (and with ``mutate`` remove) fields ``schema`` does not declare."""
    if not isinstance(schema, dict):
        return
    if isinstance(value, dict):
        props = schema.get("properties")
        additional = schema.get("additionalProperties")
        preserve = schema.get("x-kubernetes-preserve-unknown-fields") is True
        embedded = schema.get("x-kubernetes-embedded-resource") is True
        root = path == ""
        for key in list(value):
            if (root or embedded) and key in _ROOT_FIELDS:
                # apiVersion, kind and metadata belong to the API server, not to the CRD's
                # schema: kube-apiserver keeps them even when the schema declares
                # `metadata: {type: object}` with no properties (as Argo CD's CRDs do).
                continue
            if isinstance(props, dict) and key in props:
                prune(props[key], value[key], _join(path, key), unknown, mutate)
            elif isinstance(additional, dict):
                prune(additional, value[key], _join(path, key), unknown, mutate)
            elif preserve or additional is True:
                continue
            else:
                unknown.append(_join(path, key))
                if mutate:
                    del value[key]
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for i, item in enumerate(value):
                prune(items, item, f"{path}[{i}]", unknown, mutate)


def unknown_fields(schema: JSON, obj: JSON) -> list[str]:
    found: list[str] = []
    prune(schema, obj, "", found, False)
    return found


# -- defaulting -----------------------------------------------------------------------


def default(schema: JSON, value: Any) -> None:
    """Apply ``default`` of absent properties, top down (as the apiserver's decoder)."""
    if not isinstance(schema, dict):
        return
    if isinstance(value, dict):
        props = schema.get("properties")
        if isinstance(props, dict):
            for key, sub in props.items():
                if isinstance(sub, dict) and "default" in sub and key not in value:
                    value[key] = copy.deepcopy(sub["default"])
                if key in value:
                    default(sub, value[key])
        additional = schema.get("additionalProperties")
        if isinstance(additional, dict):
            for v in value.values():
                default(additional, v)
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for item in value:
                default(items, item)


# -- validation -----------------------------------------------------------------------


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _fits(kind: str, value: Any) -> bool:
    actual = _type_name(value)
    return actual == kind or (kind == "number" and actual == "integer")


@lru_cache(maxsize=256)
def _pattern(text: str) -> re.Pattern[str] | None:
    try:
        return re.compile(text)
    except re.error:
        return None


def _num(n: Any) -> str:
    if isinstance(n, float) and n.is_integer():
        return str(int(n))
    return str(n)


def validate(schema: JSON, value: Any, path: str, causes: list[Cause]) -> None:
    """kube-openapi's checks of ``value`` at ``path`` (``spec.size``) against ``schema``."""
    if not isinstance(schema, dict):
        return
    name = path or "<root>"
    shown = go_value(value)
    if value is None:
        if schema.get("nullable") or not schema.get("type"):
            return
        causes.append(
            (
                "FieldValueTypeInvalid",
                name,
                f'Invalid value: "null": {name} in body must be of type {schema["type"]}: "null"',
            )
        )
        return
    if schema.get("x-kubernetes-int-or-string"):
        if _type_name(value) not in ("integer", "string"):
            causes.append(
                (
                    "FieldValueTypeInvalid",
                    name,
                    f'Invalid value: "{_type_name(value)}": {name} in body must be of type '
                    f'integer,string: "{_type_name(value)}"',
                )
            )
            return
    elif isinstance(schema.get("type"), str) and not _fits(schema["type"], value):
        actual = _type_name(value)
        causes.append(
            (
                "FieldValueTypeInvalid",
                name,
                f'Invalid value: "{actual}": {name} in body must be of type {schema["type"]}: '
                f'"{actual}"',
            )
        )
        return
    enum = schema.get("enum")
    if isinstance(enum, list) and value not in enum:
        values = ", ".join(
            f'"{v}"' if isinstance(v, str) else f'"{go_value(v, json_like=True)}"' for v in enum
        )
        causes.append(
            (
                "FieldValueNotSupported",
                name,
                f"Unsupported value: {shown}: supported values: {values}",
            )
        )
    if isinstance(value, str):
        pattern = schema.get("pattern")
        compiled = _pattern(pattern) if isinstance(pattern, str) else None
        if compiled is not None and not compiled.search(value):
            causes.append(
                (
                    "FieldValueInvalid",
                    name,
                    f"Invalid value: {shown}: {name} in body should match '{pattern}'",
                )
            )
        max_len, min_len = schema.get("maxLength"), schema.get("minLength")
        if isinstance(max_len, int) and len(value) > max_len:
            causes.append(
                ("FieldValueTooLong", name, f"Too long: may not be more than {max_len} bytes")
            )
        if isinstance(min_len, int) and len(value) < min_len:
            causes.append(
                (
                    "FieldValueInvalid",
                    name,
                    f"Invalid value: {shown}: {name} in body should be at least {min_len} "
                    "chars long",
                )
            )
    if _type_name(value) in ("integer", "number") and not isinstance(value, bool):
        maximum, minimum = schema.get("maximum"), schema.get("minimum")
        if isinstance(maximum, int | float):
            if schema.get("exclusiveMaximum") and value >= maximum:
                msg = f"should be less than {_num(maximum)}"
            elif value > maximum:
                msg = f"should be less than or equal to {_num(maximum)}"
            else:
                msg = ""
            if msg:
                causes.append(
                    ("FieldValueInvalid", name, f"Invalid value: {shown}: {name} in body {msg}")
                )
        if isinstance(minimum, int | float):
            if schema.get("exclusiveMinimum") and value <= minimum:
                msg = f"should be greater than {_num(minimum)}"
            elif value < minimum:
                msg = f"should be greater than or equal to {_num(minimum)}"
            else:
                msg = ""
            if msg:
                causes.append(
                    ("FieldValueInvalid", name, f"Invalid value: {shown}: {name} in body {msg}")
                )
    if isinstance(value, list):
        max_items, min_items = schema.get("maxItems"), schema.get("minItems")
        if isinstance(max_items, int) and len(value) > max_items:
            causes.append(
                (
                    "FieldValueTooMany",
                    name,
                    f"Too many: {len(value)}: must have at most {max_items} items",
                )
            )
        if isinstance(min_items, int) and len(value) < min_items:
            causes.append(
                (
                    "FieldValueInvalid",
                    name,
                    f"Invalid value: {len(value)}: {name} in body should have at least "
                    f"{min_items} items",
                )
            )
        items = schema.get("items")
        if isinstance(items, dict):
            for i, item in enumerate(value):
                validate(items, item, f"{path}[{i}]", causes)
    if isinstance(value, dict):
        for key in schema.get("required") or []:
            if key not in value:
                causes.append(("FieldValueRequired", _join(path, key), "Required value"))
        if schema.get("x-kubernetes-embedded-resource"):
            for key in ("apiVersion", "kind"):
                if not value.get(key):
                    causes.append(("FieldValueRequired", _join(path, key), "Required value"))
        props = schema.get("properties")
        if isinstance(props, dict):
            for key, sub in props.items():
                if key in value:
                    validate(sub, value[key], _join(path, key), causes)
        additional = schema.get("additionalProperties")
        if isinstance(additional, dict):
            for key, v in value.items():
                if not (isinstance(props, dict) and key in props):
                    validate(additional, v, _join(path, key), causes)


def admit(schema: JSON, obj: JSON) -> list[Cause]:
    """Prune, default, then validate the custom resource ``obj`` in place."""
    prune(schema, obj, "", [], True)
    default(schema, obj)
    causes: list[Cause] = []
    body = {k: v for k, v in obj.items() if k not in _ROOT_FIELDS}
    root = {k: v for k, v in schema.items() if k != "required"}
    validate(root, body, "", causes)
    for key in schema.get("required") or []:
        if key not in obj:
            causes.insert(0, ("FieldValueRequired", key, "Required value"))
    return causes
