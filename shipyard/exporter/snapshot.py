"""What the exporter knows, and the figures it serves: pure, apart from :func:`refresh`.

:class:`ExporterState` accumulates what was read from Prefect (events by id, finished
task and flow runs once each), so counters and histograms only grow while the process
lives. :func:`build_snapshot` turns it into an immutable :class:`Snapshot` (every metric
value, computed once per refresh); the collector renders the last one. :func:`refresh`
is the one impure step: it reads the API incrementally (by event time, with an overlap
because the server stores events a few seconds after it accepts them) and, when the API
is down, keeps everything and only marks the snapshot ``up = False``.

Events are kept for the whole life of the process (a few thousand a month), so the
ledger's records, and with them ``shipyard_deliveries_total``, never shrink.
"""

from __future__ import annotations

import bisect
import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from shipyard.core.ledger import DeliveryRecord
from shipyard.core.ledger_events import (
    EVENT_FAILED,
    Event,
    blocked_attempts,
    derive_records,
    parse_time,
    pending_changes,
)

try:  # the DORA figures (helper DORA's module); the exporter works without them
    from shipyard.core import dora as _dora
except ImportError:  # pragma: no cover - only while that module is absent
    _dora = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

__all__ = [
    "DELIVERY_FLOWS",
    "DURATION_BUCKETS",
    "LEAD_TIME_BUCKETS",
    "STEPS",
    "ExporterState",
    "Histogram",
    "Snapshot",
    "build_snapshot",
    "refresh",
    "step_of",
]

STEPS = ("build", "scan", "push", "gitops", "sync", "verify", "total")
DURATION_BUCKETS = (1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)
LEAD_TIME_BUCKETS = (
    60.0,
    300.0,
    900.0,
    1800.0,
    3600.0,
    7200.0,
    14400.0,
    43200.0,
    86400.0,
    259200.0,
    604800.0,
    2592000.0,
)
DELIVERY_FLOWS = ("deliver", "promote")
STEP_FLOWS = (*DELIVERY_FLOWS, "sync-and-verify", "build_scan_push")
BACKUP_FLOWS = ("backup",)
WORKER_ONLINE = timedelta(seconds=90)
OVERLAP = timedelta(minutes=10)
DORA_WINDOW = timedelta(days=30)

_TASK_STEPS = {
    "build_image": "build",
    "scan_image": "scan",
    "scan_source": "scan",
    "scan_gate": "scan",
    "push_image": "push",
    "commit-and-push": "gitops",
    "open-pull-request": "gitops",
    "sync-app": "sync",
    "verify-rollout": "verify",
    "smoke-check": "verify",
    "metric-gate": "verify",
    "anomaly-gate": "verify",
}


def step_of(task_run_name: str) -> str | None:
    """The delivery step of a task run (``sync-app-3f1`` -> ``sync``), else None."""
    if task_run_name in _TASK_STEPS:
        return _TASK_STEPS[task_run_name]
    return _TASK_STEPS.get(task_run_name.rsplit("-", 1)[0])


@dataclass
class Histogram:
    """Cumulative bucket counts of observations (``le`` bounds, +Inf implied)."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * len(self.bounds)

    def observe(self, value: float) -> None:
        """Count ``value`` in every bucket whose bound it does not exceed."""
        for i in range(bisect.bisect_left(self.bounds, value), len(self.bounds)):
            self.counts[i] += 1
        self.total += value
        self.count += 1

    def buckets(self) -> list[tuple[str, float]]:
        """``(le, cumulative count)`` pairs, ending with ``+Inf``."""
        pairs = [(_le(b), float(c)) for b, c in zip(self.bounds, self.counts, strict=True)]
        return [*pairs, ("+Inf", float(self.count))]


def _le(bound: float) -> str:
    return str(int(bound)) if bound.is_integer() else str(bound)


@dataclass
class ExporterState:
    """Everything read so far (mutable; one refresher thread writes it)."""

    events: dict[str, Event] = field(default_factory=dict)
    steps: dict[str, Histogram] = field(
        default_factory=lambda: {s: Histogram(DURATION_BUCKETS) for s in STEPS}
    )
    seen_runs: set[str] = field(default_factory=set)
    backups: dict[str, float] = field(default_factory=dict)
    workers: dict[str, int] = field(default_factory=dict)
    event_cursor: datetime | None = None
    run_cursor: datetime | None = None
    last_success: float | None = None
    last_error: str = ""

    def add_events(self, raw: Iterable[Mapping[str, Any]]) -> int:
        """Keep new events (by id); how many were new."""
        new = 0
        for item in raw:
            event = Event.model_validate(item)
            if event.id not in self.events:
                self.events[event.id] = event
                new += 1
        return new

    def add_task_runs(self, runs: Iterable[Mapping[str, Any]]) -> None:
        """Observe each finished delivery task run's duration once, under its step."""
        for run in runs:
            step = step_of(str(run.get("name", "")))
            if step is None or not self._first(f"task:{run.get('id')}"):
                continue
            self.steps[step].observe(float(run.get("total_run_time") or 0.0))

    def add_flow_runs(self, runs: Iterable[Mapping[str, Any]], *, backups: bool) -> None:
        """Delivery runs: their total duration; backup runs: the cluster's last success."""
        for run in runs:
            if not self._first(f"flow:{run.get('id')}"):
                continue
            if backups:
                ended = parse_time(run.get("end_time"))
                cluster = str((run.get("parameters") or {}).get("cluster") or "default")
                if ended is not None:
                    self._backup(cluster, ended.timestamp())
            elif not run.get("parent_task_run_id"):
                self.steps["total"].observe(float(run.get("total_run_time") or 0.0))

    def _first(self, key: str) -> bool:
        if key in self.seen_runs:
            return False
        self.seen_runs.add(key)
        return True

    def _backup(self, cluster: str, at: float) -> None:
        self.backups[cluster] = max(at, self.backups.get(cluster, 0.0))

    def set_workers(self, pools: Mapping[str, list[dict[str, Any]]], now: datetime) -> None:
        """Workers per pool that sent a heartbeat in the last 90 s."""
        self.workers = {
            pool: sum(
                1
                for w in workers
                if (beat := parse_time(w.get("last_heartbeat_time"))) is not None
                and now - beat <= WORKER_ONLINE
            )
            for pool, workers in pools.items()
        }


