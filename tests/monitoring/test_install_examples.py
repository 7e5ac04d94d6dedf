"""The install examples under deployments/monitoring/: ServiceMonitors and the
Alertmanager receiver that sends Shipyard's alerts to the bridge.

The plain Alertmanager configuration is checked by ``amtool``, its routes are tested,
and a real Alertmanager (Debian's ``prometheus-alertmanager``) runs it against a
loopback receiver: the request it sends must pass the bridge's own authentication and
parse as the bridge's Alertmanager payload.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from ruamel.yaml import YAML

from shipyard.bridge.alertmanager import parse
from shipyard.bridge.auth import authenticate
from shipyard.stack.monitoring_rules import MONITORING_DIR, ROOT, alert_names, load_rule_groups
from tests.fixtures.simcluster import free_port
from tests.monitoring.conftest import run_promtool

ALERTMANAGER_YAML = MONITORING_DIR / "alertmanager" / "alertmanager.yaml"
ALERTMANAGER_CONFIG = MONITORING_DIR / "alertmanager" / "alertmanagerconfig.yaml"
SERVICE_MONITORS = MONITORING_DIR / "servicemonitors.yaml"
BRIDGE_URL = "http://shipyard-bridge.shipyard-bridge.svc.cluster.local/hooks/alertmanager"


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in YAML(typ="safe", pure=True).load_all(path.read_text()) if d]


def _by_kind(path: Path, kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in _docs(path) if d["kind"] == kind}


def _bridge_route(config: dict[str, Any]) -> dict[str, Any]:
    (route,) = [r for r in config["route"]["routes"] if r["receiver"] == "shipyard-bridge"]
    return route


@pytest.fixture(scope="module")
def amtool() -> str:
    found = shutil.which("amtool")
    if not found:
        pytest.skip("amtool is not installed (apt-get install prometheus-alertmanager)")
    return found


def test_amtool_accepts_the_alertmanager_config(amtool: str) -> None:
    result = run_promtool(amtool, "check-config", ALERTMANAGER_YAML)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize("alert", alert_names(load_rule_groups()))
def test_every_shipyard_alert_routes_to_the_bridge(amtool: str, alert: str) -> None:
    result = run_promtool(
        amtool,
        "config",
        "routes",
        "test",
        f"--config.file={ALERTMANAGER_YAML}",
        "--verify.receivers=shipyard-bridge",
        f"alertname={alert}",
        "app=shop",
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_other_alerts_do_not_reach_the_bridge(amtool: str) -> None:
    result = run_promtool(
        amtool,
        "config",
        "routes",
        "test",
        f"--config.file={ALERTMANAGER_YAML}",
        "alertname=Watchdog",
    )
    assert result.stdout.strip() == "default", result.stdout + result.stderr


def test_the_operator_receiver_matches_the_plain_one() -> None:
    plain = YAML(typ="safe", pure=True).load(ALERTMANAGER_YAML.read_text())
    route = _bridge_route(plain)
    (hook,) = next(r for r in plain["receivers"] if r["name"] == "shipyard-bridge")[
        "webhook_configs"
    ]
    (amc,) = _by_kind(ALERTMANAGER_CONFIG, "AlertmanagerConfig").values()
    assert amc["apiVersion"] == "monitoring.coreos.com/v1alpha1"
    spec = amc["spec"]
    (matcher,) = spec["route"]["matchers"]
    regex = route["matchers"][0].split("=~", 1)[1].strip().strip('"')
    assert (matcher["name"], matcher["matchType"], matcher["value"]) == ("alertname", "=~", regex)
    assert spec["route"]["groupBy"] == route["group_by"]
    assert spec["route"]["repeatInterval"] == route["repeat_interval"]
    (receiver,) = spec["receivers"]
    (webhook,) = receiver["webhookConfigs"]
    assert webhook["url"] == hook["url"] == BRIDGE_URL
    assert webhook["sendResolved"] is hook["send_resolved"] is True
    auth = webhook["httpConfig"]["authorization"]
    assert auth["type"] == hook["http_config"]["authorization"]["type"] == "Bearer"
    assert auth["credentials"] == {"name": "shipyard-bridge-webhook", "key": "webhook-secret"}
    for name in alert_names(load_rule_groups()):
        assert re.fullmatch(regex, name), f"{name} does not match the bridge route"


def test_the_bridge_url_is_the_bridge_service() -> None:
    service = _by_kind(ROOT / "deployments" / "bridge" / "bridge.yaml", "Service")[
        "shipyard-bridge"
    ]
    host = f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local"
    (port,) = service["spec"]["ports"]
    assert port["port"] == 80
    assert BRIDGE_URL == f"http://{host}/hooks/alertmanager"


def test_service_monitors_select_the_services() -> None:
    monitors = _by_kind(SERVICE_MONITORS, "ServiceMonitor")
    assert set(monitors) == {"shipyard-exporter", "shipyard-bridge", "argocd-metrics"}
    argocd = monitors.pop("argocd-metrics")  # Argo CD's own Service, not in this repo
    assert argocd["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "argocd-metrics"}
    assert argocd["spec"]["endpoints"][0]["port"] == "metrics"
    for name, monitor in monitors.items():
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        short = name.removeprefix("shipyard-")
        manifest = ROOT / "deployments" / short / f"{short}.yaml"
        service = _by_kind(manifest, "Service")[name]
        spec = monitor["spec"]
        assert spec["namespaceSelector"]["matchNames"] == [service["metadata"]["namespace"]]
        assert spec["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
        port_names = {p["name"] for p in service["spec"]["ports"]}
        assert {e["port"] for e in spec["endpoints"]} <= port_names
        assert all(e["path"] == "/metrics" for e in spec["endpoints"])
        # the exporter's own manifest carries the same ServiceMonitor: keep them equal
        twin = _by_kind(manifest, "ServiceMonitor").get(name)
        if twin is not None:
            assert twin == monitor


class _Receiver(BaseHTTPRequestHandler):
    """Records every POST (path, headers, body) on the server object."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        self.server.requests.append((self.path, dict(self.headers), body))  # type: ignore[attr-defined]
        self.send_response(202)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def receiver() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_real_alertmanager_sends_what_the_bridge_accepts(
    tmp_path: Path, receiver: ThreadingHTTPServer
) -> None:
    """The example config, pointed at loopback, through a real Alertmanager."""
    program = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if not program:
        pytest.skip("Alertmanager is not installed (apt-get install prometheus-alertmanager)")
    secret = "am-bridge-secret-0123456789"
    (tmp_path / "webhook-secret").write_text(secret)
    yaml = YAML(typ="safe", pure=True)
    config = yaml.load(ALERTMANAGER_YAML.read_text())
    route = _bridge_route(config)
    route["group_wait"] = "0s"  # the only change besides where: deliver at once
    (hook,) = next(r for r in config["receivers"] if r["name"] == "shipyard-bridge")[
        "webhook_configs"
    ]
    hook["url"] = hook["url"].replace(
        "http://shipyard-bridge.shipyard-bridge.svc.cluster.local",
        f"http://127.0.0.1:{receiver.server_address[1]}",
    )
    hook["http_config"]["authorization"]["credentials_file"] = str(tmp_path / "webhook-secret")
    config_file = tmp_path / "alertmanager.yml"
    with config_file.open("w") as out:
        yaml.dump(config, out)
    port = free_port()
    process = subprocess.Popen(
        [
            program,
            f"--config.file={config_file}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "Alertmanager down"
            time.sleep(0.2)
        labels = {
            "alertname": "ShipyardDeliveryFailed",
            "app": "shop",
            "environment": "prod",
            "cluster": "sim-a",
            "severity": "warning",
        }
        alert = {
            "labels": labels,
            "annotations": {"summary": "A delivery of shop to prod failed."},
            "generatorURL": "http://prometheus.invalid/graph",
        }
        httpx.post(f"{base}/api/v2/alerts", json=[alert], timeout=5).raise_for_status()
        deadline = time.monotonic() + 20
        while not receiver.requests and time.monotonic() < deadline:  # type: ignore[attr-defined]
            time.sleep(0.2)
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert receiver.requests, "Alertmanager sent nothing"  # type: ignore[attr-defined]
    path, headers, body = receiver.requests[0]  # type: ignore[attr-defined]
    assert path == "/hooks/alertmanager"
    lowered = {k.lower(): v for k, v in headers.items()}
    assert lowered["authorization"] == f"Bearer {secret}"
    assert authenticate("alertmanager", lowered, {}, body, secret.encode())
    assert not authenticate("alertmanager", lowered, {}, body, b"another-secret-0123456789")
    (fired,) = parse(json.loads(body), lowered)
    assert fired.alertname == "ShipyardDeliveryFailed"
    assert fired.labels["app"] == "shop" and fired.labels["cluster"] == "sim-a"
