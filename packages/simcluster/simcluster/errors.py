"""Kubernetes API errors as the real API server reports them: a ``Status`` object.

Every failure the simulator returns goes through :class:`ApiError`, so clients (the
official Python client, kubectl) see the same ``code``/``reason``/``details`` they would
get from a real API server, and never a bare 500 with a traceback.
"""

from __future__ import annotations

from typing import Any

JSON = dict[str, Any]


class ApiError(Exception):
    """A failed API call, rendered as a ``Status`` object with an HTTP code."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: JSON | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}

    def status(self) -> JSON:
        """The ``Status`` body a real API server would send for this error."""
        body: JSON = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def _details(plural: str, group: str, name: str | None) -> JSON:
    details: JSON = {"kind": plural}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    return details


def _qualified(plural: str, group: str) -> str:
    return f"{plural}.{group}" if group else plural


def not_found(plural: str, group: str, name: str) -> ApiError:
    """404 NotFound for a named object, e.g. ``pods "web" not found``."""
    return ApiError(
        404,
        "NotFound",
        f'{_qualified(plural, group)} "{name}" not found',
        _details(plural, group, name),
    )


def already_exists(plural: str, group: str, name: str) -> ApiError:
    """409 AlreadyExists on create of an existing name."""
    return ApiError(
        409,
        "AlreadyExists",
        f'{_qualified(plural, group)} "{name}" already exists',
        _details(plural, group, name),
    )


def conflict(plural: str, group: str, name: str, why: str) -> ApiError:
    """409 Conflict: optimistic concurrency failed (stale resourceVersion, precondition)."""
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {_qualified(plural, group)} "{name}": {why}',
        _details(plural, group, name),
    )


STALE = (
    "the object has been modified; please apply your changes to the latest version and try again"
)


def invalid(kind: str, group: str, name: str, causes: list[tuple[str, str, str]]) -> ApiError:
    """422 Invalid with field causes ``(reason, field, message)``, as validation reports."""
    qualified = f"{kind}.{group}" if group else kind
    text = ", ".join(f"{field}: {message}" for _, field, message in causes)
    if len(causes) > 1:
        text = f"[{text}]"  # as Go's aggregate error prints several
    details: JSON = {
        "name": name,
        "kind": kind,
        "causes": [
            {"reason": reason, "message": message, "field": field}
            for reason, field, message in causes
        ],
    }
    if group:
        details["group"] = group
    label = f'{qualified} "{name}"' if name else qualified
    return ApiError(422, "Invalid", f"{label} is invalid: {text}", details)


def bad_request(message: str) -> ApiError:
    """400 BadRequest: the body or a parameter cannot be understood."""
    return ApiError(400, "BadRequest", message)


def method_not_allowed() -> ApiError:
    """405 for a verb the resource does not support."""
    return ApiError(
        405,
        "MethodNotAllowed",
        "the server does not allow this method on the requested resource",
    )


def unsupported_media_type(content_type: str) -> ApiError:
    """415 for a PATCH content type the server does not understand."""
    return ApiError(
        415,
        "UnsupportedMediaType",
        f'the body of the request was in an unknown format: "{content_type}"',
    )


def gone(requested: int, oldest: int) -> ApiError:
    """410 Expired: a watch asked for history that has been compacted away."""
    return ApiError(410, "Expired", f"too old resource version: {requested} ({oldest})")


def forbidden(message: str, details: JSON | None = None) -> ApiError:
    """403 Forbidden, e.g. creating in a terminating namespace."""
    return ApiError(403, "Forbidden", message, details)


def endpoint_not_found() -> ApiError:
    """404 for a path the server does not serve (real servers say this too)."""
    return ApiError(404, "NotFound", "the server could not find the requested resource")
