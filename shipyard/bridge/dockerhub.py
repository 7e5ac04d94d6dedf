"""Docker Hub repository webhooks.

Docker Hub posts ``push_data`` (tag, pusher, time) and ``repository`` for every push.
It sends no digest and no delivery id and cannot sign its requests, so the digest is
empty and the bridge authenticates the URL's ``?token=`` instead.
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

SOURCE = "dockerhub"
REGISTRY = "docker.io"


def parse(doc: object, headers: Mapping[str, str]) -> list[ImagePushed]:
    """The one push a Docker Hub webhook describes; [] when it names no tag."""
    body = require_mapping(doc, "body")
    if "push_data" not in body or "repository" not in body:
        raise PayloadError("body needs push_data and repository: not a Docker Hub webhook")
    push = require_mapping(body["push_data"], "body.push_data")
    repo = require_mapping(body["repository"], "body.repository")
    name = optional_str(repo, "repo_name")
    if not name:
        name = "/".join(
            (
                require_str(repo, "namespace", "body.repository"),
                require_str(repo, "name", "body.repository"),
            )
        )
    tag = optional_str(push, "tag")
    if not tag:
        return []
    return [
        ImagePushed(
            registry=REGISTRY,
            repository=name,
            tag=tag,
            digest="",
            source=SOURCE,
            pushed_at=timestamp(push.get("pushed_at")),
            actor=optional_str(push, "pusher"),
        )
    ]
