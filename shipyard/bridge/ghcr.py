"""GitHub Container Registry, through GitHub's ``registry_package`` webhook.

GitHub sends ``action: published`` when a container version is pushed (older hooks
send the same under ``package``). The tag and digest live in
``package_version.container_metadata.tag``; non-container packages, other actions,
untagged versions and the ``ping`` event are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping

from shipyard.bridge.model import (
    ImagePushed,
    PayloadError,
    optional_str,
    require_mapping,
    require_str,
    timestamp,
)
from shipyard.core.oci import split_reference

SOURCE = "ghcr"
REGISTRY = "ghcr.io"
EVENTS = frozenset({"registry_package", "package"})


def parse(doc: object, headers: Mapping[str, str]) -> list[ImagePushed]:
    """The published tag of a container package version; [] for anything else."""
    body = require_mapping(doc, "body")
    event = headers.get("x-github-event", "")
    if event and event not in EVENTS:
        return []  # ping, or a hook subscribed to more than packages
    key = "registry_package" if "registry_package" in body else "package"
    if key not in body:
        if "zen" in body or "hook_id" in body:
            return []  # a ping without the event header
        raise PayloadError("body.registry_package is missing: not a GitHub package event")
    if optional_str(body, "action") != "published":
        return []
    package = require_mapping(body[key], f"body.{key}")
    kind = (optional_str(package, "package_type") or optional_str(package, "ecosystem")).lower()
    if kind not in {"container", "docker"}:
        return []
    version = require_mapping(package.get("package_version"), f"body.{key}.package_version")
    meta = version.get("container_metadata")
    tag_info = meta.get("tag") if isinstance(meta, dict) else None
    tag_info = tag_info if isinstance(tag_info, dict) else {}
    tag = optional_str(tag_info, "name")
    if not tag:
        return []
    digest = optional_str(tag_info, "digest") or optional_str(version, "version")
    repository = _repository(package, version, key)
    sender = body.get("sender")
    return [
        ImagePushed(
            registry=REGISTRY,
            repository=repository,
            tag=tag,
            digest=digest if digest.startswith("sha256:") else "",
            source=SOURCE,
            pushed_at=timestamp(version.get("updated_at") or package.get("updated_at")),
            delivery_id=headers.get("x-github-delivery", ""),
            actor=optional_str(sender, "login") if isinstance(sender, dict) else "",
        )
    ]


def _repository(package: dict[str, object], version: dict[str, object], key: str) -> str:
    """``owner/name`` as GHCR addresses it (lower case), from package_url when present."""
    url = optional_str(version, "package_url")
    if url.startswith(f"{REGISTRY}/"):
        return split_reference(url[len(REGISTRY) + 1 :]).name.lower()
    name = require_str(package, "name", f"body.{key}")
    owner = package.get("owner")
    namespace = optional_str(package, "namespace")
    if not namespace and isinstance(owner, dict):
        namespace = optional_str(owner, "login")
    if not namespace:
        raise PayloadError(f"body.{key}.namespace (or owner.login) must be a non-empty string")
    return f"{namespace}/{name}".lower()
