"""The one shape every registry webhook is reduced to, and the errors parsers raise.

Each source's parser turns its own webhook body into a list of :class:`ImagePushed`.
Every field is a string and always present (empty when the registry does not say),
because a Prefect deployment trigger whose Jinja template names a missing payload key
silently creates no flow run.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Literal

from shipyard.core.errors import PermanentError
from shipyard.core.oci import ImageRef

Source = Literal["distribution", "harbor", "dockerhub", "ghcr", "ecr"]
SOURCES: tuple[Source, ...] = ("distribution", "harbor", "dockerhub", "ghcr", "ecr")

# Fixed namespace so the same push always maps to the same Prefect event id, across
# retries by the registry, bridge restarts and spool replays: Prefect drops an event
# whose id it has already stored.
EVENT_ID_NAMESPACE = uuid.UUID("6f0a7c1e-4d0b-5b8e-9a51-3c2f6d1b7e40")


class PayloadError(PermanentError):
    """The body is not JSON, or not the shape this source documents (HTTP 400)."""


@dataclass(frozen=True, slots=True)
class ImagePushed:
    """One image reference that was pushed to a registry.

    ``delivery_id`` is the sender's own id for this notification when it has one
    (distribution event id, GitHub delivery, EventBridge id); it only feeds the
    dedupe key and is not part of the public payload.
    """

    registry: str
    repository: str
    tag: str
    digest: str
    source: str
    pushed_at: str
    delivery_id: str = ""
    actor: str = ""
    media_type: str = ""

    @property
    def image(self) -> str:
        """The full reference, ``registry/repository[:tag][@digest]``."""
        return str(ImageRef(f"{self.registry}/{self.repository}", self.tag, self.digest))

    @property
    def dedupe_key(self) -> str:
        """Identity of this notification: a redelivery has the same key, a new push not.

        The sender's delivery id when there is one; otherwise what was pushed and when,
        so that a later re-push of the same tag (Docker Hub sends no digest) is new.
        """
        if self.delivery_id:
            return f"{self.source}:{self.delivery_id}:{self.repository}:{self.tag}"
        return f"{self.source}:{self.image}#{self.pushed_at}"

    @property
    def digest_key(self) -> str:
        """What was pushed, whatever it was tagged: ``registry/repository@digest``.

        CI often pushes one digest under several tags (``<sha>`` and ``v2``); every tag
        is a notification of its own, but they are one change to deliver. Empty when
        the registry did not say the digest (then only :attr:`dedupe_key` applies).
        """
        return f"{self.registry}/{self.repository}@{self.digest}" if self.digest else ""

    @property
    def event_id(self) -> str:
        """Deterministic Prefect event id derived from :attr:`dedupe_key`."""
        return str(uuid.uuid5(EVENT_ID_NAMESPACE, self.dedupe_key))

    def public(self) -> dict[str, str]:
        """The fields callers and the Prefect payload see (no delivery id)."""
        data = asdict(self)
        data.pop("delivery_id")
        data["image"] = self.image
        return data


def require_mapping(value: object, where: str) -> dict[str, object]:
    """``value`` as a JSON object, or a PayloadError naming ``where``."""
    if not isinstance(value, dict):
        raise PayloadError(f"{where} must be a JSON object, got {_kind(value)}")
    return value


def require_list(value: object, where: str) -> list[object]:
    """``value`` as a JSON array, or a PayloadError naming ``where``."""
    if not isinstance(value, list):
        raise PayloadError(f"{where} must be a JSON array, got {_kind(value)}")
    return value


def require_str(mapping: dict[str, object], key: str, where: str) -> str:
    """A required non-empty string field, or a PayloadError naming it."""
    value = mapping.get(key)
    if not isinstance(value, str) or not value:
        raise PayloadError(f"{where}.{key} must be a non-empty string")
    return value


def optional_str(mapping: dict[str, object], key: str) -> str:
    """An optional string field: empty string when missing or not a string."""
    value = mapping.get(key)
    return value if isinstance(value, str) else ""


def timestamp(value: object) -> str:
    """Normalise a registry time (RFC 3339 string or Unix seconds) to ISO 8601 UTC.

    Unparseable strings are kept verbatim rather than rejected: the push still
    happened, and the time is informational.
    """
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, int | float):
        return datetime.fromtimestamp(float(value), tz=UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, str) and value:
        text = value.strip()
        try:
            parsed = datetime.fromisoformat(_trim_fraction(text.replace("Z", "+00:00")))
        except ValueError:
            return text
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return ""


def _trim_fraction(text: str) -> str:
    """Cut fractional seconds to 6 digits (Go writes nanoseconds; Python reads micro)."""
    head, dot, rest = text.partition(".")
    if not dot:
        return text
    digits = len(rest) - len(rest.lstrip("0123456789"))
    return f"{head}.{rest[: min(digits, 6)]}{rest[digits:]}"


def _kind(value: object) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), "a number"
    )
