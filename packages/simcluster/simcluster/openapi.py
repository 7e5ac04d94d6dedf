"""Minimal OpenAPI v3 documents: just enough for kubectl.

kubectl reads ``/openapi/v3`` to learn that the server validates fields itself
(``fieldValidation`` on PATCH), so it skips client-side schema validation. PATCH
operations carry no request body schema, so kubectl computes strategic merge patches
from its compiled-in types (built-ins) or uses merge patches (custom resources).
"""

from __future__ import annotations

import hashlib
from typing import Any

from simcluster.resources import ResourceRegistry

JSON = dict[str, Any]

_PARAMS = [
    {"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
    for name in ("dryRun", "fieldManager", "fieldValidation", "force")
]


def _gv_path(group: str, version: str) -> str:
    return f"api/{version}" if not group else f"apis/{group}/{version}"


def root(registry: ResourceRegistry) -> JSON:
    paths: JSON = {}
    for group, versions in registry.groups().items():
        for v in versions:
            doc = group_version(registry, group, v)
            digest = hashlib.sha256(repr(doc).encode()).hexdigest()[:16].upper()
            p = _gv_path(group, v)
            paths[p] = {"serverRelativeURL": f"/openapi/v3/{p}?hash={digest}"}
    return {"paths": paths}


def group_version(registry: ResourceRegistry, group: str, version: str) -> JSON | None:
    types = registry.in_group_version(group, version)
    if not types:
        return None
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
        "components": {"schemas": {}},
    }
