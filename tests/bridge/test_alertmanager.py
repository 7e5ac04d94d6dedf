"""`POST /hooks/alertmanager`: Alertmanager's webhook (version 4) to one event per alert.

The parser and the event shape are checked as pure functions; the HTTP contract against
a real bridge on loopback (events read back from its spool); and the wire format against
the real Alertmanager of the Debian package, configured by the stack's own generator,
posting to that bridge with the bearer secret from its credentials file.
"""

from __future__ import annotations

import copy
import os
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pydantic import SecretStr

from shipyard.bridge import alertmanager
from shipyard.bridge.model import PayloadError
from shipyard.bridge.server import BackgroundBridge, BridgeConfig
from shipyard.core.catalog import parse_catalog
from shipyard.stack import monitoring
from shipyard.stack.model import StackLayout
from shipyard.stack.probes import free_port, http_ok

SECRET = "test-alert-secret-0123456789"
AUTH = {"Authorization": f"Bearer {SECRET}"}
CATALOG = parse_catalog(
    """
apps:
  - name: cart
    image: 127.0.0.1:5000/shop/cart
    environments:
      - {name: dev, path: envs/dev, namespace: shop-dev}
"""
)
STARTS = "2026-11-30T21:00:00.123456789Z"


def alert(status: str = "firing", **labels: str) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {
            "alertname": "ArgoSyncFailed",
            "app": "cart",
            "environment": "dev",
            "cluster": "default",
            "severity": "warning",
            **labels,
        },
        "annotations": {"summary": "cart is OutOfSync", "description": "for 10m"},
        "startsAt": STARTS,
        "endsAt": "2026-11-30T21:05:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://127.0.0.1:9090/graph?g0.expr=x",
        "fingerprint": "c0ffee1234567890",
    }


def notification(*alerts: dict[str, Any]) -> dict[str, Any]:
    firing = any(a["status"] == "firing" for a in alerts)
    return {
        "version": "4",
        "groupKey": '{}:{alertname="ArgoSyncFailed"}',
        "truncatedAlerts": 0,
        "status": "firing" if firing else "resolved",
        "receiver": "shipyard-bridge",
        "groupLabels": {"alertname": "ArgoSyncFailed"},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "alerts": list(alerts),
    }


# --- the parser ----------------------------------------------------------------------


def test_parse_keeps_each_alert_with_its_labels_and_times() -> None:
    (firing, resolved) = alertmanager.parse(
        notification(alert(), alert("resolved", alertname="ShipyardDriftDetected"))
    )
    assert firing.status == "firing" and firing.alertname == "ArgoSyncFailed"
    assert firing.labels["app"] == "cart" and firing.fingerprint == "c0ffee1234567890"
    assert firing.starts_at == "2026-11-30T21:00:00.123456Z"
    assert firing.ends_at == ""  # Alertmanager's zero time: not ended
    assert firing.receiver == "shipyard-bridge"
    assert resolved.event_name == alertmanager.RESOLVED
    assert resolved.ends_at == "2026-11-30T21:05:00Z"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(version="3"), 'body.version must be "4"'),
        (lambda d: d.pop("alerts"), "body.alerts must be a JSON array"),
        (lambda d: d["alerts"][0].update(status="pending"), "must be firing or resolved"),
        (lambda d: d["alerts"][0]["labels"].pop("alertname"), "labels.alertname"),
        (lambda d: d["alerts"][0]["labels"].update(app=3), "labels.app must be a string"),
        (lambda d: d["alerts"][0].pop("fingerprint"), "fingerprint must be a non-empty"),
        (lambda d: d["alerts"][0].pop("startsAt"), "startsAt must be a non-empty"),
        (lambda d: d["alerts"][0].update(annotations=[]), "annotations must be a JSON object"),
    ],
)
def test_parse_refuses_what_is_not_an_alertmanager_webhook(mutate: Any, message: str) -> None:
    doc = notification(alert())
    mutate(doc)
    with pytest.raises(PayloadError, match=message.replace("(", r"\(")):
        alertmanager.parse(doc)


def test_dedupe_key_is_fingerprint_status_and_start() -> None:
    first = alertmanager.parse(notification(alert()))[0]
    resent = alertmanager.parse(notification(alert()))[0]
    resolved = alertmanager.parse(notification(alert("resolved")))[0]
    later = copy.deepcopy(alert())
    later["startsAt"] = "2026-11-30T22:00:00Z"
    refired = alertmanager.parse(notification(later))[0]
    assert first.dedupe_key == resent.dedupe_key and first.event_id == resent.event_id
    assert len({first.dedupe_key, resolved.dedupe_key, refired.dedupe_key}) == 3


