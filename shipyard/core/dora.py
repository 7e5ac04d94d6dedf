"""DORA's four keys and the seed's platform score, computed from the delivery ledger.

Pure functions over :class:`~shipyard.core.ledger.DeliveryRecord` lists: no clock, no
I/O. The definitions are issue 16's, to the letter (``docs/dora.md`` explains them):

- the window is ``[since, until)`` on ``deployed_at``;
- ``deployments`` counts every record in it, ``failures`` the failed ones;
- ``deployment_frequency_per_day`` = succeeded / window days;
- ``lead_time_hours_median`` = median of ``deployed_at - change_time`` over succeeded
  records (those without a ``change_time`` are left out);
- ``change_failure_rate`` = failures / deployments;
- ``time_to_restore_minutes_mean`` = mean of ``restored_at - deployed_at`` over restored
  failed records, 0 when there are none;
- ``availability_percent`` = 100 x (1 - downtime / (window minutes x series)), downtime
  summing ``min(restored_at or until, until) - deployed_at`` over failed records, series
  the distinct (app, environment) pairs among the records;
- ``platform_score`` = 0.6 x availability + 20 x ln(deploy freq) + 100 / (mttr + 1).

Empty windows (documented choices): frequency 0, lead time null without a succeeded
record with a change time, change failure rate null without deployments, availability
null without records, score null without records or with frequency 0. A band is null
when its figure is null; the time-to-restore band is null when no failure was restored
(its figure is 0 then by definition, which must not read as "elite").
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from shipyard.core.errors import ConfigError
from shipyard.core.ledger import DeliveryRecord

__all__ = [
    "DEFAULT_WINDOW",
    "FIGURE_KEYS",
    "Band",
    "Bands",
    "CauseShare",
    "Comparison",
    "DoraFigures",
    "band_change_failure_rate",
    "band_deployment_frequency",
    "band_lead_time",
    "band_time_to_restore",
    "breakdown",
    "cause_shares",
    "compare",
    "compute",
    "default_window",
    "filter_records",
    "in_window",
    "platform_score",
]

Band = Literal["elite", "high", "medium", "low"]
DEFAULT_WINDOW = timedelta(days=30)
DAY_SECONDS = 86_400.0

# The keys of ``shipyard dora --json`` (a contract, issue 16), in print order.
FIGURE_KEYS: tuple[str, ...] = (
    "deployments",
    "failures",
    "deployment_frequency_per_day",
    "lead_time_hours_median",
    "change_failure_rate",
    "time_to_restore_minutes_mean",
    "availability_percent",
    "platform_score",
    "bands",
    "window_days",
)
# Figures a comparison subtracts (after minus before).
NUMERIC_KEYS: tuple[str, ...] = (*FIGURE_KEYS[:8], "window_days")


class Bands(BaseModel):
    """DORA 2023 performance bands of the four keys (null where the figure is)."""

    model_config = ConfigDict(frozen=True)

    deployment_frequency: Band | None
    lead_time: Band | None
    change_failure_rate: Band | None
    time_to_restore: Band | None


class DoraFigures(BaseModel):
    """The figures of one window (and one app/environment filter, if any)."""

    model_config = ConfigDict(frozen=True)

    since: datetime
    until: datetime
    deployments: int
    failures: int
    deployment_frequency_per_day: float
    lead_time_hours_median: float | None
    change_failure_rate: float | None
    time_to_restore_minutes_mean: float
    availability_percent: float | None
    platform_score: float | None
    bands: Bands
    window_days: float

    def to_json_dict(self) -> dict[str, Any]:
        """Exactly the keys of ``shipyard dora --json`` (issue 16), and ``window_days``."""
        data = self.model_dump(mode="json")
        return {key: data[key] for key in FIGURE_KEYS}


class CauseShare(BaseModel):
    """How many failures one cause accounts for, and its share of all failures."""

    model_config = ConfigDict(frozen=True)

    cause: str
    failures: int
    share: float


class Comparison(BaseModel):
    """Two windows side by side: the earlier one is ``before``; change = after - before."""

    model_config = ConfigDict(frozen=True)

    before: DoraFigures
    after: DoraFigures
    change: dict[str, float | None]

    def to_json_dict(self) -> dict[str, Any]:
        """``{"before": {...}, "after": {...}, "change": {...}, "windows": {...}}``."""
        return {
            "before": self.before.to_json_dict(),
            "after": self.after.to_json_dict(),
            "change": dict(self.change),
            "windows": {
                "before": _window_json(self.before),
                "after": _window_json(self.after),
            },
        }


def _window_json(figures: DoraFigures) -> dict[str, str]:
    return {"since": _iso(figures.since), "until": _iso(figures.until)}


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


# --- windows and filters ----------------------------------------------------------------


def default_window(
    now: datetime, since: datetime | None = None, until: datetime | None = None
) -> tuple[datetime, datetime]:
    """``until`` defaults to ``now``, ``since`` to ``until - 30 days``; ConfigError when
    ``since >= until``."""
    end = until if until is not None else now
    start = since if since is not None else end - DEFAULT_WINDOW
    if start >= end:
        raise ConfigError(f"since ({_iso(start)}) must be before until ({_iso(end)})")
    return start, end


def in_window(record: DeliveryRecord, since: datetime, until: datetime) -> bool:
    """True when ``since <= deployed_at < until`` (start included, end excluded)."""
    return since <= record.deployed_at < until


def filter_records(
    records: Iterable[DeliveryRecord], app: str | None = None, environment: str | None = None
) -> list[DeliveryRecord]:
    """The records of ``app`` and ``environment`` (each only when given)."""
    return [
        r
        for r in records
        if (app is None or r.app == app) and (environment is None or r.environment == environment)
    ]


# --- bands ------------------------------------------------------------------------------


def band_deployment_frequency(per_day: float) -> Band:
    """Elite at least daily, high weekly, medium monthly (30 days), low below."""
    if per_day >= 1.0:
        return "elite"
    if per_day >= 1.0 / 7.0:
        return "high"
    if per_day >= 1.0 / 30.0:
        return "medium"
    return "low"


def band_lead_time(hours: float) -> Band:
    """Elite under 24 h, high under a week, medium under 30 days, low longer."""
    if hours < 24.0:
        return "elite"
    if hours < 24.0 * 7:
        return "high"
    if hours < 24.0 * 30:
        return "medium"
    return "low"


def band_change_failure_rate(rate: float) -> Band:
    """Elite at most 5 %, high at most 10 %, medium at most 15 %, low higher."""
    if rate <= 0.05:
        return "elite"
    if rate <= 0.10:
        return "high"
    if rate <= 0.15:
        return "medium"
    return "low"


def band_time_to_restore(minutes: float) -> Band:
    """Elite under an hour, high under a day, medium under a week, low longer."""
    if minutes < 60.0:
        return "elite"
    if minutes < 60.0 * 24:
        return "high"
    if minutes < 60.0 * 24 * 7:
        return "medium"
    return "low"


# --- the figures ------------------------------------------------------------------------


def platform_score(
    availability_percent: float, deploys_per_day: float, mttr_minutes: float
) -> float | None:
    """The seed's ``0.6*availability + 20*ln(deploy_freq) + 100/(mttr+1)``; None when the
    frequency is not positive (ln undefined)."""
    if deploys_per_day <= 0:
        return None
    return (
        0.6 * availability_percent + 20.0 * math.log(deploys_per_day) + 100.0 / (mttr_minutes + 1.0)
    )


def _hours(delta: timedelta) -> float:
    return delta.total_seconds() / 3600.0


def _minutes(delta: timedelta) -> float:
    return delta.total_seconds() / 60.0


def compute(
    records: Iterable[DeliveryRecord],
    since: datetime,
    until: datetime,
    *,
    app: str | None = None,
    environment: str | None = None,
) -> DoraFigures:
    """The DORA figures of the records deployed in ``[since, until)`` (see the module doc).

    ``records`` may hold records outside the window and of other apps; they are left out.
    ConfigError when ``since >= until``.
    """
    if since >= until:
        raise ConfigError(f"since ({_iso(since)}) must be before until ({_iso(until)})")
    chosen = [r for r in filter_records(records, app, environment) if in_window(r, since, until)]
    window = until - since
    window_days = window.total_seconds() / DAY_SECONDS
    succeeded = [r for r in chosen if r.outcome == "succeeded"]
    failed = [r for r in chosen if r.outcome == "failed"]

    frequency = len(succeeded) / window_days
    lead_times = [
        _hours(r.deployed_at - r.change_time) for r in succeeded if r.change_time is not None
    ]
    lead_time = statistics.median(lead_times) if lead_times else None
    failure_rate = len(failed) / len(chosen) if chosen else None
    restores = [
        _minutes(r.restored_at - r.deployed_at) for r in failed if r.restored_at is not None
    ]
    mttr = statistics.fmean(restores) if restores else 0.0

    availability: float | None = None
    if chosen:
        series = len({(r.app, r.environment) for r in chosen})
        downtime = sum(
            max(0.0, _minutes(min(r.restored_at or until, until) - r.deployed_at)) for r in failed
        )
        availability = max(0.0, 100.0 * (1.0 - downtime / (_minutes(window) * series)))
    score = platform_score(availability, frequency, mttr) if availability is not None else None

    return DoraFigures(
        since=since,
        until=until,
        deployments=len(chosen),
        failures=len(failed),
        deployment_frequency_per_day=frequency,
        lead_time_hours_median=lead_time,
        change_failure_rate=failure_rate,
        time_to_restore_minutes_mean=mttr,
        availability_percent=availability,
        platform_score=score,
        bands=Bands(
            deployment_frequency=band_deployment_frequency(frequency),
            lead_time=band_lead_time(lead_time) if lead_time is not None else None,
            change_failure_rate=(
                band_change_failure_rate(failure_rate) if failure_rate is not None else None
            ),
            time_to_restore=band_time_to_restore(mttr) if restores else None,
        ),
        window_days=window_days,
    )


# --- breakdowns and comparisons ----------------------------------------------------------


def breakdown(
    records: Iterable[DeliveryRecord],
    since: datetime,
    until: datetime,
    by: Literal["app", "environment"],
    *,
    app: str | None = None,
    environment: str | None = None,
) -> dict[str, DoraFigures]:
    """The figures per app or per environment (groups with a record in the window),
    sorted by name."""
    key: Callable[[DeliveryRecord], str] = (
        (lambda r: r.app) if by == "app" else (lambda r: r.environment)
    )
    chosen = [r for r in filter_records(records, app, environment) if in_window(r, since, until)]
    groups = sorted({key(r) for r in chosen})
    return {g: compute([r for r in chosen if key(r) == g], since, until) for g in groups}


def cause_shares(
    records: Iterable[DeliveryRecord],
    since: datetime,
    until: datetime,
    *,
    app: str | None = None,
    environment: str | None = None,
) -> list[CauseShare]:
    """The seed's failure causes: each cause's count and share of the window's failures,
    most frequent first (``unknown`` for a failed record without a cause)."""
    failed = [
        r
        for r in filter_records(records, app, environment)
        if in_window(r, since, until) and r.outcome == "failed"
    ]
    counts = Counter(r.cause or "unknown" for r in failed)
    total = len(failed)
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [CauseShare(cause=c, failures=n, share=n / total) for c, n in ordered]


def _delta(after: Any, before: Any) -> float | None:
    if isinstance(after, int | float) and isinstance(before, int | float):
        return float(after) - float(before)
    return None


def compare(
    records: Sequence[DeliveryRecord],
    first: tuple[datetime, datetime],
    second: tuple[datetime, datetime],
    *,
    app: str | None = None,
    environment: str | None = None,
) -> Comparison:
    """Two windows side by side; the one that starts earlier is ``before`` (the seed's
    before/after table), and ``change`` is after minus before (null where either is)."""
    a = compute(records, *first, app=app, environment=environment)
    b = compute(records, *second, app=app, environment=environment)
    before, after = (a, b) if (a.since, a.until) <= (b.since, b.until) else (b, a)
    change = {key: _delta(getattr(after, key), getattr(before, key)) for key in NUMERIC_KEYS}
    return Comparison(before=before, after=after, change=change)
