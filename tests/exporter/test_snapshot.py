"""The exporter's pure parts: step mapping, histograms, snapshot figures, refresh on a
failing API (a reader that refuses, standing in for a server that is down)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from shipyard.exporter.collector import SnapshotCollector
from shipyard.exporter.prefect_api import PrefectUnavailable
from shipyard.exporter.snapshot import ExporterState, Histogram, build_snapshot, refresh, step_of

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def ev(name: str, minutes_ago: float, resource: str, **payload: Any) -> dict[str, Any]:
    return {
        "id": f"{name}-{minutes_ago}-{resource}",
        "occurred": (NOW - timedelta(minutes=minutes_ago)).isoformat(),
        "event": name,
        "resource": {"prefect.resource.id": resource},
        "related": [],
        "payload": payload,
    }


def samples(collector: SnapshotCollector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_step_of_task_run_names() -> None:
    assert step_of("build_image-3af") == "build"
    assert step_of("sync-app-0c1") == "sync"
    assert step_of("rollback-sync-9d2") is None  # the rollback is not the delivery's sync
    assert step_of("verify-rollout") == "verify"
    assert step_of("read-catalog-111") is None


def test_histogram_buckets_are_cumulative() -> None:
    h = Histogram((1.0, 10.0))
    for value in (0.5, 1.0, 5.0, 50.0):
        h.observe(value)
    assert h.buckets() == [("1", 2.0), ("10", 3.0), ("+Inf", 4.0)]
    assert (h.count, h.total) == (4, 56.5)


def test_snapshot_figures_from_events_and_runs() -> None:
    state = ExporterState()
    state.add_events(
        [
            ev(
                "shipyard.delivery.completed",
                50,
                "shipyard.delivery.cart.dev",
                app="cart",
                environment="dev",
                cluster="eu-1",
                outcome="delivered",
                change_time=(NOW - timedelta(minutes=80)).isoformat(),
                deployed_at=(NOW - timedelta(minutes=50)).isoformat(),
            ),
            ev(
                "shipyard.delivery.failed",
                40,
                "shipyard.delivery.cart.dev",
                app="cart",
                environment="dev",
                cluster="eu-1",
                rollback_error="previous version not healthy",
                cause="verify",
            ),
            ev(
                "shipyard.drill.failed",
                30,
                "shipyard.cluster.eu-1",
                rto_seconds=12.5,
                rpo_seconds=60,
            ),
            ev(
                "shipyard.drill.passed", 20, "shipyard.cluster.eu-1", rto_seconds=10, rpo_seconds=30
            ),
            ev("shipyard.drift.detected", 10, "shipyard.app.cart.cart-dev", namespace="cart-dev"),
            ev("shipyard.backup.completed", 5, "shipyard.backup.fleet.us-1", cluster="us-1"),
        ]
    )
    state.add_task_runs([{"id": "t1", "name": "sync-app-abc", "total_run_time": 2.5}])
    state.add_task_runs([{"id": "t1", "name": "sync-app-abc", "total_run_time": 2.5}])  # once
    state.add_flow_runs(
        [{"id": "f1", "end_time": NOW.isoformat(), "parameters": {"cluster": "eu-1"}}], backups=True
    )
    state.set_workers(
        {
            "k8s": [
                {"last_heartbeat_time": (NOW - timedelta(seconds=30)).isoformat()},
                {"last_heartbeat_time": (NOW - timedelta(seconds=300)).isoformat()},
            ]
        },
        NOW,
    )
    snap = build_snapshot(state, NOW, up=True)
    got = samples(SnapshotCollector(snap))
    target = (("app", "cart"), ("cluster", "eu-1"), ("environment", "dev"))
    assert got[("shipyard_deliveries_total", (*target, ("outcome", "succeeded")))] == 1
    assert got[("shipyard_deliveries_total", (*target, ("outcome", "failed")))] == 1
    assert got[("shipyard_rollbacks_total", (*target, ("outcome", "failed")))] == 1
    lead = (("app", "cart"), ("environment", "dev"))
    assert got[("shipyard_lead_time_seconds_sum", lead)] == 1800
    assert got[("shipyard_delivery_duration_seconds_count", (("step", "sync"),))] == 1
    assert got[("shipyard_delivery_duration_seconds_count", (("step", "build"),))] == 0
    assert (
        got[("shipyard_drill_last_success_timestamp_seconds", ())]
        == (NOW - timedelta(minutes=20)).timestamp()
    )
    assert got[("shipyard_drill_rto_seconds", ())] == 10
    assert ("shipyard_drill_last_run_timestamp_seconds", (("outcome", "failed"),)) in got
    drift = (("app", "cart"), ("cluster", ""), ("environment", "cart-dev"))
    assert got[("shipyard_drift_detected", drift)] == 1
    assert got[("shipyard_backup_last_success_timestamp_seconds", (("cluster", "eu-1"),))] == (
        NOW.timestamp()
    )
    assert ("shipyard_backup_last_success_timestamp_seconds", (("cluster", "us-1"),)) in got
    assert got[("shipyard_work_pool_workers_online", (("work_pool", "k8s"),))] == 1
    assert got[("shipyard_exporter_up", ())] == 1
    # the failed rollback is still open: no restore yet, availability below 100
    assert got[("shipyard_dora_change_failure_rate", lead)] == 0.5
    assert got[("shipyard_dora_availability_percent", lead)] < 100
    # nothing waits: the gauge is absent
    assert not any(name == "shipyard_change_pending_since_timestamp_seconds" for name, _ in got)


class DownReader:
    """A Prefect API that is down: every read fails as the real client's would."""

    def _down(self, *args: Any, **kwargs: Any) -> Any:
        raise PrefectUnavailable("Prefect API at http://127.0.0.1:9/api is not reachable")

    read_events = read_task_runs = read_flow_runs = read_workers = _down


def test_refresh_with_the_api_down_keeps_values_and_reports_down() -> None:
    state = ExporterState()
    state.add_events(
        [
            ev(
                "shipyard.delivery.completed",
                5,
                "shipyard.delivery.cart.dev",
                app="cart",
                environment="dev",
                outcome="delivered",
            )
        ]
    )
    state.last_success = 1234.0
    snap = refresh(state, DownReader(), NOW, timedelta(days=1))
    assert snap.up is False and snap.last_refresh == 1234.0
    assert snap.deliveries == {("cart", "dev", "", "succeeded"): 1}
    assert state.event_cursor is None  # the next refresh reads the same window again
