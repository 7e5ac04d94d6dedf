"""The three PATCH flavours other than apply: JSON merge, JSON patch, strategic merge.

Pure functions ``(live, patch) -> new``; malformed patches raise 400/422 ApiErrors the
way the API server reports them.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch

from simcluster import fieldpaths as fp
from simcluster.errors import ApiError, bad_request

JSON = dict[str, Any]

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"
APPLY_CBOR = "application/apply-patch+cbor"


def merge_patch(live: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(live) if isinstance(live, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def json_patch(live: JSON, operations: Any) -> JSON:
    """RFC 6902 JSON patch; a failing ``test`` or bad path is a 422, as on real servers."""
    if not isinstance(operations, list):
        raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    try:
        result = jsonpatch.JsonPatch(operations).apply(live)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
        raise ApiError(
            422, "Invalid", f"the server rejected our request due to an error in our request: {exc}"
        ) from None
    except (TypeError, KeyError, IndexError, ValueError) as exc:
        raise bad_request(f"invalid JSON patch: {exc}") from None
    if not isinstance(result, dict):
        raise bad_request("JSON patch did not produce an object")
    return result


def strategic_merge_patch(live: Any, patch: Any, field: str = "") -> Any:
    """Kubernetes strategic merge patch over built-in types.

    Keyed lists (containers/initContainers/env/volumes by name, ports by containerPort,
    volumeMounts by mountPath, ...) merge element-wise; ``$patch: delete|replace``,
    ``$retainKeys``, ``$deleteFromPrimitiveList/<f>`` and ``$setElementOrder/<f>`` are
    honoured; other lists are replaced.
    """
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return None
    if directive is not None:
        raise bad_request(f"Unknown patch type: {directive}")
    out: JSON = dict(live) if isinstance(live, dict) else {}
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key in ("$retainKeys",) or key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            target = key.split("/", 1)[1]
            current = out.get(target)
            if isinstance(current, list) and isinstance(value, list):
                out[target] = [v for v in current if v not in value]
            continue
        if value is None:
            out.pop(key, None)
            continue
        current = out.get(key)
        if isinstance(value, dict):
            merged = strategic_merge_patch(current, value, key)
            if merged is None:
                out.pop(key, None)
            else:
                out[key] = merged
        elif isinstance(value, list):
            out[key] = _merge_list(current, value, key)
        else:
            out[key] = copy.deepcopy(value)
    if isinstance(retain, list):
        out = {k: v for k, v in out.items() if k in retain}
    return out


def _merge_list(live: Any, patch: list[Any], field: str) -> list[Any]:
    if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch):
        return [copy.deepcopy(i) for i in patch if not (isinstance(i, dict) and "$patch" in i)]
    current = live if isinstance(live, list) else []
    sample = [i for i in patch if isinstance(i, dict) and "$patch" not in i] or [
        i for i in current if isinstance(i, dict)
    ]
    keys = fp.merge_key(field, sample) if sample else fp.MERGE_KEYS.get(field)
    if keys is None or not all(isinstance(i, dict) for i in patch):
        return [copy.deepcopy(i) for i in patch]
    out = [copy.deepcopy(i) for i in current]
    for item in patch:
        if not all(k in item for k in keys):
            raise bad_request(f"map: {item} does not contain declared merge key: {keys[0]}")
        k = fp.item_key(item, keys)
        idx = next(
            (n for n, i in enumerate(out) if isinstance(i, dict) and fp.item_key(i, keys) == k),
            None,
        )
        if item.get("$patch") == "delete":
            if idx is not None:
                out.pop(idx)
            continue
        if idx is None:
            out.append(strategic_merge_patch({}, item, ""))
        else:
            out[idx] = strategic_merge_patch(out[idx], item, "")
    return out
