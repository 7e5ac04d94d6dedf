"""Keep secret values out of every log line, artifact and exception message.

Secrets reach Shipyard as ``pydantic.SecretStr`` (blocks, configs). Whenever code
unwraps one it calls :func:`register_secret`, so the value is known here; everything
that leaves the process (log records through :class:`RedactingFilter`, artifact
markdown, CLI error lines) goes through :func:`redact`. Patterns catch well-known
token shapes that were never registered (e.g. echoed by a remote server).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable

from pydantic import SecretStr

MASK = "********"
_MIN_SECRET_LEN = 4

_lock = threading.Lock()
_secrets: set[str] = set()

# Credentials embedded in URLs, Authorization headers, and common token prefixes.
_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"(?<=://)([^/\s:@]+):([^/\s@]+)@"),
    re.compile(r"(?i)(authorization:\s*(?:basic|bearer|token)\s+)[^\s'\"]+"),
    re.compile(r"(?i)\b(gh[pousr]_[A-Za-z0-9]{20,}|glpat-[A-Za-z0-9_\-]{20,})"),
    re.compile(r"\b(AKIA|ASIA)[A-Z0-9]{16}\b"),
)


def register_secret(value: str | SecretStr | None) -> str:
    """Remember ``value`` as secret and return it unwrapped (for passing to a client)."""
    if value is None:
        return ""
    raw = value.get_secret_value() if isinstance(value, SecretStr) else value
    if len(raw) >= _MIN_SECRET_LEN:
        with _lock:
            _secrets.add(raw)
    return raw


def registered_count() -> int:
    """How many secret values are known (for tests and diagnostics)."""
    with _lock:
        return len(_secrets)


def redact(text: str, extra: Iterable[str] = ()) -> str:
    """Return ``text`` with every known secret and credential-shaped token masked."""
    with _lock:
        values = sorted(_secrets | {e for e in extra if len(e) >= _MIN_SECRET_LEN}, key=len)
    for value in reversed(values):  # longest first so substrings don't leave tails
        if value in text:
            text = text.replace(value, MASK)
    text = _PATTERNS[0].sub(lambda m: f"{m.group(1)}:{MASK}@", text)
    text = _PATTERNS[1].sub(lambda m: f"{m.group(1)}{MASK}", text)
    for pattern in _PATTERNS[2:]:
        text = pattern.sub(MASK, text)
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that masks secrets in the rendered message of every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        _scrub(record)
        return True


def _scrub(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a broken format string must not drop the record
        return
    cleaned = redact(message)
    if cleaned != message:
        record.msg = cleaned
        record.args = None


_installed = False


def install_log_redaction() -> None:
    """Scrub every log record at creation, whichever logger or handler it goes to.

    A record factory (rather than a filter on some loggers) also covers records that
    propagate from child loggers and handlers Prefect configures later, such as the
    handler that ships run logs to the Prefect API.
    """
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        _scrub(record)
        return record

    logging.setLogRecordFactory(factory)
    _installed = True
