"""managedFields bookkeeping and server-side apply (SSA).

Updates give the changed fields to the writing manager (operation ``Update``); an apply
(operation ``Apply``) owns exactly the fields in its configuration, removes fields it
stopped applying (unless another manager owns them), and fails with a 409 Conflict
naming the other manager and fields when it would change a value someone else owns,
unless forced. Pure functions over plain dicts.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from simcluster import fieldpaths as fp
from simcluster.errors import ApiError

JSON = dict[str, Any]


def _entries(obj: JSON) -> list[JSON]:
    return list((obj.get("metadata") or {}).get("managedFields") or [])


def _entry_paths(entry: JSON) -> set[fp.Path]:
    return fp.from_fields_v1(entry.get("fieldsV1") or {})


def _make_entry(
    manager: str, operation: str, api_version: str, paths: set[fp.Path], now: str, sub: str
) -> JSON:
    entry: JSON = {
        "manager": manager,
        "operation": operation,
        "apiVersion": api_version,
        "time": now,
        "fieldsType": "FieldsV1",
        "fieldsV1": fp.to_fields_v1(paths),
    }
    if sub:
        entry["subresource"] = sub
    return entry


def _same(a: JSON, b: JSON) -> bool:
    return (
        a.get("manager") == b.get("manager")
        and a.get("operation") == b.get("operation")
        and (a.get("subresource") or "") == (b.get("subresource") or "")
    )


def track_update(
    old: JSON | None,
    new: JSON,
    manager: str,
    api_version: str,
    now: str,
    subresource: str = "",
) -> list[JSON]:
    """managedFields after a non-apply write of ``new`` over ``old`` by ``manager``.

    When the request itself set different managedFields, those are kept as given
    (that is how kubectl migrates client-side-apply ownership).
    """
    requested = (new.get("metadata") or {}).get("managedFields")
    previous = _entries(old) if old else []
    if old is not None and requested is not None and requested != previous:
        return list(requested)
    if old is None and requested:
        return list(requested)
    new_leaves = fp.leaves(new)
    if old is None:
        changed = new_leaves
        removed: set[fp.Path] = set()
    else:
        old_leaves = fp.leaves(old)
        changed = {
            p for p in new_leaves if p not in old_leaves or fp.get_at(old, p) != fp.get_at(new, p)
        }
        removed = old_leaves - new_leaves
    if not changed and not removed:
        return previous
    me = {"manager": manager, "operation": "Update", "subresource": subresource}
    out: list[JSON] = []
    mine: set[fp.Path] = set(changed)
    for entry in previous:
        paths = _entry_paths(entry)
        if _same(entry, me):
            mine |= paths - removed
            continue
        kept = paths - changed - removed
        if kept != paths:
            if kept:
                out.append({**entry, "fieldsV1": fp.to_fields_v1(kept)})
        else:
            out.append(entry)
    if mine:
        out.append(_make_entry(manager, "Update", api_version, mine, now, subresource))
    return out


def _merge(live: Any, applied: Any, field: str = "") -> Any:
    if isinstance(live, dict) and isinstance(applied, dict):
        out = dict(live)
        for key, value in applied.items():
            out[key] = _merge(live.get(key), value, key) if key in live else copy.deepcopy(value)
        return out
    if isinstance(live, list) and isinstance(applied, list):
        keys = fp.merge_key(field, applied) if applied else None
        if keys and all(isinstance(i, dict) for i in live):
            by_key = {fp.item_key(i, keys): i for i in live if all(k in i for k in keys)}
            merged: list[Any] = []
            seen: set[str] = set()
            for item in applied:
                k = fp.item_key(item, keys)
                seen.add(k)
                merged.append(_merge(by_key[k], item, "") if k in by_key else copy.deepcopy(item))
            merged.extend(i for i in live if fp.item_key(i, keys) not in seen)
            return merged
    return copy.deepcopy(applied)


def apply(
    live: JSON | None,
    applied: JSON,
    manager: str,
    api_version: str,
    now: str,
    force: bool,
) -> JSON:
    """The object after ``manager`` applies ``applied`` to ``live`` (None: create).

    Raises a 409 Conflict listing fields owned by other managers whose value would
    change, unless ``force`` (then ownership moves to ``manager``).
    """
    new_paths = fp.leaves(applied)
    if live is None:
        obj = copy.deepcopy(applied)
        obj.setdefault("metadata", {})["managedFields"] = [
            _make_entry(manager, "Apply", api_version, new_paths, now, "")
        ]
        return obj
    entries = _entries(live)
    me = {"manager": manager, "operation": "Apply", "subresource": ""}
    mine_before: set[fp.Path] = set()
    others: list[tuple[JSON, set[fp.Path]]] = []
    for entry in entries:
        if (entry.get("subresource") or "") == "status":
            others.append((entry, _entry_paths(entry)))
        elif _same(entry, me):
            mine_before = _entry_paths(entry)
        else:
            others.append((entry, _entry_paths(entry)))
    conflicts: list[tuple[str, str, fp.Path]] = []
    for entry, paths in others:
        for p in sorted(new_paths & paths):
            if p[-1][0] == "k":
                continue  # a list element's own marker: its fields are compared instead
            if fp.get_at(live, p) != fp.get_at(applied, p):
                conflicts.append((entry["manager"], entry.get("apiVersion", api_version), p))
    if conflicts and not force:
        raise _conflict_error(conflicts)
    taken = {p for _, _, p in conflicts}
    owned_by_others = set().union(*(paths for _, paths in others)) - taken if others else set()
    obj = copy.deepcopy(live)
    for p in sorted(mine_before - new_paths - owned_by_others, key=len, reverse=True):
        fp.remove_at(obj, p)
    body = {k: v for k, v in applied.items() if k not in ("status",)}
    obj = _merge(obj, body)
    new_entries: list[JSON] = []
    for entry, paths in others:
        kept = paths - taken
        if kept == paths:
            new_entries.append(entry)
        elif kept:
            new_entries.append({**entry, "fieldsV1": fp.to_fields_v1(kept)})
    new_entries.append(_make_entry(manager, "Apply", api_version, new_paths, now, ""))
    obj.setdefault("metadata", {})["managedFields"] = new_entries
    return obj


def _conflict_error(conflicts: list[tuple[str, str, fp.Path]]) -> ApiError:
    causes = [
        {
            "reason": "FieldManagerConflict",
            "message": f'conflict with "{manager}" using {version}',
            "field": fp.render(path),
        }
        for manager, version, path in conflicts
    ]
    n = len(conflicts)
    if n == 1:
        manager, version, path = conflicts[0]
        text = (
            f'Apply failed with 1 conflict: conflict with "{manager}" using {version}: '
            f"{fp.render(path)}"
        )
    else:
        lines = "\n".join(
            f'- conflict with "{m}" using {v}: {fp.render(p)}' for m, v, p in conflicts
        )
        text = f"Apply failed with {n} conflicts: conflicts with managers:\n{lines}"
    return ApiError(409, "Conflict", text, {"causes": causes})


def manager_from_user_agent(user_agent: str) -> str:
    """Default field manager: the User-Agent's product token, as the API server does."""
    head = user_agent.split(" ", 1)[0]
    name = head.split("/", 1)[0]
    return name[:128] or "unknown"


def dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True)
