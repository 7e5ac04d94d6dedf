"""HTTP smoke checks after a rollout: does the new version answer as expected?

Config is the catalog's :class:`~shipyard.core.catalog.SmokeCheck` (URL, expected status and
body substring, attempts). The pure core :func:`judge_response` says why one response
fails (or None); :func:`run_smoke` makes up to ``attempts`` GETs through an httpx client
(a port, so tests hand in one bound to a real loopback server) with a pause between
them, because a just-ready pod behind a Service may still be warming up. Connection
errors count as a failed attempt, not a crash. All attempts failing is a
:class:`PolicyError` quoting the last reason: a failed gate, not a transient error.
:func:`check_smoke` runs it with its own client; the task ``smoke_check`` is in
:mod:`tasks.steps.rollout`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
from pydantic import BaseModel, Field

from shipyard.core.catalog import SmokeCheck
from shipyard.core.errors import PolicyError

__all__ = ["SmokeResult", "check_smoke", "judge_response", "run_smoke"]


class SmokeResult(BaseModel):
    """Outcome of one smoke check."""

    url: str = Field(description="URL checked.")
    ok: bool = Field(description="True when an attempt answered as expected.")
    attempts: int = Field(description="Attempts made.")
    status: int | None = Field(None, description="Last HTTP status (None: no answer).")
    reason: str | None = Field(None, description="Why the last attempt failed.")


def judge_response(check: SmokeCheck, status: int, body: str) -> str | None:
    """Why a response does not satisfy ``check``, or None when it does (pure)."""
    if status != check.expect_status:
        return f"status {status}, expected {check.expect_status}"
    if check.expect_body is not None and check.expect_body not in body:
        snippet = " ".join(body.split())[:80]
        return f"body does not contain {check.expect_body!r} (got {snippet!r})"
    return None


def run_smoke(
    check: SmokeCheck,
    client: httpx.Client,
    *,
    interval_seconds: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> SmokeResult:
    """Try ``check`` up to ``check.attempts`` times; PolicyError when none passes."""
    reason: str | None = None
    status: int | None = None
    for attempt in range(1, check.attempts + 1):
        try:
            response = client.get(check.url)
            status = response.status_code
            reason = judge_response(check, status, response.text)
        except httpx.HTTPError as exc:
            status, reason = None, f"{type(exc).__name__}: {exc}"
        if reason is None:
            return SmokeResult(url=check.url, ok=True, attempts=attempt, status=status)
        if attempt < check.attempts:
            sleep(interval_seconds)
    raise PolicyError(f"smoke check {check.url} failed after {check.attempts} attempts: {reason}")


def check_smoke(check: SmokeCheck, interval_seconds: float = 1.0) -> SmokeResult:
    """Run one HTTP smoke check with a client of its own (redirects followed)."""
    with httpx.Client(timeout=10.0, follow_redirects=True) as client:
        return run_smoke(check, client, interval_seconds=interval_seconds)
