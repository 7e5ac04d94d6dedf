"""CNCF Distribution (``docker-registry``) notifications.

The registry POSTs an envelope ``{"events": [...]}`` for pushes and pulls of blobs and
manifests. Only a manifest push with a tag is a new image a delivery can act on; blob
pushes, pulls and untagged manifest pushes (the per-platform children an index push
uploads first) are acknowledged and ignored.
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

SOURCE = "distribution"


def is_manifest(target: dict[str, object]) -> bool:
    """True when the event's target is a manifest (image, index or list), not a blob."""
    media_type = optional_str(target, "mediaType")
    if "manifest" in media_type or "image.index" in media_type:
        return True
    return "/manifests/" in optional_str(target, "url")


def parse(doc: object, headers: Mapping[str, str]) -> list[ImagePushed]:
    """Tagged manifest pushes in a notification envelope; PayloadError on a wrong shape."""
    envelope = require_mapping(doc, "body")
    if "events" not in envelope:
        raise PayloadError("body.events is missing: not a registry notification envelope")
    pushed: list[ImagePushed] = []
    for i, raw in enumerate(require_list(envelope["events"], "body.events")):
        where = f"body.events[{i}]"
        event = require_mapping(raw, where)
        if optional_str(event, "action") != "push":
            continue
        target = require_mapping(event.get("target"), f"{where}.target")
        if not is_manifest(target):
            continue
        tag = optional_str(target, "tag")
        if not tag:
            continue
        request = require_mapping(event.get("request", {}), f"{where}.request")
        actor = event.get("actor")
        pushed.append(
            ImagePushed(
                registry=require_str(request, "host", f"{where}.request"),
                repository=require_str(target, "repository", f"{where}.target"),
                tag=tag,
                digest=optional_str(target, "digest"),
                source=SOURCE,
                pushed_at=timestamp(event.get("timestamp")),
                delivery_id=optional_str(event, "id"),
                actor=optional_str(actor, "name") if isinstance(actor, dict) else "",
                media_type=optional_str(target, "mediaType"),
            )
        )
    return pushed
