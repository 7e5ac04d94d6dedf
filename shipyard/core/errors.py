"""The one error split every step uses: permanent (do not retry) vs transient (retry).

Adapters translate library exceptions into these once, at the edge; tasks and flows
only ever see ``ShipyardError`` subclasses, and one predicate decides retries.
"""

from __future__ import annotations

import errno
import socket
from typing import Any

TRANSIENT_HTTP_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class ShipyardError(Exception):
    """Base class: ``message`` is one line a user can act on."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        # Every Shipyard error passes through redaction, so a secret can never reach a
        # Prefect state message, a log line or a CLI error through an exception.
        from shipyard.core.redact import redact

        self.message = redact(message)
        self.hint = None if hint is None else redact(hint)
        super().__init__(self.message if self.hint is None else f"{self.message} ({self.hint})")


class PermanentError(ShipyardError):
    """Retrying cannot help: bad config, 401/403, a blocked policy gate, a conflict."""


class TransientError(ShipyardError):
    """Retrying may help: timeouts, 429, 5xx, connection resets, non-fast-forward pushes.

    ``retry_after`` carries a server's hint (seconds) when it gave one.
    """

    def __init__(
        self, message: str, *, hint: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.retry_after = retry_after


class ConfigError(PermanentError):
    """Invalid user input or configuration; the CLI turns it into exit code 2."""


class PolicyError(PermanentError):
    """A policy gate (scan, approval, verification) refused to let a change through."""


def classify_http_status(status: int) -> type[ShipyardError] | None:
    """Map an HTTP status to the error class it implies, or None for success."""
    if status < 400:
        return None
    if status in TRANSIENT_HTTP_STATUSES:
        return TransientError
    return PermanentError


def is_transient(exc: BaseException) -> bool:
    """True when retrying the operation that raised ``exc`` may succeed.

    Shipyard's own errors say so directly; for foreign exceptions that escaped an
    adapter we recognise the usual network failures, and treat everything else as
    permanent so a bug is never retried into a longer outage.
    """
    if isinstance(exc, TransientError):
        return True
    if isinstance(exc, ShipyardError):
        return False
    if isinstance(exc, (TimeoutError, ConnectionError, socket.timeout)):
        return True
    if isinstance(exc, OSError) and exc.errno in {
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.ETIMEDOUT,
        errno.EPIPE,
        errno.EHOSTUNREACH,
    }:
        return True
    status = _status_of(exc)
    if status is not None:
        return status in TRANSIENT_HTTP_STATUSES
    name = type(exc).__name__
    return name in {
        "ConnectTimeout",
        "ReadTimeout",
        "WriteTimeout",
        "PoolTimeout",
        "ConnectError",
        "RemoteProtocolError",
        "ProtocolError",
        "MaxRetryError",
        "NewConnectionError",
        "EndpointConnectionError",
        "ConnectTimeoutError",
        "ReadTimeoutError",
    }


def _status_of(exc: BaseException) -> int | None:
    """Find an HTTP status on common client exceptions (kubernetes, httpx, docker, botocore)."""
    for attr in ("status", "status_code"):
        value: Any = getattr(exc, attr, None)
        if isinstance(value, int):
            return value
    response: Any = getattr(exc, "response", None)
    if response is not None:
        for attr in ("status_code", "status"):
            value = getattr(response, attr, None)
            if isinstance(value, int):
                return value
        if isinstance(response, dict):  # botocore ClientError
            meta = response.get("ResponseMetadata", {})
            code = meta.get("HTTPStatusCode")
            if isinstance(code, int):
                return code
    return None


def retry_condition(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry only when the failure is transient."""
    try:
        state.result()
    except Exception as exc:  # noqa: BLE001 - we classify whatever the task raised
        return is_transient(exc)
    return False
