"""The one OCI image-reference parser (shipyard.core.oci) and the loopback rule
(shipyard.core.net): the readings every step relies on."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shipyard.core.errors import ConfigError
from shipyard.core.net import is_loopback
from shipyard.core.oci import (
    ImageRef,
    parse_reference,
    require_registry_host,
    split_reference,
    split_repository,
    validate_digest,
    validate_name,
    validate_tag,
)

DIGEST = "sha256:" + "ab" * 32

# distribution/reference's grammar as one regular expression: the oracle that
# parse_reference (split, then validate each part) must agree with on every string.
_PATH = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?"
ORACLE = re.compile(
    rf"^(?P<name>(?:{_DOMAIN}/)?{_PATH}(?:/{_PATH})*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+))?$"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nginx", ImageRef("nginx")),
        ("nginx:1.27", ImageRef("nginx", "1.27")),
        ("127.0.0.1:5000/shop/cart:1.2", ImageRef("127.0.0.1:5000/shop/cart", "1.2")),
        (f"shop/cart@{DIGEST}", ImageRef("shop/cart", None, DIGEST)),
        (f"r.example/shop/cart:v1@{DIGEST}", ImageRef("r.example/shop/cart", "v1", DIGEST)),
        ("  shop/cart:1  ", ImageRef("shop/cart", "1")),
        ("localhost:5000/a", ImageRef("localhost:5000/a")),
        ("Shop/Cart:1", None),
        ("shop/cart:", None),
        ("shop/cart@", None),
        ("shop/cart:-x", None),
        ("a/b:1:2", None),
        ("", None),
        ("a" * 256, None),
        ("not an image", None),
    ],
)
def test_parse_reference(text: str, expected: ImageRef | None) -> None:
    assert parse_reference(text) == expected


@given(
    st.one_of(
        st.from_regex(ORACLE, fullmatch=True),
        st.text(alphabet="aZ09.:/@_-", max_size=30),
    )
)
def test_parse_reference_agrees_with_the_grammar(text: str) -> None:
    match = ORACLE.match(text.strip())
    ref = parse_reference(text)
    if match is None or len(match["name"]) > 255:
        assert ref is None
    else:
        assert ref == ImageRef(match["name"], match["tag"], match["digest"])
        assert str(ref) == text.strip()


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("Nginx:Latest", ("Nginx", "Latest", None)),  # not valid, still cut
        ("host:5000/app", ("host:5000/app", None, None)),
        ("host:5000/app:1@x", ("host:5000/app", "1", "x")),
        ("app:", ("app", "", None)),
        ("app@", ("app", None, "")),
    ],
)
def test_split_reference_never_judges(text: str, parts: tuple[str, str | None, str | None]) -> None:
    ref = split_reference(text)
    assert (ref.name, ref.tag, ref.digest) == parts


def test_registry_and_path_follow_dockers_rule() -> None:
    assert split_repository("127.0.0.1:5000/a/b") == ("127.0.0.1:5000", "a/b")
    assert split_repository("localhost/a") == ("localhost", "a")
    assert split_repository("nginx") == ("docker.io", "library/nginx")
    assert split_repository("shop/cart") == ("docker.io", "shop/cart")
    ref = split_reference(f"registry.example/shop/cart:1@{DIGEST}")
    assert (ref.registry, ref.path) == ("registry.example", "shop/cart")


def test_require_registry_host() -> None:
    assert require_registry_host("127.0.0.1:5000/shop/app") == ("127.0.0.1:5000", "shop/app")
    for image in ("shop/app", "nginx", "registry.example"):
        with pytest.raises(ConfigError, match="must start with its registry host"):
            require_registry_host(image)


def test_validators_name_the_problem() -> None:
    assert validate_name("r.example:5000/shop/cart") == "r.example:5000/shop/cart"
    assert validate_tag("v1.2_3") == "v1.2_3"
    assert validate_digest(DIGEST) == DIGEST
    with pytest.raises(ConfigError, match="invalid image name"):
        validate_name("shop/cart:1")
    with pytest.raises(ConfigError, match="invalid tag"):
        validate_tag(".hidden")
    with pytest.raises(ConfigError, match="needs 64 lower-case hex digits"):
        validate_digest("sha256:abc")


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("localhost", True),
        ("localhost:5000", True),
        ("127.0.0.1:5000", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("10.0.0.1:5000", False),
        ("registry.example.com", False),
        ("harbor.local:443", False),
    ],
)
def test_is_loopback(address: str, loopback: bool) -> None:
    assert is_loopback(address) is loopback
