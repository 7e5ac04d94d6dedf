"""What the Prefect server holds before any flow runs: the limits Shipyard takes slots of.

``LIMITS_ADMIN`` (one slot) orders the creators of missing limits
(:func:`flows.common.ensure_limit`); creating it here, once, at `stack up`, means no flow
ever races to create it. Plain HTTP against the API: the stack does not import Prefect.
"""

from __future__ import annotations

import httpx

from shipyard.core.errors import TransientError
from shipyard.core.limits import LIMITS_ADMIN


def seed_limits(api_url: str, timeout: float = 10.0) -> bool:
    """Create ``LIMITS_ADMIN`` when missing; True when this call created it."""
    base = api_url.rstrip("/")
    try:
        with httpx.Client(base_url=base, timeout=timeout) as client:
            if client.get(f"/v2/concurrency_limits/{LIMITS_ADMIN}").status_code == 200:
                return False
            created = client.post(
                "/v2/concurrency_limits/", json={"name": LIMITS_ADMIN, "limit": 1, "active": True}
            )
    except httpx.HTTPError as exc:
        raise TransientError(f"prefect at {base} did not answer: {exc}") from exc
    if created.status_code == 409:  # another `up` was faster
        return False
    if created.status_code >= 400:
        raise TransientError(f"creating limit {LIMITS_ADMIN}: HTTP {created.status_code}")
    return True