def test_prefect_event_carries_the_labels_on_the_resource_and_every_payload_key() -> None:
    firing = alertmanager.parse(notification(alert(severity="critical")))[0]
    at = datetime(2026, 11, 30, 21, 0, 1, tzinfo=UTC)
    target = alertmanager.resolve_target(firing.labels, CATALOG)
    event = alertmanager.prefect_event(firing, at, target)
    assert event["event"] == "shipyard.alert.firing"
    assert event["id"] == firing.event_id
    resource = event["resource"]
    assert resource["prefect.resource.id"] == "shipyard.alert.ArgoSyncFailed.c0ffee1234567890"
    assert resource["prefect.resource.name"] == "ArgoSyncFailed"
    assert resource["shipyard.alert.label.alertname"] == "ArgoSyncFailed"
    assert resource["shipyard.alert.label.app"] == "cart"
    assert resource["shipyard.alert.label.severity"] == "critical"
    assert resource["shipyard.alert.status"] == "firing"
    assert event["related"] == [
        {
            "prefect.resource.id": "shipyard.app.cart",
            "prefect.resource.role": "app",
            "prefect.resource.name": "cart",
        }
    ]
    payload = event["payload"]
    assert payload["app"] == "cart" and payload["environment"] == "dev"
    assert payload["cluster"] == "default" and payload["image"] == "127.0.0.1:5000/shop/cart"
    assert payload["summary"] == "cart is OutOfSync" and payload["ends_at"] == ""
    assert event["occurred"] == "2026-11-30T21:00:01+00:00"


def test_an_alert_without_app_labels_still_has_every_payload_key() -> None:
    bare = alert()
    bare["labels"] = {"alertname": "ShipyardRestoreDrillFailed"}
    del bare["annotations"]
    event = alertmanager.prefect_event(alertmanager.parse(notification(bare))[0], datetime.now(UTC))
    keys = ("app", "environment", "cluster", "severity", "image", "summary", "description")
    for key in (*keys, "runbook_url", "ends_at"):
        assert event["payload"][key] == ""
    assert event["related"] == []


ARGO_CATALOG = parse_catalog(
    """
apps:
  - name: cart
    image: 127.0.0.1:5000/shop/cart
    environments:
      - {name: dev, path: envs/dev, namespace: shop-dev}
      - name: prod
        path: envs/prod
        namespace: shop-prod
        sync: {driver: argocd, application: cart-production}
"""
)


def test_argo_alerts_are_mapped_to_the_catalog_environment() -> None:
    """argocd_app_info has no app label: its Application name, else its destination
    namespace, names the environment."""
    by_name = alertmanager.resolve_target(
        {"alertname": "ArgoSyncFailed", "name": "cart-production", "dest_namespace": "x"},
        ARGO_CATALOG,
    )
    assert (by_name.app, by_name.environment) == ("cart", "prod")
    assert by_name.image == "127.0.0.1:5000/shop/cart"
    by_namespace = alertmanager.resolve_target(
        {"alertname": "ArgoSyncFailed", "name": "cart-dev", "dest_namespace": "shop-dev"},
        ARGO_CATALOG,
    )
    assert (by_namespace.app, by_namespace.environment) == ("cart", "dev")
    unknown = alertmanager.resolve_target(
        {"alertname": "ArgoSyncFailed", "name": "other", "dest_namespace": "elsewhere"},
        ARGO_CATALOG,
    )
    assert unknown == alertmanager.AlertTarget()
    assert alertmanager.resolve_target({"app": "cart", "environment": "dev"}, None) == (
        alertmanager.AlertTarget("cart", "dev")
    )


# --- the HTTP contract ----------------------------------------------------------------


@pytest.fixture
def bridge(tmp_path: Path) -> Iterator[BackgroundBridge]:
    config = BridgeConfig(secret=SecretStr(SECRET), spool_dir=tmp_path / "spool", catalog=CATALOG)
    with BackgroundBridge(config) as running:
        yield running


def spooled(bridge: BackgroundBridge) -> list[dict[str, Any]]:
    spool = bridge.state.spool
    assert spool is not None
    batch = spool.read_batch(1000)
    return [] if batch is None else batch.records


