"""Dashboards and rules against a real Prometheus scraping every contract metric.

A test exporter serves plausible values of every metric of the contract; Prometheus
scrapes it every second and evaluates Shipyard's rules file. Then:

- every dashboard query returns data, so no query is empty by construction (label sets
  that cannot match across ``/`` or ``and``, a misspelt label, a wrong suffix);
- every rule evaluates without error (no many-to-many matching on real label sets),
  nothing fires on a healthy platform, and a failed delivery (of a known target and a
  first one, a new series) fires ShipyardDeliveryFailed in the real Prometheus.

The stack's live test runs the same queries after a real demo delivery; this one needs
no stack and covers the metrics a demo delivery does not produce (drills, drift,
rollbacks, Argo CD).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from shipyard.stack.monitoring_rules import alert_names, load_rule_groups, write_rules_file
from tests.fixtures.real_prometheus import PROMETHEUS
from tests.fixtures.simcluster import free_port
from tests.monitoring.dashboards import DashboardQuery, dashboard_queries

NOW = time.time()
TARGETS = [("shop", "prod", "sim-a"), ("shop", "dev", "sim-b"), ("blog", "prod", "sim-a")]
DORA = {
    "deployment_frequency_per_day": 1.5,
    "lead_time_hours_median": 2.0,
    "change_failure_rate": 0.1,
    "time_to_restore_minutes_mean": 30.0,
    "availability_percent": 99.9,
    "platform_score": 70.0,
}


def _shipyard_registry(deliveries: Counter) -> CollectorRegistry:
    """The exporter's and the bridge's metrics, with a little of everything."""
    r = CollectorRegistry()
    r.register(deliveries)
    labels = ["app", "environment", "cluster", "outcome"]
    rollbacks = Counter("shipyard_rollbacks", "", labels, registry=r)
    for app, env, cluster in TARGETS:
        deliveries.labels(app, env, cluster, "succeeded").inc(5)
        deliveries.labels(app, env, cluster, "failed").inc(1)
        rollbacks.labels(app, env, cluster, "succeeded").inc(1)
    steps = Histogram("shipyard_delivery_duration_seconds", "", ["step"], registry=r)
    for step in ("build", "scan", "push", "gitops", "sync", "verify", "total"):
        steps.labels(step).observe(12.0)
    lead = Histogram("shipyard_lead_time_seconds", "", ["app", "environment"], registry=r)
    for app, env, _ in TARGETS:
        lead.labels(app, env).observe(600.0)
    Gauge("shipyard_backup_last_success_timestamp_seconds", "", ["cluster"], registry=r).labels(
        "sim-a"
    ).set(NOW - 3600)
    Gauge("shipyard_drill_last_success_timestamp_seconds", "", registry=r).set(NOW - 86400)
    runs = Gauge("shipyard_drill_last_run_timestamp_seconds", "", ["outcome"], registry=r)
    runs.labels("passed").set(NOW - 86400)
    runs.labels("failed").set(NOW - 2 * 86400)
    Gauge("shipyard_drill_rto_seconds", "", registry=r).set(240)
    Gauge("shipyard_drill_rpo_seconds", "", registry=r).set(7200)
    Gauge(
        "shipyard_change_pending_since_timestamp_seconds", "", ["app", "environment"], registry=r
    ).labels("shop", "prod").set(NOW - 120)
    drift = Gauge("shipyard_drift_detected", "", ["app", "environment", "cluster"], registry=r)
    for app, env, cluster in TARGETS:
        drift.labels(app, env, cluster).set(0)
    Gauge("shipyard_work_pool_workers_online", "", ["work_pool"], registry=r).labels(
        "shipyard-k8s"
    ).set(1)
    Gauge("shipyard_exporter_last_refresh_timestamp_seconds", "", registry=r).set(NOW)
    for name, value in DORA.items():
        gauge = Gauge(f"shipyard_dora_{name}", "", ["app", "environment"], registry=r)
        for app, env, _ in TARGETS:
            gauge.labels(app, env).set(value)
    Gauge("shipyard_bridge_spool_depth", "", registry=r).set(0)
    Gauge("shipyard_bridge_prefect_up", "", registry=r).set(1)
    Counter("shipyard_bridge_dead_lettered", "", registry=r)
    return r


def _cluster_registry() -> CollectorRegistry:
    """kube-state-metrics and Argo CD series of one cluster (Prometheus adds `cluster`)."""
    r = CollectorRegistry()
    allocatable = Gauge(
        "kube_node_status_allocatable", "", ["node", "resource", "unit"], registry=r
    )
    allocatable.labels("n1", "cpu", "core").set(4)
    pod = ["namespace", "pod", "container", "node", "resource", "unit"]
    Gauge("kube_pod_container_resource_limits", "", pod, registry=r).labels(
        "shop-prod", "web-1", "web", "n1", "cpu", "core"
    ).set(1)
    Gauge("kube_pod_container_resource_requests", "", pod, registry=r).labels(
        "shop-prod", "web-1", "web", "n1", "cpu", "core"
    ).set(0.5)
    deployment = ["namespace", "deployment"]
    Gauge("kube_deployment_status_replicas_available", "", deployment, registry=r).labels(
        "shop-prod", "web"
    ).set(2)
    Gauge("kube_deployment_spec_replicas", "", deployment, registry=r).labels(
        "shop-prod", "web"
    ).set(2)
    Gauge("kube_pod_status_phase", "", ["namespace", "pod", "phase"], registry=r).labels(
        "shop-prod", "web-1", "Running"
    ).set(1)
    Gauge(
        "argocd_app_info",
        "",
        ["name", "namespace", "project", "dest_namespace", "sync_status", "health_status"],
        registry=r,
    ).labels("shop-prod", "argocd", "default", "shop-prod", "Synced", "Healthy").set(1)
    Counter("argocd_app_sync", "", ["name", "namespace", "project", "phase"], registry=r).labels(
        "shop-prod", "argocd", "default", "Succeeded"
    ).inc()
    return r


class Feed:
    """The running test exporters, Prometheus (with Shipyard's rules) and a counter to bump."""

    def __init__(self, directory: Path) -> None:
        self.deliveries = Counter(
            "shipyard_deliveries", "", ["app", "environment", "cluster", "outcome"], registry=None
        )
        self.servers = [
            start_http_server(0, "127.0.0.1", registry)
            for registry in (_shipyard_registry(self.deliveries), _cluster_registry())
        ]
        shipyard, cluster = (f"127.0.0.1:{server.server_port}" for server, _ in self.servers)
        write_rules_file(directory / "rules" / "shipyard-rules.yaml")
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(directory / "rules" / "*.yaml")],
            "scrape_configs": [
                {"job_name": "shipyard-exporter", "static_configs": [{"targets": [shipyard]}]},
                {
                    "job_name": "simcluster",
                    "static_configs": [{"targets": [cluster], "labels": {"cluster": "sim-a"}}],
                },
            ],
        }
        (directory / "prometheus.yml").write_text(json.dumps(config))
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.log = directory / "prometheus.log"
        self.process = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={directory / 'prometheus.yml'}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("wb"),
        )

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query's result vector (fails the test on an error answer)."""
        doc = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10).json()
        assert doc.get("status") == "success", f"{promql!r}: {doc}"
        return list(doc["data"]["result"])

    def wait(self, promql: str, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Until ``promql`` returns something; that result."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.process.poll() is None, self.log.read_text()[-2000:]
            try:
                result = self.query(promql)
            except (httpx.HTTPError, ValueError):  # not up yet, or "Service Unavailable"
                result = []
            if result or time.monotonic() > deadline:
                return result
            time.sleep(0.25)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        for server, thread in self.servers:
            server.shutdown()
            server.server_close()
            thread.join(5)


@pytest.fixture(scope="module")
def feed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Feed]:
    if not Path(PROMETHEUS).exists():
        pytest.skip(f"Prometheus is not installed at {PROMETHEUS} (apt-get install prometheus)")
    running = Feed(tmp_path_factory.mktemp("prometheus"))
    try:
        assert len(running.wait("up == 1", 30)) >= 1
        # range functions (increase, rate) need samples of every series: wait for 3
        running.wait("count_over_time(shipyard_deliveries_total[1m]) >= 3")
        running.wait("count_over_time(kube_node_status_allocatable[1m]) >= 3")
        yield running
    finally:
        running.stop()