Labels = tuple[str, ...]


@dataclass(frozen=True)
class Snapshot:
    """Every value the exporter serves, as of one refresh (immutable)."""

    up: bool = False
    last_refresh: float | None = None
    deliveries: Mapping[Labels, int] = field(default_factory=dict)
    rollbacks: Mapping[Labels, int] = field(default_factory=dict)
    blocked: Mapping[Labels, int] = field(default_factory=dict)
    steps: Mapping[str, Histogram] = field(default_factory=dict)
    lead_times: Mapping[Labels, Histogram] = field(default_factory=dict)
    backups: Mapping[str, float] = field(default_factory=dict)
    drill_last_success: float | None = None
    drill_last_run: Mapping[str, float] = field(default_factory=dict)
    drill_rto: float | None = None
    drill_rpo: float | None = None
    pending: Mapping[Labels, float] = field(default_factory=dict)
    drift: Mapping[Labels, int] = field(default_factory=dict)
    workers: Mapping[str, int] = field(default_factory=dict)
    dora: Mapping[str, Mapping[Labels, float]] = field(default_factory=dict)
    records: tuple[DeliveryRecord, ...] = ()


def _copy(h: Histogram) -> Histogram:
    return Histogram(h.bounds, list(h.counts), h.total, h.count)


def _drift_labels(event: Event) -> Labels:
    parts = event.resource_id.split(".")
    app = parts[2] if len(parts) > 2 else ""
    p = event.payload
    environment = str(p.get("environment") or p.get("namespace") or ".".join(parts[3:4]))
    return app, environment, str(p.get("cluster") or event.target()[2] or "")


def _dora_gauges(records: list[DeliveryRecord], now: datetime) -> dict[str, dict[Labels, float]]:
    """The 30-day DORA figures per app and environment (empty without the module)."""
    out: dict[str, dict[Labels, float]] = {}
    if _dora is None:
        return out
    since = now - DORA_WINDOW
    pairs: dict[tuple[str, str], list[DeliveryRecord]] = {}
    for r in records:  # each pair's own records: compute need not scan them all
        if r.deployed_at >= since:
            pairs.setdefault((r.app, r.environment), []).append(r)
    for (app, environment), own in sorted(pairs.items()):
        figures = _dora.compute(own, since, now, app=app, environment=environment)
        values = {
            "deployment_frequency_per_day": figures.deployment_frequency_per_day,
            "lead_time_hours_median": figures.lead_time_hours_median,
            "change_failure_rate": figures.change_failure_rate,
            "time_to_restore_minutes_mean": figures.time_to_restore_minutes_mean,
            "availability_percent": figures.availability_percent,
            "platform_score": figures.platform_score,
        }
        for name, value in values.items():
            if value is not None:
                out.setdefault(name, {})[(app, environment)] = float(value)
    return out


