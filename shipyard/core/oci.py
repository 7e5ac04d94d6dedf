"""OCI image references: the one parser every step uses.

A reference is ``[registry/]path[:tag][@digest]``, e.g.
``127.0.0.1:5000/shop/cart:1.2@sha256:...``. Two readings exist, and both are here so
no step writes its own:

* :func:`split_reference` cuts a string into name, tag and digest without judging it:
  for manifests written by others, where an odd reference must pass through untouched;
* :func:`parse_reference` is the same cut followed by the grammar of
  distribution/reference (lower-case path components, tag and digest syntax): for
  deciding whether a string *is* an image reference.

A name's registry follows Docker's rule (:func:`split_repository`): a first component
with a dot, a colon or ``localhost`` is a registry host; anything else lives on Docker
Hub (``docker.io``, with ``library/`` for one-part names). Steps that must talk to an
explicit registry use :func:`require_registry_host`. The validators raise
:class:`~shipyard.core.errors.ConfigError` with a message a user can act on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shipyard.core.errors import ConfigError

__all__ = [
    "DIGEST_RE",
    "DOCKER_HUB",
    "NAME_RE",
    "TAG_RE",
    "ImageRef",
    "has_registry_host",
    "normalize_name",
    "parse_reference",
    "require_registry_host",
    "same_name",
    "split_reference",
    "split_repository",
    "validate_digest",
    "validate_name",
    "validate_tag",
]

DOCKER_HUB = "docker.io"

# --- the grammar of distribution/reference ---------------------------------------------

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|-+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+"

NAME_RE = re.compile(rf"^{_NAME}$")
TAG_RE = re.compile(rf"^{_TAG}$")
DIGEST_RE = re.compile(rf"^{_DIGEST}$")
_HEX_DIGESTS = {"sha256": 64, "sha512": 128}
_MAX_NAME = 255


@dataclass(frozen=True)
class ImageRef:
    """A parsed image reference: repository name plus optional tag and digest."""

    name: str
    tag: str | None = None
    digest: str | None = None

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text

    @property
    def registry(self) -> str:
        """The registry host[:port] of :attr:`name` (``docker.io`` when it names none)."""
        return split_repository(self.name)[0]

    @property
    def path(self) -> str:
        """The repository path inside the registry (``shop/cart``, ``library/nginx``)."""
        return split_repository(self.name)[1]


def split_reference(text: str) -> ImageRef:
    """``name[:tag][@digest]`` cut into its parts, nothing validated.

    The digest is everything after the first ``@``; the tag is what follows a colon in
    the last path component (a colon before a ``/`` is a registry port). A trailing
    ``:`` or ``@`` gives an empty tag or digest, which :func:`parse_reference` refuses.
    """
    name, at, digest = text.partition("@")
    tag: str | None = None
    if ":" in name.rsplit("/", 1)[-1]:
        name, _, tag = name.rpartition(":")
    return ImageRef(name, tag, digest if at else None)


def parse_reference(text: str) -> ImageRef | None:
    """Parse ``repo[:tag][@digest]``; None when ``text`` is not an image reference."""
    ref = split_reference(text.strip())
    if len(ref.name) > _MAX_NAME or not NAME_RE.match(ref.name):
        return None
    if ref.tag is not None and not TAG_RE.match(ref.tag):
        return None
    if ref.digest is not None and not DIGEST_RE.match(ref.digest):
        return None
    return ref


def validate_name(name: str) -> str:
    """Return ``name`` if it is a valid image repository (no tag, no digest)."""
    if len(name) > _MAX_NAME or not NAME_RE.match(name):
        raise ConfigError(
            f"invalid image name {name!r}: expected [registry/]path/name in lower case, "
            "without tag or digest"
        )
    return name


def validate_tag(tag: str) -> str:
    """Return ``tag`` if it is a valid OCI tag (``[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}``)."""
    if not TAG_RE.match(tag):
        raise ConfigError(
            f"invalid tag {tag!r}: up to 128 of [A-Za-z0-9_.-], not starting with '.' or '-'"
        )
    return tag


def validate_digest(digest: str) -> str:
    """Return ``digest`` if it is a digest a registry can serve: ``sha256:<64 hex>`` or
    ``sha512:<128 hex>``.

    The OCI image spec registers only these two algorithms; anything else (``md5:...``)
    matches the reference grammar but names no content a registry would resolve, so a
    value we are about to pin is refused here rather than at pull time.
    """
    if not DIGEST_RE.match(digest):
        raise ConfigError(
            f"invalid digest {digest!r}: expected algorithm:hex, e.g. sha256:<64 hex>"
        )
    algorithm, _, encoded = digest.partition(":")
    size = _HEX_DIGESTS.get(algorithm)
    if size is None:
        raise ConfigError(
            f"invalid digest {digest!r}: algorithm {algorithm!r} is not one OCI registers "
            "(use sha256 or sha512)"
        )
    if not re.fullmatch(rf"[a-f0-9]{{{size}}}", encoded):
        raise ConfigError(
            f"invalid digest {digest!r}: {algorithm} needs {size} lower-case hex digits"
        )
    return digest


# --- registry host and repository path ------------------------------------------------


def has_registry_host(component: str) -> bool:
    """True when a name's first component is a registry host (Docker's rule)."""
    return "." in component or ":" in component or component == "localhost"


def split_repository(repository: str) -> tuple[str, str]:
    """``"127.0.0.1:5000/shop/cart"`` -> ``("127.0.0.1:5000", "shop/cart")``.

    A first component with a dot, a colon or ``localhost`` is a registry host; otherwise
    the image lives on Docker Hub (``docker.io``, ``library/`` for one-part names).
    """
    first, sep, rest = repository.partition("/")
    if sep and has_registry_host(first):
        return first, rest
    return DOCKER_HUB, repository if "/" in repository else f"library/{repository}"


_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})


def normalize_name(name: str) -> str:
    """The fully qualified form of a repository name, as Docker resolves it.

    ``mongo``, ``library/mongo``, ``docker.io/library/mongo`` and
    ``index.docker.io/library/mongo`` all become ``docker.io/library/mongo``; a name with
    a registry host of its own is returned as it is.
    """
    registry, path = split_repository(name)
    if registry in _HUB_ALIASES:
        registry = DOCKER_HUB
        if "/" not in path:
            path = f"library/{path}"
    return f"{registry}/{path}"


def same_name(a: str, b: str) -> bool:
    """True when two repository names denote the same image (``mongo`` and
    ``docker.io/library/mongo``); exact otherwise, so ``shop/cart`` never matches
    ``shop/cart-migrate``."""
    return a == b or normalize_name(a) == normalize_name(b)


def require_registry_host(image: str) -> tuple[str, str]:
    """``registry/path`` -> ``(registry, path)``; ConfigError when no registry host is named.

    For steps that talk to the registry API themselves, where Docker Hub's implicit
    default would be a surprise rather than a convenience.
    """
    host, _, path = image.partition("/")
    if not path or not has_registry_host(host):
        raise ConfigError(
            f"image {image!r} must start with its registry host, e.g. registry.example.com/x/app"
        )
    return host, path