@pytest.mark.parametrize("query", dashboard_queries(), ids=str)
def test_every_dashboard_query_returns_data(feed: Feed, query: DashboardQuery) -> None:
    assert feed.query(query.promql), f"{query}: no data for {query.promql}"


def test_rules_evaluate_without_errors_and_stay_quiet(feed: Feed) -> None:
    groups = httpx.get(f"{feed.url}/api/v1/rules", timeout=10).json()["data"]["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert {r["name"] for r in rules} == set(alert_names(load_rule_groups()))
    for rule in rules:
        assert rule["health"] == "ok", f"{rule['name']}: {rule.get('lastError')}"
    assert feed.query("ALERTS") == [], "a healthy platform fires nothing"


def test_a_failed_delivery_fires_in_real_prometheus(feed: Feed) -> None:
    """A known target's failure (increase) and a first failure (a new series)."""
    feed.deliveries.labels("shop", "prod", "sim-a", "failed").inc()
    feed.deliveries.labels("web", "dev", "sim-b", "failed").inc()
    selector = 'ALERTS{alertname="ShipyardDeliveryFailed",alertstate="firing"}'
    deadline = time.monotonic() + 30
    fired: set[str] = set()
    while fired != {"shop", "web"} and time.monotonic() < deadline:
        fired = {a["metric"]["app"] for a in feed.wait(selector, 5)}
        time.sleep(0.25)
    assert fired == {"shop", "web"}
