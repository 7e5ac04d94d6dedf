"""Harbor webhooks (``PUSH_ARTIFACT``), in Harbor's default JSON and CloudEvents formats.

Harbor sends one notification per push with one resource per pushed reference. The
registry host is not a field of its own: it is the first segment of ``resource_url``
(``harbor.example.com/library/nginx:1.25``). Every other event type (pulls, deletes,
scans, quota, replication) is ignored.
"""

from __future__ import annotations

from collections.abc import Mapping

from shipyard.bridge.model import (
    ImagePushed,
    PayloadError,
    optional_str,
    require_list,
    require_mapping,
    require_str,
    timestamp,
)

SOURCE = "harbor"
PUSH_TYPES = frozenset({"PUSH_ARTIFACT", "harbor.artifact.pushed"})


def parse(doc: object, headers: Mapping[str, str]) -> list[ImagePushed]:
    """One ImagePushed per tagged resource of a push; [] for other event types."""
    body = require_mapping(doc, "body")
    kind = body.get("type")
    if not isinstance(kind, str):
        raise PayloadError("body.type must be a string (a Harbor event type)")
    if kind not in PUSH_TYPES:
        return []
    if "specversion" in body:  # CloudEvents: the default payload's event_data is `data`
        data = require_mapping(body.get("data"), "body.data")
        where, occurred, delivery = "body.data", body.get("time"), optional_str(body, "id")
    else:
        data = require_mapping(body.get("event_data"), "body.event_data")
        where, occurred, delivery = "body.event_data", body.get("occur_at"), ""
    repo = require_mapping(data.get("repository"), f"{where}.repository")
    full_name = optional_str(repo, "repo_full_name") or "/".join(
        p for p in (optional_str(repo, "namespace"), optional_str(repo, "name")) if p
    )
    if not full_name:
        raise PayloadError(f"{where}.repository.repo_full_name must be a non-empty string")
    operator = optional_str(body, "operator") or optional_str(data, "operator")
    pushed: list[ImagePushed] = []
    for i, raw in enumerate(require_list(data.get("resources"), f"{where}.resources")):
        resource = require_mapping(raw, f"{where}.resources[{i}]")
        url = require_str(resource, "resource_url", f"{where}.resources[{i}]")
        tag = optional_str(resource, "tag")
        if not tag:
            continue
        pushed.append(
            ImagePushed(
                registry=url.split("://", 1)[-1].split("/", 1)[0],
                repository=full_name,
                tag=tag,
                digest=optional_str(resource, "digest"),
                source=SOURCE,
                pushed_at=timestamp(occurred),
                delivery_id=delivery,
                actor=operator,
            )
        )
    return pushed
