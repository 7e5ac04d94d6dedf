"""Every dashboard query returns data from a real Prometheus that scrapes every contract
metric (a test exporter with plausible values), so no query is empty by construction:
label sets that cannot match across ``/`` or ``and``, a misspelt label, a wrong suffix.

The stack's live test runs the same queries after a real demo delivery; this one needs
no stack and covers the metrics a demo delivery does not produce (drills, drift,
rollbacks, Argo CD).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from tests.fixtures.real_prometheus import PROMETHEUS, RealPrometheus, start_prometheus
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


def _shipyard_registry() -> CollectorRegistry:
    """The exporter's and the bridge's metrics, with a little of everything."""
    r = CollectorRegistry()
    labels = ["app", "environment", "cluster", "outcome"]
    deliveries = Counter("shipyard_deliveries", "", labels, registry=r)
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


@pytest.fixture(scope="module")
def prometheus() -> Iterator[RealPrometheus]:
    if not Path(PROMETHEUS).exists():
        pytest.skip(f"Prometheus is not installed at {PROMETHEUS} (apt-get install prometheus)")
    servers = [
        start_http_server(0, "127.0.0.1", registry)
        for registry in (_shipyard_registry(), _cluster_registry())
    ]
    shipyard, cluster = (f"127.0.0.1:{server.server_port}" for server, _ in servers)
    prom = start_prometheus(
        {"shipyard": [shipyard], "sim": [cluster]}, labels={"sim": {"cluster": "sim-a"}}
    )
    try:
        prom.wait_up(2)
        # range functions (increase, rate) need two samples of every series
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            series = prom.query("count_over_time(shipyard_deliveries_total[1m])")["result"]
            if series and min(float(s["value"][1]) for s in series) >= 3:
                break
            time.sleep(0.5)
        yield prom
    finally:
        prom.stop()
        for server, thread in servers:
            server.shutdown()
            server.server_close()
            thread.join(5)


@pytest.mark.parametrize("query", dashboard_queries(), ids=str)
def test_every_dashboard_query_returns_data(
    prometheus: RealPrometheus, query: DashboardQuery
) -> None:
    result = prometheus.query(query.promql)["result"]
    assert result, f"{query}: no data for {query.promql}"
