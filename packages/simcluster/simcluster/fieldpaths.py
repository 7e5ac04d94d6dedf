"""Field paths and field sets: the ownership vocabulary of managedFields (FieldsV1).

A path is a tuple of steps; a step is ``("f", name)`` for a map field or
``("k", '{"name":"web"}')`` for an element of a keyed list (containers by name, ports
by containerPort, ...). Lists without a merge key are atomic: owned as one leaf.
Pure functions only.
"""

from __future__ import annotations

import json
from typing import Any

JSON = dict[str, Any]
Step = tuple[str, str]
Path = tuple[Step, ...]

# List fields merged by key (strategic merge patch and server-side apply agree on these).
MERGE_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "volumes": ("name",),
    "env": ("name",),
    "imagePullSecrets": ("name",),
    "volumeMounts": ("mountPath",),
    "volumeDevices": ("devicePath",),
    "hostAliases": ("ip",),
    "topologySpreadConstraints": ("topologyKey",),
    "conditions": ("type",),
    "ownerReferences": ("uid",),
}

# Fields never owned by a manager (identity and server-set metadata).
IGNORED_TOP = {"apiVersion", "kind", "status"}
IGNORED_META = {
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
    "generateName",
}


def merge_key(field: str, items: list[Any]) -> tuple[str, ...] | None:
    """The merge key of list field ``field`` given its items, or None when atomic."""
    if not items or not all(isinstance(i, dict) for i in items):
        return MERGE_KEYS.get(field) if not items else None
    if field == "ports":
        if all("containerPort" in i for i in items):
            return ("containerPort",)
        if all("port" in i for i in items):
            return ("port",)
        return None
    keys = MERGE_KEYS.get(field)
    if keys and all(all(k in i for k in keys) for i in items):
        return keys
    return None


def item_key(item: JSON, keys: tuple[str, ...]) -> str:
    """The ``k:`` step value for a keyed list element."""
    return json.dumps({k: item.get(k) for k in keys}, sort_keys=True, separators=(",", ":"))


def leaves(obj: JSON, *, top: bool = True) -> set[Path]:
    """Every owned path in ``obj``: leaf values, plus each keyed-list element itself."""
    out: set[Path] = set()
    _walk(obj, (), out, top)
    return out


def _walk(node: JSON, prefix: Path, out: set[Path], top: bool) -> None:
    for name, value in node.items():
        if top and not prefix and name in IGNORED_TOP:
            continue
        if top and prefix == (("f", "metadata"),) and name in IGNORED_META:
            continue
        path = (*prefix, ("f", name))
        if isinstance(value, dict) and value:
            _walk(value, path, out, top)
        elif isinstance(value, list) and value:
            keys = merge_key(name, value)
            if keys is None:
                out.add(path)
                continue
            for item in value:
                ipath = (*path, ("k", item_key(item, keys)))
                out.add(ipath)
                _walk(item, ipath, out, top)
        else:
            out.add(path)


def get_at(obj: Any, path: Path) -> tuple[bool, Any]:
    """``(found, value)`` at ``path`` in ``obj``."""
    node = obj
    for kind, name in path:
        if kind == "f":
            if not isinstance(node, dict) or name not in node:
                return False, None
            node = node[name]
        else:
            if not isinstance(node, list):
                return False, None
            wanted = json.loads(name)
            node = next(
                (
                    i
                    for i in node
                    if isinstance(i, dict) and all(i.get(k) == v for k, v in wanted.items())
                ),
                None,
            )
            if node is None:
                return False, None
    return True, node


def remove_at(obj: Any, path: Path) -> None:
    """Remove the value at ``path`` (a no-op when absent); empties are left in place."""
    if not path:
        return
    found, parent = get_at(obj, path[:-1])
    if not found:
        return
    kind, name = path[-1]
    if kind == "f" and isinstance(parent, dict):
        parent.pop(name, None)
    elif kind == "k" and isinstance(parent, list):
        wanted = json.loads(name)
        parent[:] = [
            i
            for i in parent
            if not (isinstance(i, dict) and all(i.get(k) == v for k, v in wanted.items()))
        ]


def to_fields_v1(paths: set[Path]) -> JSON:
    """Encode a path set as the FieldsV1 JSON stored in ``metadata.managedFields``."""
    root: JSON = {}
    for path in sorted(paths):
        node = root
        for kind, name in path:
            node = node.setdefault(f"{kind}:{name}", {})
    # A keyed element that is itself owned carries the "." marker.
    for path in paths:
        if path and path[-1][0] == "k":
            node = root
            for kind, name in path:
                node = node[f"{kind}:{name}"]
            if node:
                node["."] = {}
    return root


def from_fields_v1(fields: JSON, prefix: Path = ()) -> set[Path]:
    """Decode FieldsV1 JSON into a path set (inverse of :func:`to_fields_v1`)."""
    out: set[Path] = set()
    for key, child in fields.items():
        if key == ".":
            out.add(prefix)
            continue
        kind, _, name = key.partition(":")
        path = (*prefix, (kind, name))
        if isinstance(child, dict) and child:
            out |= from_fields_v1(child, path)
        else:
            out.add(path)
    return out


def render(path: Path) -> str:
    """Human form used in conflict messages, e.g. ``.spec.replicas``."""
    parts: list[str] = []
    for kind, name in path:
        if kind == "f":
            parts.append(f".{name}")
        elif kind == "k":
            pairs = json.loads(name).items()
            parts.append("[" + ",".join(f"{k}={json.dumps(v)}" for k, v in pairs) + "]")
        else:
            parts.append(f"[{name}]")
    return "".join(parts)
