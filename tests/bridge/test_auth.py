"""Each source's authentication: good, bad and missing credentials."""

from __future__ import annotations

import pytest

from shipyard.bridge.auth import authenticate, github_signature

SECRET = b"s3cret-bridge-token-0123"
BODY = b'{"action":"published"}'


@pytest.mark.parametrize("source", ["distribution", "harbor", "ecr"])
@pytest.mark.parametrize(
    ("header", "ok"),
    [
        ("s3cret-bridge-token-0123", True),
        ("Bearer s3cret-bridge-token-0123", True),
        ("bearer  s3cret-bridge-token-0123 ", True),
        ("Bearer wrong", False),
        ("s3cret-bridge-token-012", False),
        ("Basic czNjcmV0", False),
        ("Bearer ", False),
        ("", False),
    ],
)
def test_authorization_header(source: str, header: str, ok: bool) -> None:
    headers = {"authorization": header} if header else {}
    assert authenticate(source, headers, {}, BODY, SECRET) is ok


def test_github_hmac_of_the_raw_body() -> None:
    good = github_signature(BODY, SECRET)
    assert good.startswith("sha256=") and len(good) == 7 + 64
    assert authenticate("ghcr", {"x-hub-signature-256": good}, {}, BODY, SECRET)
    assert not authenticate("ghcr", {"x-hub-signature-256": good}, {}, BODY + b" ", SECRET)
    assert not authenticate("ghcr", {"x-hub-signature-256": good[7:]}, {}, BODY, SECRET)
    assert not authenticate("ghcr", {}, {}, BODY, SECRET)
    # The Authorization header does not count for GitHub: it must sign.
    assert not authenticate("ghcr", {"authorization": SECRET.decode()}, {}, BODY, SECRET)


def test_dockerhub_query_token() -> None:
    assert authenticate("dockerhub", {}, {"token": SECRET.decode()}, BODY, SECRET)
    assert not authenticate("dockerhub", {}, {"token": "nope"}, BODY, SECRET)
    assert not authenticate("dockerhub", {}, {}, BODY, SECRET)
    assert not authenticate("dockerhub", {"authorization": SECRET.decode()}, {}, BODY, SECRET)


def test_non_ascii_header_does_not_crash() -> None:
    assert not authenticate("harbor", {"authorization": "Bearer ünïcode"}, {}, BODY, SECRET)
