"""Timestamps in the API server's format (RFC 3339, second precision, UTC)."""

from __future__ import annotations

import datetime as dt


def now_iso() -> str:
    """Current UTC time as ``2026-01-02T03:04:05Z``."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> float:
    """Seconds since the epoch for an RFC 3339 timestamp (0.0 when unparseable)."""
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except (ValueError, AttributeError):
        return 0.0
