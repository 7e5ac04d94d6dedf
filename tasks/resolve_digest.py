"""Resolve an image tag to the immutable digest the registry holds for it now.

Everything after this point deploys ``repository@sha256:...``; a tag is only a way to
name which digest was meant at the time of the push.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE as NO_CACHE

from blocks.registry import RegistryCredentials
from shipyard.core.errors import ConfigError, retry_condition


def split_image(image: str) -> tuple[str, str]:
    """``registry/path`` -> (registry, path); ConfigError when there is no registry host."""
    host, _, path = image.partition("/")
    if not path or not ("." in host or ":" in host or host == "localhost"):
        raise ConfigError(f"image {image!r} must start with its registry host")
    return host, path


def resolve_digest_of(image: str, tag: str, credentials: RegistryCredentials | None) -> str:
    """The digest of ``image:tag``; ConfigError when the registry has no such tag."""
    registry, path = split_image(image)
    creds = credentials if credentials is not None and credentials.registry == registry else None
    creds = creds or RegistryCredentials.for_registry(registry)
    with creds.get_client() as client:
        found = client.manifest(path, tag)
    if found is None:
        raise ConfigError(f"{image}:{tag} does not exist in the registry")
    return found[0]


@task(
    name="resolve-digest",
    cache_policy=NO_CACHE,
    retries=3,
    retry_delay_seconds=[1, 5, 15],
    retry_condition_fn=retry_condition,
)
def resolve_digest(image: str, tag: str, credentials: RegistryCredentials | None = None) -> str:
    """Prefect task around :func:`resolve_digest_of`."""
    return resolve_digest_of(image, tag, credentials)
