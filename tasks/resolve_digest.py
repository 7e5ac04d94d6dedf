"""Resolve an image tag to the immutable digest the registry holds for it now, and read
what an image says about itself (its labels, the source revision it was built from).

Everything after this point deploys ``repository@sha256:...``; a tag is only a way to
name which digest was meant at the time of the push. The Prefect tasks around these
are :func:`tasks.steps.image.resolve_digest` and :func:`tasks.steps.image.image_revision`.
"""

from __future__ import annotations

from shipyard.core.errors import ConfigError
from shipyard.core.oci import require_registry_host
from shipyard.core.registry import RegistryAccess, RegistryAuth, RegistryClient, open_client

__all__ = ["REVISION_LABEL", "image_labels_of", "image_revision_of", "resolve_digest_of"]

REVISION_LABEL = "org.opencontainers.image.revision"


def _client(registry: str, credentials: RegistryAccess | None) -> RegistryClient:
    """A client for ``registry``: the credentials when they are for it, else anonymous."""
    creds = credentials if credentials is not None and credentials.registry == registry else None
    return open_client(creds or RegistryAuth.for_registry(registry))


def resolve_digest_of(image: str, tag: str, credentials: RegistryAccess | None) -> str:
    """The digest of ``image:tag``; ConfigError when the registry has no such tag.

    ``credentials`` are used only when they are for the image's registry; otherwise the
    registry is read anonymously. A missing tag or digest (MANIFEST_UNKNOWN) is a
    ConfigError: permanent, never retried.
    """
    registry, path = require_registry_host(image)
    with _client(registry, credentials) as client:
        found = client.manifest(path, tag)
    if found is None:
        raise ConfigError(f"{image}:{tag} does not exist in the registry (MANIFEST_UNKNOWN)")
    return found[0]


def image_labels_of(
    image: str, reference: str, credentials: RegistryAccess | None
) -> dict[str, str]:
    """The labels of ``image`` at ``reference`` (a tag or ``sha256:`` digest), read from
    its config blob in the registry; ConfigError when the image does not exist."""
    registry, path = require_registry_host(image)
    with _client(registry, credentials) as client:
        labels = client.image_labels(path, reference)
    if labels is None:
        raise ConfigError(f"{image}@{reference} does not exist in the registry (MANIFEST_UNKNOWN)")
    return labels


def image_revision_of(image: str, reference: str, credentials: RegistryAccess | None) -> str | None:
    """The source commit an image was built from: its ``org.opencontainers.image.revision``
    label (``shipyard build`` sets it), or None when the image has no such label."""
    revision = image_labels_of(image, reference, credentials).get(REVISION_LABEL, "").strip()
    return revision or None
