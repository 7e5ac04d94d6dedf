"""Values printed as Go's fmt prints them (``%v`` of decoded JSON), for error messages."""

from __future__ import annotations

import json
from typing import Any


def go_value(value: Any, json_like: bool = False) -> str:
    """``field.Invalid``'s value: strings quoted, numbers bare, maps as ``map[k:v]``."""
    if isinstance(value, str):
        return value if json_like else json.dumps(value)
    return go_plain(value)


def go_plain(value: Any) -> str:
    """``%v`` of a decoded JSON value: ``map[a:1 b:[x y]]``, strings unquoted."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_plain(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, list):
        return "[" + " ".join(go_plain(v) for v in value) + "]"
    return str(value)
