"""image-poll's tag selection (pure) and tag listing against the real registry, plain and
behind token auth (the one bearer-token exchange of shipyard.core.registry)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError

from shipyard.core.errors import ConfigError, PermanentError, TransientError
from tasks.poll_tags import TagPolicy, list_tags, newest_allowed_tag, parse_version, select_tag
from tests.fixtures.simcluster import LocalRegistry
from tests.fixtures.token_registry import TokenIssuer, push_with_token, start_token_registry

TAGS = ["latest", "1.0.0", "1.2.0", "1.10.0", "v1.11.0-rc.1", "2.0.0", "main-abc123", "1.9"]


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (TagPolicy(semver=">=1.0.0,<2"), "1.10.0"),
        (TagPolicy(semver="^1.2"), "1.10.0"),
        (TagPolicy(semver="~1.2.0"), "1.2.0"),
        (TagPolicy(semver=">=1.0.0"), "2.0.0"),
        (TagPolicy(semver=">=1.0.0,<2", prereleases=True), "v1.11.0-rc.1"),
        (TagPolicy(semver="<1"), None),
        (TagPolicy(allow=r"main-[0-9a-f]+"), "main-abc123"),
        (TagPolicy(semver=">=1", ignore=["2\\..*", "latest"]), "1.10.0"),
        (TagPolicy(), "v1.11.0-rc.1"),  # no semver: lexical max, 'latest' ignored by default
    ],
)
def test_select_tag(policy: TagPolicy, expected: str | None) -> None:
    assert select_tag(TAGS, policy) == expected


def test_semver_orders_numerically_not_lexically() -> None:
    assert select_tag(["1.9.0", "1.10.0", "1.2.0"], TagPolicy(semver=">=1")) == "1.10.0"


def test_parse_version() -> None:
    assert str(parse_version("v1.2")) == "1.2.0"
    assert parse_version("latest") is None
    assert parse_version("1.2.3.4") is None


def test_bad_policy_is_refused() -> None:
    with pytest.raises(ValidationError, match="not understood"):
        TagPolicy(semver="about 1.x")


NUM = r"(0|[1-9][0-9]?)"


@given(st.lists(st.from_regex(rf"{NUM}\.{NUM}\.{NUM}", fullmatch=True), min_size=1))
def test_selected_tag_is_the_maximum(tags: list[str]) -> None:
    picked = select_tag(tags, TagPolicy(semver=">=0.0.0"))
    assert picked is not None
    assert all(parse_version(t) <= parse_version(picked) for t in tags)  # type: ignore[operator]


def test_lists_every_tag_across_pages(oci_registry: Any) -> None:
    for tag in ("1.0.0", "1.1.0", "1.2.0", "2.0.0-rc.1", "latest"):
        oci_registry.push_image("shop/poll", tag)
    tags = list_tags(oci_registry.host, "shop/poll", insecure=True, page_size=2)
    assert sorted(tags) == ["1.0.0", "1.1.0", "1.2.0", "2.0.0-rc.1", "latest"]
    assert select_tag(tags, TagPolicy(semver=">=1")) == "1.2.0"


def test_unknown_repository_is_a_clear_error(oci_registry: Any) -> None:
    with pytest.raises(ConfigError, match="repository not found"):
        list_tags(oci_registry.host, "shop/none", insecure=True)


def test_unreachable_registry_is_transient() -> None:
    with pytest.raises(TransientError, match="unreachable"):
        list_tags("127.0.0.1:1", "shop/x", insecure=True, timeout=1)


@pytest.fixture(scope="module")
def token_auth_registry() -> Iterator[tuple[LocalRegistry, TokenIssuer]]:
    """A real registry that only answers bearer tokens from its issuer (basic-auth login)."""
    registry, issuer, server = start_token_registry(("carol", "pw-" + uuid.uuid4().hex))
    try:
        yield registry, issuer
    finally:
        server.shutdown()
        server.server_close()
        registry.stop()


def test_lists_tags_behind_token_auth_across_pages(
    token_auth_registry: tuple[LocalRegistry, TokenIssuer],
) -> None:
    registry, issuer = token_auth_registry
    for tag in ("0.9.0", "1.0.0", "1.1.0"):
        push_with_token(registry, issuer, "shop/tokened", tag)
    user, password = issuer.user
    before = issuer.issued
    tags = list_tags(
        registry.host,
        "shop/tokened",
        username=user,
        password=SecretStr(password),
        insecure=True,
        page_size=2,
    )
    assert sorted(tags) == ["0.9.0", "1.0.0", "1.1.0"]
    assert issuer.issued == before + 1  # one token, kept for the second page
    picked = newest_allowed_tag(
        registry.host,
        "shop/tokened",
        TagPolicy(semver="<1.1"),
        username=user,
        password=SecretStr(password),
        insecure=True,
    )
    assert picked == "1.0.0"


def test_token_auth_refusal_is_permanent(
    token_auth_registry: tuple[LocalRegistry, TokenIssuer],
) -> None:
    registry, _ = token_auth_registry
    with pytest.raises(PermanentError, match="refused"):
        list_tags(registry.host, "shop/tokened", insecure=True)
    with pytest.raises(PermanentError, match="refused"):
        list_tags(
            registry.host,
            "shop/tokened",
            username="carol",
            password=SecretStr("wrong"),
            insecure=True,
        )
