"""The HTTP contract, against a real bridge server on a loopback port.

No Prefect here: the bridge runs without an API URL, so accepted events stay in the
spool, where the tests read them back.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from shipyard.bridge.auth import github_signature
from shipyard.bridge.server import BackgroundBridge, BridgeConfig
from shipyard.bridge.spool import Spool
from shipyard.core.catalog import parse_catalog

DATA = Path(__file__).parent / "data"
SECRET = "test-bridge-secret-0123456789"
AUTH = {"Authorization": f"Bearer {SECRET}"}

CATALOG = parse_catalog(
    """
apps:
  - name: cart
    image: 127.0.0.1:5000/shop/cart
    environments:
      - {name: dev, path: envs/dev, namespace: cart-dev}
"""
)


def body(name: str) -> bytes:
    return (DATA / name).read_bytes()


@pytest.fixture
def bridge(tmp_path: Path) -> Iterator[BackgroundBridge]:
    config = BridgeConfig(secret=SecretStr(SECRET), spool_dir=tmp_path / "spool", catalog=CATALOG)
    with BackgroundBridge(config) as running:
        yield running


@pytest.fixture
def client(bridge: BackgroundBridge) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=bridge.url, timeout=10) as c:
        yield c


def spooled(bridge: BackgroundBridge) -> list[dict[str, object]]:
    spool = bridge.state.spool
    assert spool is not None
    batch = spool.read_batch(1000)
    return [] if batch is None else batch.records


def test_distribution_push_is_accepted_and_spooled(
    bridge: BackgroundBridge, client: httpx.Client
) -> None:
    r = client.post("/hooks/distribution", content=body("distribution_push.json"), headers=AUTH)
    assert r.status_code == 202, r.text
    (event,) = r.json()["events"]
    assert {k: event[k] for k in ("registry", "repository", "tag", "digest", "source", "app")} == {
        "registry": "127.0.0.1:5000",
        "repository": "shop/cart",
        "tag": "1.4.2",
        "digest": "sha256:" + "2" * 64,
        "source": "distribution",
        "app": "cart",
    }
    (record,) = spooled(bridge)
    assert record["id"] == event["event_id"]
    assert record["event"] == "registry.image.pushed"
    resource = record["resource"]
    assert isinstance(resource, dict)
    assert resource["prefect.resource.id"] == "oci.image.127.0.0.1:5000/shop/cart"
    assert record["related"] == [
        {
            "prefect.resource.id": "shipyard.app.cart",
            "prefect.resource.role": "app",
            "prefect.resource.name": "cart",
        }
    ]
    payload = record["payload"]
    assert isinstance(payload, dict)
    for key in ("registry", "repository", "tag", "digest", "source", "pushed_at", "app"):
        assert isinstance(payload[key], str)


def test_replayed_delivery_is_deduplicated(bridge: BackgroundBridge, client: httpx.Client) -> None:
    first = client.post("/hooks/distribution", content=body("distribution_push.json"), headers=AUTH)
    again = client.post("/hooks/distribution", content=body("distribution_push.json"), headers=AUTH)
    assert first.status_code == 202
    assert (again.status_code, again.json()) == (200, {"events": []})
    assert len(spooled(bridge)) == 1


def _retagged(tag: str, event_id: str) -> bytes:
    """The recorded manifest push, as the registry sends it for another tag of it."""
    doc = json.loads(body("distribution_push.json"))
    manifest = next(e for e in doc["events"] if e["action"] == "push" and e["target"].get("tag"))
    manifest["id"], manifest["target"]["tag"] = event_id, tag
    return json.dumps({"events": [manifest]}).encode()


def test_one_digest_under_two_tags_is_one_event(
    bridge: BackgroundBridge, client: httpx.Client
) -> None:
    sha = client.post("/hooks/distribution", content=_retagged("5f3a2c1", "e-1"), headers=AUTH)
    v2 = client.post("/hooks/distribution", content=_retagged("v2", "e-2"), headers=AUTH)
    assert sha.status_code == 202 and sha.json()["events"][0]["tag"] == "5f3a2c1"
    assert (v2.status_code, v2.json()) == (200, {"events": []})
    (record,) = spooled(bridge)
    assert record["payload"]["tag"] == "5f3a2c1"  # type: ignore[index]
    assert 'shipyard_bridge_deduplicated_total{source="distribution"} 1' in (
        client.get("/metrics").text
    )


def test_digest_window_zero_keeps_every_tag(tmp_path: Path) -> None:
    config = BridgeConfig(
        secret=SecretStr(SECRET), spool_dir=tmp_path / "s", catalog=CATALOG, digest_window=0
    )
    with BackgroundBridge(config) as running, httpx.Client(base_url=running.url) as c:
        for i, tag in enumerate(("5f3a2c1", "v2")):
            r = c.post("/hooks/distribution", content=_retagged(tag, f"e-{i}"), headers=AUTH)
            assert r.status_code == 202
        assert [r["payload"]["tag"] for r in spooled(running)] == ["5f3a2c1", "v2"]  # type: ignore[index]


@pytest.mark.parametrize(
    ("source", "name"),
    [
        ("distribution", "distribution_blob_only.json"),
        ("harbor", "harbor_pull.json"),
        ("ecr", "ecr_push_failed.json"),
    ],
)
def test_ignored_notifications(
    bridge: BackgroundBridge, client: httpx.Client, source: str, name: str
) -> None:
    r = client.post(f"/hooks/{source}", content=body(name), headers=AUTH)
    assert (r.status_code, r.json()) == (200, {"events": []})
    assert spooled(bridge) == []


def test_every_source_over_http(client: httpx.Client) -> None:
    r = client.post(
        "/hooks/harbor", content=body("harbor_push.json"), headers={"Authorization": SECRET}
    )
    assert r.status_code == 202 and r.json()["events"][0]["registry"] == "harbor.example.com:8443"
    r = client.post("/hooks/ecr", content=body("ecr_push.json"), headers=AUTH)
    assert r.status_code == 202 and r.json()["events"][0]["tag"] == "2026.11.27"
    r = client.post(
        "/hooks/dockerhub", params={"token": SECRET}, content=body("dockerhub_push.json")
    )
    assert r.status_code == 202 and r.json()["events"][0]["digest"] == ""
    raw = body("ghcr_published.json")
    r = client.post(
        "/hooks/ghcr",
        content=raw,
        headers={
            "X-Hub-Signature-256": github_signature(raw, SECRET.encode()),
            "X-GitHub-Event": "registry_package",
            "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        },
    )
    assert r.status_code == 202 and r.json()["events"][0]["registry"] == "ghcr.io"


@pytest.mark.parametrize(
    ("source", "headers", "params"),
    [
        ("distribution", {}, {}),
        ("distribution", {"Authorization": "Bearer wrong"}, {}),
        ("harbor", {"Authorization": "wrong"}, {}),
        ("ecr", {}, {}),
        ("ghcr", {"X-Hub-Signature-256": "sha256=" + "0" * 64}, {}),
        ("ghcr", AUTH, {}),
        ("dockerhub", {}, {"token": "wrong"}),
        ("dockerhub", AUTH, {}),
    ],
)
def test_bad_or_missing_auth_is_401(
    bridge: BackgroundBridge,
    client: httpx.Client,
    source: str,
    headers: dict[str, str],
    params: dict[str, str],
) -> None:
    r = client.post(f"/hooks/{source}", content=b"{}", headers=headers, params=params)
    assert r.status_code == 401
    assert "error" in r.json()
    assert SECRET not in r.text


def test_malformed_json_is_400(client: httpx.Client) -> None:
    r = client.post("/hooks/distribution", content=b"{not json", headers=AUTH)
    assert r.status_code == 400
    assert r.json()["error"].startswith("body is not valid JSON")


def test_wrong_shape_is_400_with_one_message(client: httpx.Client) -> None:
    r = client.post("/hooks/distribution", content=b'{"events": 3}', headers=AUTH)
    assert (r.status_code, r.json()) == (
        400,
        {"error": "body.events must be a JSON array, got a number"},
    )


def test_over_one_mib_is_413(client: httpx.Client) -> None:
    big = b'{"events": [], "pad": "' + b"x" * (1024 * 1024) + b'"}'
    r = client.post("/hooks/distribution", content=big, headers=AUTH)
    assert r.status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while reading
        for _ in range(17):
            yield b"x" * 65536

    r = client.post("/hooks/distribution", content=chunks(), headers=AUTH)
    assert r.status_code == 413


def test_exactly_one_mib_is_not_413(client: httpx.Client) -> None:
    head = b'{"events": [], "pad": "'
    tail = b'"}'
    doc = head + b"x" * (1024 * 1024 - len(head) - len(tail)) + tail
    assert len(doc) == 1024 * 1024
    r = client.post("/hooks/distribution", content=doc, headers=AUTH)
    assert (r.status_code, r.json()) == (200, {"events": []})


def test_unknown_source_is_404(client: httpx.Client) -> None:
    r = client.post("/hooks/quay", content=b"{}", headers=AUTH)
    assert r.status_code == 404
    assert "quay" in r.json()["error"]


def test_health_and_metrics(client: httpx.Client) -> None:
    client.post("/hooks/distribution", content=body("distribution_push.json"), headers=AUTH)
    client.post("/hooks/distribution", content=body("distribution_push.json"), headers=AUTH)
    client.post("/hooks/distribution", content=b"[", headers=AUTH)
    client.post("/hooks/ecr", content=b"{}")
    client.post("/hooks/distribution", content=body("distribution_blob_only.json"), headers=AUTH)
    health = client.get("/healthz")
    assert health.status_code == 200
    assert health.json()["spool_depth"] == 1
    text = client.get("/metrics").text
    for line in (
        'shipyard_bridge_received_total{source="distribution"} 4',
        'shipyard_bridge_received_total{source="ecr"} 1',
        'shipyard_bridge_rejected_total{reason="malformed"} 1',
        'shipyard_bridge_rejected_total{reason="unauthorized"} 1',
        'shipyard_bridge_ignored_total{source="distribution"} 1',
        'shipyard_bridge_deduplicated_total{source="distribution"} 1',
        'shipyard_bridge_spooled_total{source="distribution"} 1',
        "shipyard_bridge_spool_depth 1",
        "shipyard_bridge_emitted_total 0",
        "# TYPE shipyard_bridge_spool_depth gauge",
    ):
        assert line in text.splitlines(), line


def test_dry_run_answers_the_same_and_writes_nothing(tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    config = BridgeConfig(secret=SecretStr(SECRET), spool_dir=spool_dir, dry_run=True)
    with BackgroundBridge(config) as running, httpx.Client(base_url=running.url) as c:
        r = c.post("/hooks/distribution", content=body("distribution_push.json"), headers=AUTH)
        assert r.status_code == 202
        assert r.json()["events"][0]["tag"] == "1.4.2"
        assert r.json()["events"][0]["app"] == ""
        again = c.post("/hooks/distribution", content=body("distribution_push.json"), headers=AUTH)
        assert (again.status_code, again.json()) == (200, {"events": []})
        assert c.post("/hooks/distribution", content=b"{}").status_code == 401
    assert not spool_dir.exists()


def test_insecure_no_auth_accepts_anyone(tmp_path: Path) -> None:
    config = BridgeConfig(insecure_no_auth=True, spool_dir=tmp_path / "spool")
    with BackgroundBridge(config) as running, httpx.Client(base_url=running.url) as c:
        r = c.post("/hooks/distribution", content=body("distribution_push.json"))
        assert r.status_code == 202


def test_spooled_events_survive_a_bridge_restart(tmp_path: Path) -> None:
    config = BridgeConfig(secret=SecretStr(SECRET), spool_dir=tmp_path / "spool")
    with BackgroundBridge(config) as running, httpx.Client(base_url=running.url) as c:
        assert c.post("/hooks/ecr", content=body("ecr_push.json"), headers=AUTH).status_code == 202
    spool = Spool(tmp_path / "spool")
    batch = spool.read_batch()
    assert batch is not None
    assert json.loads(json.dumps(batch.records))[0]["payload"]["repository"] == "shop/orders"


def test_spool_write_failure_is_503_and_the_retry_gets_through(
    bridge: BackgroundBridge, client: httpx.Client
) -> None:
    spool = bridge.state.spool
    assert spool is not None
    good = spool._file
    spool._file = io.FileIO("/dev/full", "ab")  # the disk is full
    try:
        r = client.post("/hooks/ecr", content=body("ecr_push.json"), headers=AUTH)
        assert r.status_code == 503
        assert "No space left" in r.json()["error"]
    finally:
        spool._file.close()
        spool._file = good
    retry = client.post("/hooks/ecr", content=body("ecr_push.json"), headers=AUTH)
    assert retry.status_code == 202  # not swallowed as a "replay"
    assert len(spooled(bridge)) == 1
