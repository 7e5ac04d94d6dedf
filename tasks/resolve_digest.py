"""Resolve an image tag to the immutable digest the registry holds for it now.

Everything after this point deploys ``repository@sha256:...``; a tag is only a way to
name which digest was meant at the time of the push. The Prefect task around it is
:func:`tasks.steps.image.resolve_digest`.
"""

from __future__ import annotations

from shipyard.core.errors import ConfigError
from shipyard.core.oci import require_registry_host
from shipyard.core.registry import RegistryAccess, RegistryAuth, open_client

__all__ = ["resolve_digest_of"]


def resolve_digest_of(image: str, tag: str, credentials: RegistryAccess | None) -> str:
    """The digest of ``image:tag``; ConfigError when the registry has no such tag.

    ``credentials`` are used only when they are for the image's registry; otherwise the
    registry is read anonymously.
    """
    registry, path = require_registry_host(image)
    creds = credentials if credentials is not None and credentials.registry == registry else None
    with open_client(creds or RegistryAuth.for_registry(registry)) as client:
        found = client.manifest(path, tag)
    if found is None:
        raise ConfigError(f"{image}:{tag} does not exist in the registry")
    return found[0]
