"""Prefect global concurrency limits that flows rely on, created when missing.

Prefect's ``concurrency()`` silently does not limit when the named limit does not exist;
"one delivery per app and environment", "one writer per GitOps branch" and "one rate per
registry" must hold on a fresh server too, so flows call :func:`ensure_limit` before
taking a slot. The names come from :mod:`shipyard.core.limits`.
"""

from __future__ import annotations

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import (
    GlobalConcurrencyLimitCreate,
    GlobalConcurrencyLimitUpdate,
)
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

__all__ = ["ensure_limit"]


def ensure_limit(name: str, limit: int, slot_decay_per_second: float | None = None) -> None:
    """Create the limit (active) if missing; re-activate it if someone disabled it."""
    with get_client(sync_client=True) as client:
        try:
            extra = (
                {}
                if slot_decay_per_second is None
                else {"slot_decay_per_second": slot_decay_per_second}
            )
            client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=name, limit=limit, active=True, **extra)
            )
            return
        except ObjectAlreadyExists:
            pass
        try:
            existing = client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:  # deleted in between: the next call creates it again
            return
        if not existing.active:
            client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(active=True))
