"""Amazon ECR image actions, as EventBridge delivers them (e.g. through an API destination).

Only ``detail-type: ECR Image Action`` with ``action-type: PUSH`` and ``result: SUCCESS``
is a new image; failed pushes, deletes and other ECR events (scans, replication) are
ignored. The registry host is derived from the account and region.
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

SOURCE = "ecr"
DETAIL_TYPE = "ECR Image Action"


def parse(doc: object, headers: Mapping[str, str]) -> list[ImagePushed]:
    """The pushed image of a successful ECR PUSH action; [] for anything else."""
    body = require_mapping(doc, "body")
    kind = body.get("detail-type")
    if not isinstance(kind, str):
        raise PayloadError("body['detail-type'] must be a string: not an EventBridge event")
    detail = require_mapping(body.get("detail"), "body.detail")
    if kind != DETAIL_TYPE:
        return []
    if optional_str(detail, "action-type") != "PUSH" or optional_str(detail, "result") != "SUCCESS":
        return []
    tag = optional_str(detail, "image-tag")
    if not tag:
        return []
    account = require_str(body, "account", "body")
    region = require_str(body, "region", "body")
    return [
        ImagePushed(
            registry=f"{account}.dkr.ecr.{region}.amazonaws.com",
            repository=require_str(detail, "repository-name", "body.detail"),
            tag=tag,
            digest=optional_str(detail, "image-digest"),
            source=SOURCE,
            pushed_at=timestamp(body.get("time")),
            delivery_id=optional_str(body, "id"),
        )
    ]
