"""Render the last :class:`~shipyard.exporter.snapshot.Snapshot` as Prometheus metrics.

A custom collector on a registry of its own: a scrape never reads Prefect, it renders
what the last refresh computed, so scrapes are cheap and consistent. Metric names and
labels are the contract of ``docs/observability.md`` (metrics_contract).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from shipyard.exporter.snapshot import Labels, Snapshot

__all__ = ["SnapshotCollector"]

DORA_HELP = {
    "deployment_frequency_per_day": "Succeeded deployments per day, last 30 days.",
    "lead_time_hours_median": "Median change-to-running time in hours, last 30 days.",
    "change_failure_rate": "Failed / all deployments, last 30 days.",
    "time_to_restore_minutes_mean": "Mean minutes from a failed deployment to restored.",
    "availability_percent": "100 x (1 - downtime / window), last 30 days.",
    "platform_score": "0.6*availability + 20*ln(deploy_freq) + 100/(mttr+1).",
}


def _counter(
    name: str, doc: str, labels: list[str], values: Mapping[Labels, int]
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=labels)
    for key, value in sorted(values.items()):
        family.add_metric(list(key), float(value))
    return family


def _gauge(
    name: str, doc: str, labels: list[str], values: Mapping[Labels, float]
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=labels)
    for key, value in sorted(values.items()):
        family.add_metric(list(key), value)
    return family


class SnapshotCollector(Collector):
    """A prometheus_client collector serving the snapshot it was last given."""

    def __init__(self, snapshot: Snapshot | None = None) -> None:
        self._lock = threading.Lock()
        self._snapshot = snapshot or Snapshot()

    def update(self, snapshot: Snapshot) -> None:
        """Serve ``snapshot`` from now on."""
        with self._lock:
            self._snapshot = snapshot

    @property
    def snapshot(self) -> Snapshot:
        """The snapshot being served."""
        with self._lock:
            return self._snapshot

    def collect(self) -> Iterator[Metric]:
        """Every Shipyard metric of the current snapshot."""
        s = self.snapshot
        target = ["app", "environment", "cluster", "outcome"]
        yield _counter(
            "shipyard_deliveries",
            "Deployments (ledger records) by outcome: succeeded or failed.",
            target,
            s.deliveries,
        )
        yield _counter(
            "shipyard_rollbacks",
            "Automatic rollbacks; outcome failed when the rollback itself failed.",
            target,
            s.rollbacks,
        )
        yield _counter(
            "shipyard_delivery_attempts_blocked",
            "Delivery attempts that failed before changing the environment (no deployment).",
            ["app", "environment", "cause"],
            s.blocked,
        )
        steps = HistogramMetricFamily(
            "shipyard_delivery_duration_seconds",
            "Duration of delivery steps (task runs) and whole deliveries (total).",
            labels=["step"],
        )
        for step, hist in s.steps.items():
            steps.add_metric([step], hist.buckets(), hist.total)
        yield steps
        lead = HistogramMetricFamily(
            "shipyard_lead_time_seconds",
            "Change (commit or push) to running, for succeeded deployments.",
            labels=["app", "environment"],
        )
        for key, hist in sorted(s.lead_times.items()):
            lead.add_metric(list(key), hist.buckets(), hist.total)
        yield lead
        yield _gauge(
            "shipyard_backup_last_success_timestamp_seconds",
            "Unix time of the last successful backup per cluster.",
            ["cluster"],
            {(c,): t for c, t in s.backups.items()},
        )
        yield _gauge(
            "shipyard_drill_last_success_timestamp_seconds",
            "Unix time of the last passed restore drill.",
            [],
            {(): s.drill_last_success} if s.drill_last_success is not None else {},
        )
        yield _gauge(
            "shipyard_drill_last_run_timestamp_seconds",
            "Unix time of the last restore drill per outcome (passed or failed).",
            ["outcome"],
            {(o,): t for o, t in s.drill_last_run.items()},
        )
        yield _gauge(
            "shipyard_drill_rto_seconds",
            "Recovery time of the last restore drill.",
            [],
            {(): s.drill_rto} if s.drill_rto is not None else {},
        )
        yield _gauge(
            "shipyard_drill_rpo_seconds",
            "Recovery point (age of the backup) of the last restore drill.",
            [],
            {(): s.drill_rpo} if s.drill_rpo is not None else {},
        )
        yield _gauge(
            "shipyard_change_pending_since_timestamp_seconds",
            "Unix time of the oldest change not yet running; absent when nothing waits.",
            ["app", "environment"],
            s.pending,
        )
        yield _gauge(
            "shipyard_drift_detected",
            "1 when the last drift check found drift, else 0.",
            ["app", "environment", "cluster"],
            {k: float(v) for k, v in s.drift.items()},
        )
        yield _gauge(
            "shipyard_work_pool_workers_online",
            "Workers of the pool that polled in the last 90 s.",
            ["work_pool"],
            {(p,): float(n) for p, n in s.workers.items()},
        )
        for name, doc in DORA_HELP.items():
            yield _gauge(f"shipyard_dora_{name}", doc, ["app", "environment"], s.dora.get(name, {}))
        yield _gauge(
            "shipyard_exporter_up",
            "1 when the last refresh read the Prefect API, 0 when it failed.",
            [],
            {(): 1.0 if s.up else 0.0},
        )
        yield _gauge(
            "shipyard_exporter_last_refresh_timestamp_seconds",
            "Unix time of the last successful refresh from the Prefect API.",
            [],
            {(): s.last_refresh} if s.last_refresh is not None else {},
        )
