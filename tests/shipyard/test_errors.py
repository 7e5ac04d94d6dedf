"""The error split and the one retry predicate every task uses."""

from __future__ import annotations

import errno

import httpx
import pytest

from shipyard.core.errors import (
    ConfigError,
    PermanentError,
    PolicyError,
    TransientError,
    classify_http_status,
    is_transient,
)


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_transient_statuses(status: int) -> None:
    assert classify_http_status(status) is TransientError


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
def test_permanent_statuses(status: int) -> None:
    assert classify_http_status(status) is PermanentError


def test_success_is_no_error() -> None:
    assert classify_http_status(204) is None


def test_own_errors_say_what_they_are() -> None:
    assert is_transient(TransientError("registry busy", retry_after=3))
    assert not is_transient(PermanentError("401 from registry"))
    assert not is_transient(ConfigError("bad catalog"))
    assert not is_transient(PolicyError("CRITICAL CVE-2024-0001 blocks"))


def test_network_failures_are_transient() -> None:
    assert is_transient(TimeoutError())
    assert is_transient(ConnectionResetError())
    assert is_transient(OSError(errno.ECONNREFUSED, "refused"))
    assert is_transient(httpx.ConnectError("refused"))
    assert is_transient(httpx.ReadTimeout("slow"))


def test_http_errors_from_real_responses() -> None:
    request = httpx.Request("GET", "http://registry.invalid/v2/")
    for status, expected in ((503, True), (429, True), (403, False), (404, False)):
        response = httpx.Response(status, request=request)
        exc = httpx.HTTPStatusError("x", request=request, response=response)
        assert is_transient(exc) is expected, status


def test_unknown_exceptions_are_not_retried() -> None:
    assert not is_transient(ValueError("a bug"))
    assert not is_transient(KeyError("missing"))


def test_error_message_and_hint() -> None:
    exc = ConfigError("no app 'cart'", hint="known: shop")
    assert str(exc) == "no app 'cart' (known: shop)"
    assert exc.message == "no app 'cart'"