def test_hook_turns_each_alert_into_a_spooled_event(bridge: BackgroundBridge) -> None:
    doc = notification(alert(), alert(alertname="ShipyardDriftDetected"))
    doc["alerts"][1]["fingerprint"] = "feedbeef00000001"
    answer = httpx.post(f"{bridge.url}/hooks/alertmanager", json=doc, headers=AUTH)
    assert answer.status_code == 202, answer.text
    events = spooled(bridge)
    assert [e["event"] for e in events] == ["shipyard.alert.firing"] * 2
    assert [e["payload"]["alertname"] for e in events] == [
        "ArgoSyncFailed",
        "ShipyardDriftDetected",
    ]
    assert events[0]["payload"]["image"] == "127.0.0.1:5000/shop/cart"
    assert events[0]["related"][0]["prefect.resource.id"] == "shipyard.app.cart"
    assert [a["event_id"] for a in answer.json()["events"]] == [e["id"] for e in events]


def test_a_resent_alert_is_one_event_and_its_resolution_another(bridge: BackgroundBridge) -> None:
    url = f"{bridge.url}/hooks/alertmanager"
    assert httpx.post(url, json=notification(alert()), headers=AUTH).status_code == 202
    again = httpx.post(url, json=notification(alert()), headers=AUTH)
    assert again.status_code == 200 and again.json() == {"events": []}
    resolved = httpx.post(url, json=notification(alert("resolved")), headers=AUTH)
    assert resolved.status_code == 202
    assert [e["event"] for e in spooled(bridge)] == [
        "shipyard.alert.firing",
        "shipyard.alert.resolved",
    ]
    metrics = httpx.get(f"{bridge.url}/metrics").text
    assert 'shipyard_bridge_deduplicated_total{source="alertmanager"} 1' in metrics


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {SECRET}"}]
)
def test_hook_needs_the_bearer_secret(bridge: BackgroundBridge, headers: dict[str, str]) -> None:
    answer = httpx.post(
        f"{bridge.url}/hooks/alertmanager", json=notification(alert()), headers=headers
    )
    assert answer.status_code == 401
    assert spooled(bridge) == []


def test_bad_payload_is_400_with_the_reason(bridge: BackgroundBridge) -> None:
    doc = notification(alert())
    doc["alerts"][0]["labels"].pop("alertname")
    answer = httpx.post(f"{bridge.url}/hooks/alertmanager", json=doc, headers=AUTH)
    assert answer.status_code == 400
    assert "body.alerts[0].labels.alertname" in answer.json()["error"]
    not_json = httpx.post(f"{bridge.url}/hooks/alertmanager", content=b"{", headers=AUTH)
    assert not_json.status_code == 400 and "not valid JSON" in not_json.json()["error"]
    assert spooled(bridge) == []


# --- the real Alertmanager ------------------------------------------------------------


@pytest.fixture
def real_alertmanager(tmp_path: Path, bridge: BackgroundBridge) -> Iterator[str]:
    """`prometheus-alertmanager` with the stack's generated config, routing to ``bridge``."""
    if not os.access(monitoring.ALERTMANAGER, os.X_OK):
        pytest.skip("apt-get install -y prometheus-alertmanager (scripts/setup.sh does)")
    layout = StackLayout(tmp_path / "state")
    layout.root.mkdir()
    (layout.root / "bridge.secret").write_text(SECRET)
    port = free_port()
    ports = {"bridge": bridge.port, "alertmanager": port}
    config = tmp_path / "alertmanager.yml"
    config.write_text(yaml.safe_dump(monitoring.alertmanager_config(layout, ports)))
    assert SECRET not in config.read_text()  # read from the credentials file
    proc = subprocess.Popen(
        [
            monitoring.ALERTMANAGER,
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'am'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not http_ok(f"{url}/-/ready"):
            assert proc.poll() is None, "alertmanager exited"
            assert time.monotonic() < deadline, "alertmanager not ready in 30 s"
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def test_real_alertmanager_delivers_to_the_hook_with_the_bearer_secret(
    bridge: BackgroundBridge, real_alertmanager: str
) -> None:
    posted = httpx.post(
        f"{real_alertmanager}/api/v2/alerts",
        json=[
            {
                "labels": {"alertname": "ShipyardDeliveryFailed", "app": "cart", "cluster": "x"},
                "annotations": {"summary": "cart failed"},
            }
        ],
    )
    assert posted.status_code == 200, posted.text
    deadline = time.monotonic() + 30
    while not (events := spooled(bridge)):
        assert time.monotonic() < deadline, "no alert reached the bridge in 30 s"
        time.sleep(0.2)
    (event,) = events
    assert event["event"] == "shipyard.alert.firing"
    assert event["resource"]["shipyard.alert.label.alertname"] == "ShipyardDeliveryFailed"
    assert event["payload"]["summary"] == "cart failed"
    assert event["payload"]["receiver"] == "shipyard-bridge"
