"""Golden cases for each source's parser: sample bodies in data/, expected pushes here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shipyard.bridge import distribution, dockerhub, ecr, ghcr, harbor
from shipyard.bridge.model import ImagePushed, PayloadError, timestamp

DATA = Path(__file__).parent / "data"


def load(name: str) -> object:
    return json.loads((DATA / name).read_text())


def public(pushed: list[ImagePushed]) -> list[dict[str, str]]:
    return [p.public() for p in pushed]


def test_distribution_only_tagged_manifest_pushes() -> None:
    events = distribution.parse(load("distribution_push.json"), {})
    assert public(events) == [
        {
            "registry": "127.0.0.1:5000",
            "repository": "shop/cart",
            "tag": "1.4.2",
            "digest": "sha256:" + "2" * 64,
            "source": "distribution",
            "pushed_at": "2026-11-28T00:30:02.500000Z",
            "actor": "ci",
            "media_type": "application/vnd.oci.image.manifest.v1+json",
            "image": "127.0.0.1:5000/shop/cart:1.4.2@sha256:" + "2" * 64,
        }
    ]
    assert events[0].delivery_id == "6a4f1d1e-3c84-4e8f-9d55-0b6a7f4ce002"


def test_distribution_blob_push_is_ignored() -> None:
    assert distribution.parse(load("distribution_blob_only.json"), {}) == []


def test_distribution_untagged_manifest_is_ignored() -> None:
    doc = load("distribution_push.json")
    assert isinstance(doc, dict)
    del doc["events"][1]["target"]["tag"]
    assert distribution.parse(doc, {}) == []


def test_harbor_push() -> None:
    assert public(harbor.parse(load("harbor_push.json"), {})) == [
        {
            "registry": "harbor.example.com:8443",
            "repository": "shop/payments",
            "tag": "2.0.0",
            "digest": "sha256:" + "5" * 64,
            "source": "harbor",
            "pushed_at": "2026-11-27T23:30:01Z",
            "actor": "robot$shop+ci",
            "media_type": "",
            "image": "harbor.example.com:8443/shop/payments:2.0.0@sha256:" + "5" * 64,
        }
    ]


def test_harbor_cloudevents_format() -> None:
    (event,) = harbor.parse(load("harbor_cloudevent.json"), {})
    assert (event.registry, event.repository, event.tag) == (
        "harbor.example.com",
        "shop/payments",
        "2.0.1",
    )
    assert event.pushed_at == "2026-11-27T23:30:05Z"
    assert event.delivery_id == "4b2f8c0e-9a43-4d7e-8f1b-7b1c2d3e4f50"


def test_harbor_pull_is_ignored() -> None:
    assert harbor.parse(load("harbor_pull.json"), {}) == []


def test_dockerhub_push_has_no_digest() -> None:
    assert public(dockerhub.parse(load("dockerhub_push.json"), {})) == [
        {
            "registry": "docker.io",
            "repository": "acme/cart",
            "tag": "v3.1.0",
            "digest": "",
            "source": "dockerhub",
            "pushed_at": "2026-11-27T23:30:10Z",
            "actor": "acme-ci",
            "media_type": "",
            "image": "docker.io/acme/cart:v3.1.0",
        }
    ]


def test_ghcr_published_container() -> None:
    headers = {"x-github-event": "registry_package", "x-github-delivery": "d-1"}
    assert public(ghcr.parse(load("ghcr_published.json"), headers)) == [
        {
            "registry": "ghcr.io",
            "repository": "octo-shop/catalog",
            "tag": "sha-0f3c9a1",
            "digest": "sha256:" + "7" * 64,
            "source": "ghcr",
            "pushed_at": "2026-11-27T23:30:10Z",
            "actor": "github-actions[bot]",
            "media_type": "",
            "image": "ghcr.io/octo-shop/catalog:sha-0f3c9a1@sha256:" + "7" * 64,
        }
    ]


def test_ghcr_without_package_url_uses_namespace_and_name() -> None:
    doc = load("ghcr_published.json")
    assert isinstance(doc, dict)
    del doc["registry_package"]["package_version"]["package_url"]
    (event,) = ghcr.parse(doc, {})
    assert event.repository == "octo-shop/catalog"


@pytest.mark.parametrize(
    ("mutate", "headers"),
    [
        (lambda d: d.update(action="updated"), {}),
        (lambda d: d["registry_package"].update(package_type="NPM", ecosystem="NPM"), {}),
        (lambda d: d["registry_package"]["package_version"]["container_metadata"].pop("tag"), {}),
        (lambda d: None, {"x-github-event": "ping"}),
    ],
    ids=["updated", "npm", "untagged", "ping-header"],
)
def test_ghcr_ignored(mutate: object, headers: dict[str, str]) -> None:
    doc = load("ghcr_published.json")
    mutate(doc)  # type: ignore[operator]
    assert ghcr.parse(doc, headers) == []


def test_ghcr_ping_body_is_ignored() -> None:
    assert ghcr.parse(load("ghcr_ping.json"), {}) == []


def test_ecr_push_success() -> None:
    assert public(ecr.parse(load("ecr_push.json"), {})) == [
        {
            "registry": "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
            "repository": "shop/orders",
            "tag": "2026.11.27",
            "digest": "sha256:" + "8" * 64,
            "source": "ecr",
            "pushed_at": "2026-11-27T23:30:20Z",
            "actor": "",
            "media_type": "",
            "image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop/orders:2026.11.27@sha256:"
            + "8" * 64,
        }
    ]


def test_ecr_failed_push_and_other_actions_are_ignored() -> None:
    assert ecr.parse(load("ecr_push_failed.json"), {}) == []
    doc = load("ecr_push.json")
    assert isinstance(doc, dict)
    doc["detail"]["action-type"] = "DELETE"
    assert ecr.parse(doc, {}) == []
    doc["detail-type"] = "ECR Image Scan"
    assert ecr.parse(doc, {}) == []


@pytest.mark.parametrize(
    ("parser", "doc", "message"),
    [
        (distribution.parse, [], "body must be a JSON object, got an array"),
        (distribution.parse, {"foo": 1}, "body.events is missing"),
        (distribution.parse, {"events": {}}, "body.events must be a JSON array"),
        (
            distribution.parse,
            {
                "events": [
                    {
                        "action": "push",
                        "target": {
                            "mediaType": "application/vnd.oci.image.manifest.v1+json",
                            "tag": "x",
                        },
                    }
                ]
            },
            "body.events[0].request.host must be a non-empty string",
        ),
        (harbor.parse, {"event_data": {}}, "body.type must be a string"),
        (harbor.parse, {"type": "PUSH_ARTIFACT"}, "body.event_data must be a JSON object"),
        (dockerhub.parse, {"push_data": {}}, "body needs push_data and repository"),
        (ghcr.parse, {"action": "published"}, "body.registry_package is missing"),
        (ecr.parse, {"detail": {}}, "body['detail-type'] must be a string"),
        (
            ecr.parse,
            {
                "detail-type": "ECR Image Action",
                "detail": {
                    "action-type": "PUSH",
                    "result": "SUCCESS",
                    "image-tag": "t",
                    "repository-name": "r",
                },
            },
            "body.account must be a non-empty string",
        ),
    ],
)
def test_wrong_shape_is_one_clear_message(parser: object, doc: object, message: str) -> None:
    with pytest.raises(PayloadError) as info:
        parser(doc, {})  # type: ignore[operator]
    assert message in info.value.message


def test_every_public_key_is_a_string() -> None:
    pushed = dockerhub.parse(load("dockerhub_push.json"), {})
    assert all(isinstance(v, str) for v in pushed[0].public().values())


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (1795822201, "2026-11-27T23:30:01Z"),
        ("2026-11-27T23:30:01.123456789Z", "2026-11-27T23:30:01.123456Z"),
        ("2026-11-27T23:30:01", "2026-11-27T23:30:01Z"),
        ("not a time", "not a time"),
        (None, ""),
        (True, ""),
    ],
)
def test_timestamp(raw: object, expected: str) -> None:
    assert timestamp(raw) == expected


def test_event_id_is_stable_and_distinguishes_pushes() -> None:
    a = dockerhub.parse(load("dockerhub_push.json"), {})[0]
    b = dockerhub.parse(load("dockerhub_push.json"), {})[0]
    assert a.event_id == b.event_id
    doc = load("dockerhub_push.json")
    assert isinstance(doc, dict)
    doc["push_data"]["pushed_at"] += 60  # the same tag pushed again later
    c = dockerhub.parse(doc, {})[0]
    assert c.event_id != a.event_id
