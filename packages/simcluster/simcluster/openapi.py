"""OpenAPI documents: ``/openapi/v3`` (+ per group/version) and ``/openapi/v2``.

kubectl reads ``/openapi/v3`` to learn that the server validates fields itself
(``fieldValidation`` on PATCH), so it skips client-side schema validation, and
``kubectl explain`` reads the kinds' schemas from ``components.schemas`` (found by their
``x-kubernetes-group-version-kind``): compact hand-written ones for the built-in kinds
(:mod:`simcluster.openapi_schemas`), the structural schema for custom resources.
PATCH operations carry no request body schema, so kubectl computes strategic merge
patches from its compiled-in types (built-ins) or uses merge patches (custom resources).

``/openapi/v2`` is what kubectl falls back to for a group/version v3 does not list (a
kind with no CRD): it asks for protobuf, and gets an empty document, so client-side
validation skips the unknown kind and kubectl reports its own ``no matches for kind``.
JSON clients get the same schemas as v3 under ``definitions``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from simcluster import openapi_schemas
from simcluster.resources import ResourceRegistry, ResourceType

JSON = dict[str, Any]

_PARAMS = [
    {"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
    for name in ("dryRun", "fieldManager", "fieldValidation", "force")
]


def _gv_path(group: str, version: str) -> str:
    return f"api/{version}" if not group else f"apis/{group}/{version}"


def root(registry: ResourceRegistry, crds: list[JSON] | None = None) -> JSON:
    paths: JSON = {}
    for group, versions in registry.groups().items():
        for v in versions:
            doc = group_version(registry, group, v, crds)
            digest = hashlib.sha256(repr(doc).encode()).hexdigest()[:16].upper()
            p = _gv_path(group, v)
            paths[p] = {"serverRelativeURL": f"/openapi/v3/{p}?hash={digest}"}
    return {"paths": paths}


def _crd_schema(crds: list[JSON], rt: ResourceType, version: str) -> JSON | None:
    for crd in crds:
        spec = crd.get("spec") or {}
        if spec.get("group") != rt.group or (spec.get("names") or {}).get("plural") != rt.plural:
            continue
        for v in spec.get("versions") or []:
            if isinstance(v, dict) and v.get("name") == version:
                schema = ((v.get("schema") or {}).get("openAPIV3Schema")) or {}
                if isinstance(schema, dict):
                    return schema
    return None


def _schema_for(rt: ResourceType, version: str, crds: list[JSON]) -> JSON:
    crd = _crd_schema(crds, rt, version) if crds else None
    if crd is None:
        schema = openapi_schemas.kind_schema(rt.group, version, rt.kind)
    else:
        schema = {**crd, "type": "object"}
        props = dict(schema.get("properties") or {})
        for key, desc in (("apiVersion", "APIVersion of this object."), ("kind", "Its kind.")):
            props.setdefault(key, {"type": "string", "description": desc})
        props.setdefault(
            "metadata",
            {
                "allOf": [{"$ref": f"#/components/schemas/{openapi_schemas.META}"}],
                "description": "Standard object's metadata.",
            },
        )
        schema["properties"] = props
    gvk = {"group": rt.group, "version": version, "kind": rt.kind}
    return {**schema, "x-kubernetes-group-version-kind": [gvk]}


def group_version(
    registry: ResourceRegistry, group: str, version: str, crds: list[JSON] | None = None
) -> JSON | None:
    types = registry.in_group_version(group, version)
    if not types:
        return None
    schemas: JSON = {}
    for rt in types:
        schemas[openapi_schemas.schema_name(group, version, rt.kind)] = _schema_for(
            rt, version, crds or []
        )
    used: set[str] = set()
    openapi_schemas.refs(schemas, used)
    if used:
        used.add(openapi_schemas.META)
    for name in sorted(used):
        schemas[name] = openapi_schemas.SHARED[name]
    if any(_crd_schema(crds or [], rt, version) for rt in types):
        schemas[openapi_schemas.META] = openapi_schemas.SHARED[openapi_schemas.META]
    paths: JSON = {}
    prefix = "/" + _gv_path(group, version)
    for rt in types:
        gvk = {"group": group, "version": version, "kind": rt.kind}
        ns = "/namespaces/{namespace}" if rt.namespaced else ""
        item = f"{prefix}{ns}/{rt.plural}/{{name}}"
        paths[item] = {
            "patch": {
                "operationId": f"patch{rt.kind}",
                "parameters": _PARAMS,
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": gvk,
                "responses": {"200": {"description": "OK"}},
            },
            "get": {
                "operationId": f"read{rt.kind}",
                "x-kubernetes-action": "get",
                "x-kubernetes-group-version-kind": gvk,
                "responses": {"200": {"description": "OK"}},
            },
        }
        paths[f"{prefix}{ns}/{rt.plural}"] = {
            "post": {
                "operationId": f"create{rt.kind}",
                "parameters": _PARAMS,
                "x-kubernetes-action": "post",
                "x-kubernetes-group-version-kind": gvk,
                "responses": {"201": {"description": "Created"}},
            }
        }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (simcluster)", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }


V2_PROTOBUF_TYPE = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"


def _proto_string(number: int, text: str) -> bytes:
    data = text.encode()
    return bytes([number << 3 | 2, len(data)]) + data


def v2_protobuf() -> bytes:
    """An ``openapi_v2.Document`` with ``swagger`` and ``info`` only (no definitions)."""
    info = _proto_string(1, "Kubernetes (simcluster)") + _proto_string(2, "v1.32.0")
    return _proto_string(1, "2.0") + bytes([2 << 3 | 2, len(info)]) + info


def v2_json(registry: ResourceRegistry, crds: list[JSON] | None = None) -> JSON:
    """Swagger 2.0: every served kind's schema under ``definitions``."""
    definitions: JSON = {}
    for group, versions in registry.groups().items():
        for v in versions:
            doc = group_version(registry, group, v, crds) or {}
            definitions.update(doc.get("components", {}).get("schemas", {}))
    text = json.dumps(definitions).replace("#/components/schemas/", "#/definitions/")
    return {
        "swagger": "2.0",
        "info": {"title": "Kubernetes (simcluster)", "version": "v1.32.0"},
        "paths": {},
        "definitions": json.loads(text),
    }
