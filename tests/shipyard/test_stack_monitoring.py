"""The stack's monitoring services: generated configs the real tools accept, the
simulators' target list (main cluster and fleet, each with its `cluster` label), the
rules directory, the env values, and the message when a package is missing."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from shipyard.core.errors import ConfigError
from shipyard.stack import monitoring
from shipyard.stack.model import StackLayout
from shipyard.stack.runner import SERVICE_ORDER, build_specs, env_values
from tests.fixtures.services import Stack

PORTS = {
    "prefect": 4201,
    "kube": 6444,
    "bridge": 8788,
    "exporter": 9465,
    "prometheus": 9091,
    "alertmanager": 9094,
}


@pytest.fixture
def layout(tmp_path: Path) -> StackLayout:
    root = tmp_path / "state"
    root.mkdir()
    return StackLayout(root)


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} not installed (scripts/setup.sh installs it)")
    return found


def test_prometheus_config_scrapes_every_service_and_promtool_accepts_it(
    layout: StackLayout,
) -> None:
    config = monitoring.prometheus_config(layout, PORTS)
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert jobs["shipyard-bridge"]["static_configs"] == [{"targets": ["127.0.0.1:8788"]}]
    assert jobs["prefect"]["metrics_path"] == "/api/metrics"
    assert jobs["prefect"]["static_configs"] == [{"targets": ["127.0.0.1:4201"]}]
    assert jobs["simcluster"]["file_sd_configs"][0]["files"] == [
        str(monitoring.targets_file(layout))
    ]
    assert ("shipyard-exporter" in jobs) == monitoring.exporter_available()
    assert config["global"]["scrape_interval"] == monitoring.SCRAPE_INTERVAL
    assert config["alerting"]["alertmanagers"][0]["static_configs"] == [
        {"targets": ["127.0.0.1:9094"]}
    ]
    path = layout.root / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    monitoring.rules_dir(layout).mkdir(parents=True)
    result = subprocess.run(
        [_tool("promtool"), "check", "config", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_alertmanager_config_routes_to_the_bridge_and_amtool_accepts_it(
    layout: StackLayout,
) -> None:
    config = monitoring.alertmanager_config(layout, PORTS)
    (hook,) = config["receivers"][0]["webhook_configs"]
    assert hook["url"] == "http://127.0.0.1:8788/hooks/alertmanager"
    assert hook["send_resolved"] is True
    auth = hook["http_config"]["authorization"]
    assert auth == {"type": "Bearer", "credentials_file": str(layout.root / "bridge.secret")}
    assert config["route"]["receiver"] == "shipyard-bridge"
    path = layout.root / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    (layout.root / "bridge.secret").write_text("s3cret")
    result = subprocess.run(
        [_tool("amtool"), "check-config", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "s3cret" not in path.read_text()


def test_cluster_targets_are_the_main_simulator_and_the_fleet(layout: StackLayout) -> None:
    (layout.root / "clusters.json").write_text(
        json.dumps(
            [
                {"name": "eu-1", "labels": {"region": "eu"}, "port": 7001},
                {"name": "us-1", "labels": {"region": "us"}, "port": 7002},
            ]
        )
    )
    path = monitoring.write_cluster_targets(layout, PORTS)
    groups = json.loads(path.read_text())
    assert {"targets": ["127.0.0.1:7001"], "labels": {"cluster": "eu-1"}} in groups
    assert {"targets": ["127.0.0.1:7002"], "labels": {"cluster": "us-1"}} in groups
    assert {"targets": ["127.0.0.1:6444"], "labels": {"cluster": monitoring.MAIN_CLUSTER}} in groups
    assert len(groups) == 3
    (layout.root / "clusters.json").unlink()
    assert json.loads(monitoring.write_cluster_targets(layout, PORTS).read_text()) == [
        {"targets": ["127.0.0.1:6444"], "labels": {"cluster": monitoring.MAIN_CLUSTER}}
    ]


def test_prepare_writes_shipyard_rules_and_tests_may_add_their_own(layout: StackLayout) -> None:
    spec = monitoring.prometheus_spec(layout, PORTS)
    assert spec.prepare is not None
    spec.prepare()
    rules = monitoring.rules_dir(layout) / monitoring.SHIPYARD_RULES
    assert "ArgoSyncFailed" in rules.read_text()
    extra = monitoring.add_rules(layout, "test-only", "groups: []\n")
    assert extra.parent == rules.parent
    config = yaml.safe_load((layout.data_dir("prometheus") / "prometheus.yml").read_text())
    assert config["rule_files"] == [str(monitoring.rules_dir(layout) / "*.yaml")]
    result = subprocess.run(
        [_tool("promtool"), "check", "rules", str(rules), str(extra)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"--web.listen-address=127.0.0.1:{PORTS['prometheus']}" in spec.argv
    assert "--web.enable-lifecycle" in spec.argv


def test_stack_runs_and_stops_the_monitoring_services(layout: StackLayout) -> None:
    names = [s.name for s in build_specs(layout, {**PORTS, "registry": 1, "s3": 2, "git": 3})]
    assert names[-2:] == ["prometheus", "alertmanager"]
    assert ("exporter" in names) == monitoring.exporter_available()
    for name in monitoring.MONITORING_SERVICES:
        assert name in SERVICE_ORDER  # `down` stops them
    env = env_values(layout, {**PORTS, "registry": 1, "s3": 2, "git": 3})
    assert env["SHIPYARD_PROMETHEUS_URL"] == "http://127.0.0.1:9091"
    assert env["SHIPYARD_ALERTMANAGER_URL"] == "http://127.0.0.1:9094"


def test_a_missing_package_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH either
    missing = tmp_path / "prometheus-alertmanager"  # where Debian would put it: absent
    with pytest.raises(ConfigError, match="apt-get install -y prometheus-alertmanager"):
        monitoring._program(str(missing), "prometheus-alertmanager")
    with pytest.raises(ConfigError, match="apt-get install -y prometheus'"):
        monitoring._program(str(tmp_path / "prometheus"), "prometheus")


def _targets(prometheus: str) -> dict[str, dict[str, Any]]:
    import httpx

    answer = httpx.get(f"{prometheus}/api/v1/targets", timeout=10).json()
    return {t["labels"]["job"]: t for t in answer["data"]["activeTargets"]}


def test_the_running_stack_scrapes_its_services(stack: Stack) -> None:
    """`stack status` lists the monitoring services healthy, and Prometheus scrapes the
    exporter, Prefect's /api/metrics and the simulator (with its cluster label)."""
    import time

    from shipyard.stack import stack_status

    statuses = {s.name: s for s in stack_status(stack.layout).services}
    for name in ("prometheus", "alertmanager", *(["exporter"] * monitoring.exporter_available())):
        assert statuses[name].healthy, statuses[name]
    assert statuses["prometheus"].address == stack.prometheus_url
    wanted = {"prefect", "simcluster", *(["shipyard-exporter"] * monitoring.exporter_available())}
    deadline = time.monotonic() + 30
    while True:
        targets = _targets(stack.prometheus_url)
        if all(targets.get(job, {}).get("health") == "up" for job in wanted):
            break
        assert time.monotonic() < deadline, {j: t.get("lastError") for j, t in targets.items()}
        time.sleep(1)
    assert targets["simcluster"]["labels"]["cluster"] == monitoring.MAIN_CLUSTER
    assert targets["prefect"]["scrapeUrl"].endswith("/api/metrics")
