"""Validate a step's typed config, turning pydantic's errors into one ConfigError.

Bad configuration is a permanent error (exit 2 on the CLI, never retried), with a
message naming the field, so it is validated once, first, before any I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from shipyard.core.errors import ConfigError

__all__ = ["parse_config"]

M = TypeVar("M", bound=BaseModel)


def parse_config(model: type[M], data: Mapping[str, Any]) -> M:
    """Validate ``data`` into ``model``; invalid input is a ConfigError (exit 2, no retry)."""
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise ConfigError(f"invalid {model.__name__}: {where}: {first.get('msg')}") from None