def build_snapshot(state: ExporterState, now: datetime, *, up: bool) -> Snapshot:
    """Every figure from ``state`` as of ``now`` (pure)."""
    events = sorted(state.events.values(), key=lambda e: (e.occurred, e.id))
    records = derive_records(events)
    deliveries: Counter[Labels] = Counter(
        (r.app, r.environment, r.cluster or "", str(r.outcome)) for r in records
    )
    lead: dict[Labels, Histogram] = {}
    for r in records:
        if r.outcome == "succeeded" and r.change_time is not None:
            seconds = max(0.0, (r.deployed_at - r.change_time).total_seconds())
            lead.setdefault((r.app, r.environment), Histogram(LEAD_TIME_BUCKETS)).observe(seconds)
    rollbacks: Counter[Labels] = Counter()
    drift: dict[Labels, int] = {}
    backups = dict(state.backups)
    drill_runs: dict[str, float] = {}
    drill_success: float | None = None
    rto = rpo = None
    for e in events:
        at = e.occurred.timestamp()
        if e.event == EVENT_FAILED:
            app, environment, cluster = e.target()
            outcome = "failed" if e.payload.get("rollback_error") else "succeeded"
            rollbacks[(app, environment, cluster or "", outcome)] += 1
        elif e.event in ("shipyard.drift.detected", "shipyard.drift.clean"):
            drift[_drift_labels(e)] = int(e.event == "shipyard.drift.detected")
        elif e.event == "shipyard.backup.completed":
            cluster = str(e.payload.get("cluster") or e.resource_id.rsplit(".", 1)[-1])
            backups[cluster] = max(at, backups.get(cluster, 0.0))
        elif e.event in ("shipyard.drill.passed", "shipyard.drill.failed"):
            outcome = "passed" if e.event.endswith("passed") else "failed"
            drill_runs[outcome] = at
            if outcome == "passed":
                drill_success = at
            if e.payload.get("rto_seconds") is not None:
                rto = float(e.payload["rto_seconds"])
                rpo = float(e.payload.get("rpo_seconds") or 0.0)
    blocked: Counter[Labels] = Counter(
        (b.app, b.environment, b.cause) for b in blocked_attempts(events) if b.app
    )
    pending: dict[Labels, float] = {
        pair: since.timestamp() for pair, since in pending_changes(events).items()
    }
    return Snapshot(
        up=up,
        last_refresh=state.last_success,
        deliveries=dict(deliveries),
        rollbacks=dict(rollbacks),
        blocked=dict(blocked),
        steps={s: _copy(h) for s, h in state.steps.items()},
        lead_times=lead,
        backups=backups,
        drill_last_success=drill_success,
        drill_last_run=drill_runs,
        drill_rto=rto,
        drill_rpo=rpo,
        pending=pending,
        drift=drift,
        workers=dict(state.workers),
        dora=_dora_gauges(records, now),
        records=tuple(records),
    )


class Reader(Protocol):
    """What :func:`refresh` reads (see :class:`~shipyard.exporter.prefect_api.PrefectReader`)."""

    def read_events(self, since: datetime, until: datetime) -> Iterable[dict[str, Any]]: ...

    def read_task_runs(
        self, flows: tuple[str, ...], ended_after: datetime
    ) -> Iterable[dict[str, Any]]: ...

    def read_flow_runs(
        self, flows: tuple[str, ...], ended_after: datetime, states: tuple[str, ...]
    ) -> Iterable[dict[str, Any]]: ...

    def read_workers(self) -> dict[str, list[dict[str, Any]]]: ...


def refresh(state: ExporterState, reader: Reader, now: datetime, lookback: timedelta) -> Snapshot:
    """Read what is new since the last refresh (the first reads ``lookback``) and build
    the snapshot; on any API failure keep what is known and report ``up = False``."""
    since = (state.event_cursor or now - lookback) - OVERLAP
    runs_since = (state.run_cursor or now - lookback) - OVERLAP
    try:
        state.add_events(reader.read_events(since, now))
        state.add_task_runs(reader.read_task_runs(STEP_FLOWS, runs_since))
        state.add_flow_runs(
            reader.read_flow_runs(DELIVERY_FLOWS, runs_since, ("COMPLETED", "FAILED")),
            backups=False,
        )
        state.add_flow_runs(
            reader.read_flow_runs(BACKUP_FLOWS, runs_since, ("COMPLETED",)), backups=True
        )
        state.set_workers(reader.read_workers(), now)
    except Exception as exc:  # noqa: BLE001 - any failure: keep the last values, up 0
        if str(exc) != state.last_error:  # say it once, not every interval
            log.warning("exporter: refresh failed, keeping the last values: %s", exc)
        state.last_error = str(exc)
        return build_snapshot(state, now, up=False)
    if state.last_error:
        log.warning("exporter: the Prefect API answers again")
        state.last_error = ""
    state.event_cursor = state.run_cursor = now
    state.last_success = now.timestamp()
    return build_snapshot(state, now, up=True)
