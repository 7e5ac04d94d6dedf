"""The DORA report: figures over time buckets, charts as PNG, stored in S3, and the
table and markdown a flow publishes for them.

The figures are :mod:`shipyard.core.dora`'s; this step adds what a daily report needs:
the window cut into buckets (deploy frequency and lead time over time), the seed's
failure causes, three charts rendered with matplotlib's Agg backend (no display), the
PNGs uploaded to the report bucket with presigned links for Prefect's image artifacts,
and the ledger read from a JSON Lines file or from the Prefect events API (the events
``shipyard.delivery.completed`` / ``failed``, turned into records by
:func:`shipyard.core.ledger_events.derive_records`). No Prefect import: the wrappers in
:mod:`tasks.steps.dora` build the ports and the flow publishes the result.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field

from shipyard.core.dora import (
    CauseShare,
    DoraFigures,
    breakdown,
    cause_shares,
    compute,
    default_window,
    filter_records,
    in_window,
)
from shipyard.core.errors import ConfigError, PermanentError, TransientError, is_transient
from shipyard.core.ledger import DeliveryRecord, parse_records
from shipyard.core.ledger_events import EVENT_DELIVERED, EVENT_FAILED, derive_records
from shipyard.core.s3 import S3Store

__all__ = [
    "CHART_NAMES",
    "ChartLink",
    "DoraReport",
    "DoraReportConfig",
    "TimeBucket",
    "build_report",
    "figure_table",
    "ledger_from_api",
    "read_delivery_events",
    "read_records_file",
    "render_charts",
    "render_markdown",
    "time_buckets",
    "upload_charts",
]

CHART_NAMES: tuple[str, ...] = ("deploy-frequency", "lead-time", "failure-causes")
EVENTS_PAGE = 50  # the events API's largest page
LOOKBACK = timedelta(days=30)  # events read before the window (promotions' change times)
PRESIGN_SECONDS = 7 * 24 * 3600  # the longest SigV4 presigned URL


class DoraReportConfig(BaseModel):
    """What one DORA report covers and where its charts go."""

    model_config = ConfigDict(extra="forbid")

    since: datetime | None = Field(None, description="Window start (default until - days).")
    until: datetime | None = Field(None, description="Window end, excluded (default now).")
    days: float = Field(30.0, gt=0, description="Window length when since is not given.")
    app: str | None = Field(None, description="Only this app.")
    environment: str | None = Field(None, description="Only this environment.")
    bucket_days: float = Field(1.0, gt=0, description="Length of one time bucket, in days.")
    prefix: str = Field("shipyard-reports/dora", description="Key prefix of the charts in S3.")

    def window(self, now: datetime) -> tuple[datetime, datetime]:
        """``[since, until)`` with the defaults applied; ConfigError when empty."""
        until = self.until or now
        return default_window(now, self.since or until - timedelta(days=self.days), until)


class TimeBucket(BaseModel):
    """One slice of the window: its deployments and the figures over time."""

    model_config = ConfigDict(frozen=True)

    start: datetime
    end: datetime
    succeeded: int
    failures: int
    deployment_frequency_per_day: float
    lead_time_hours_median: float | None


class ChartLink(BaseModel):
    """A chart stored in S3 and the link an image artifact shows."""

    model_config = ConfigDict(frozen=True)

    name: str
    key: str
    url: str
    bytes: int


class DoraReport(BaseModel):
    """Everything the dora-report flow publishes."""

    figures: DoraFigures
    causes: list[CauseShare]
    buckets: list[TimeBucket]
    charts: list[ChartLink]
    table: list[dict[str, Any]]
    markdown: str
    records: int = Field(description="Ledger records read (all windows and apps).")


# --- reading the ledger -------------------------------------------------------------------


def read_records_file(path: Path, label: str = "records") -> list[DeliveryRecord]:
    """Every record of a JSON Lines ledger; ConfigError for a missing or unreadable file
    and for a malformed line (``<path> line N: ...``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{label}: no such file: {path}") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{label}: cannot read {path}: {type(exc).__name__}") from None
    return list(parse_records(text.splitlines(), source=str(path)))


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def read_delivery_events(
    client: httpx.Client, since: datetime, until: datetime | None = None
) -> list[dict[str, Any]]:
    """The delivery outcome events that occurred in ``[since, until]`` (every page), from
    Prefect's ``POST /events/filter``; ``client`` is bound to the API URL."""
    occurred: dict[str, str] = {"since": _iso(since)}
    if until is not None:
        occurred["until"] = _iso(until)
    body = {
        "filter": {
            "occurred": occurred,
            "event": {"name": [EVENT_DELIVERED, EVENT_FAILED]},
            "order": "ASC",
        },
        "limit": EVENTS_PAGE,
    }
    events: list[dict[str, Any]] = []
    response = _call(lambda: client.post("events/filter", json=body))
    while True:
        page = response.json()
        events.extend(page.get("events") or [])
        next_page = page.get("next_page")
        if not next_page:
            return events
        # re-rooted on our base URL: the server builds the link from the Host it saw,
        # which behind a proxy or a port-forward is not ours
        query = urlsplit(str(next_page)).query
        response = _call(lambda path=f"events/filter/next?{query}": client.get(path))


def _call(send: Any) -> httpx.Response:
    """One events API call; the error split: 5xx and network trouble are transient."""
    try:
        response: httpx.Response = send()
    except httpx.HTTPError as exc:
        raise TransientError(f"Prefect events API: {type(exc).__name__}: {exc}") from None
    if response.status_code >= 500 or response.status_code == 429:
        raise TransientError(f"Prefect events API answered {response.status_code}")
    if response.status_code >= 400:
        raise PermanentError(f"Prefect events API answered {response.status_code}")
    return response


def ledger_from_api(
    api_url: str,
    since: datetime,
    until: datetime,
    *,
    headers: dict[str, str] | None = None,
    now: datetime | None = None,
) -> list[DeliveryRecord]:
    """The ledger around ``[since, until)`` derived from the Prefect API's events.

    Events are read from ``since - 30 days`` (a promotion takes its change time from an
    earlier record of the same digest) up to now (a failure is restored by a later
    event); the caller's window then picks the records.
    """
    try:
        with httpx.Client(
            base_url=api_url.rstrip("/") + "/", headers=headers or {}, timeout=30.0
        ) as client:
            events = read_delivery_events(client, since - LOOKBACK, now)
    except Exception as exc:
        if is_transient(exc) and not isinstance(exc, TransientError):
            raise TransientError(f"Prefect events API: {exc}") from None
        raise
    return derive_records(events)


# --- figures over time --------------------------------------------------------------------


def time_buckets(
    records: Sequence[DeliveryRecord],
    since: datetime,
    until: datetime,
    bucket_days: float = 1.0,
) -> list[TimeBucket]:
    """``[since, until)`` cut into buckets of ``bucket_days`` (the last one may be
    shorter), each with its succeeded and failed deployments, deploy frequency and
    median lead time (the definitions of :func:`shipyard.core.dora.compute`)."""
    step = timedelta(days=bucket_days)
    buckets: list[TimeBucket] = []
    start = since
    while start < until:
        end = min(start + step, until)
        f = compute(records, start, end)
        buckets.append(
            TimeBucket(
                start=start,
                end=end,
                succeeded=f.deployments - f.failures,
                failures=f.failures,
                deployment_frequency_per_day=f.deployment_frequency_per_day,
                lead_time_hours_median=f.lead_time_hours_median,
            )
        )
        start = end
    return buckets


def figure_table(
    records: Sequence[DeliveryRecord], since: datetime, until: datetime
) -> list[dict[str, Any]]:
    """One row per app and environment of the window (then ``all``): the table artifact."""
    rows: list[dict[str, Any]] = []
    for app in breakdown(records, since, until, "app"):
        for env in breakdown(records, since, until, "environment", app=app):
            rows.append(_row(app, env, compute(records, since, until, app=app, environment=env)))
    rows.append(_row("all", "all", compute(records, since, until)))
    return rows


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _row(app: str, environment: str, f: DoraFigures) -> dict[str, Any]:
    return {
        "app": app,
        "environment": environment,
        "deployments": f.deployments,
        "failures": f.failures,
        "deployment_frequency_per_day": _round(f.deployment_frequency_per_day),
        "lead_time_hours_median": _round(f.lead_time_hours_median),
        "change_failure_rate": _round(f.change_failure_rate),
        "time_to_restore_minutes_mean": _round(f.time_to_restore_minutes_mean, 1),
        "availability_percent": _round(f.availability_percent),
        "platform_score": _round(f.platform_score, 1),
    }


# --- charts -------------------------------------------------------------------------------


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def render_charts(buckets: Sequence[TimeBucket], causes: Sequence[CauseShare]) -> dict[str, bytes]:
    """The three charts as PNG bytes, keyed by :data:`CHART_NAMES`: deployments per bucket
    (succeeded and failed stacked, frequency per day as a line), median lead time per
    bucket, and the failure causes' shares."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.dates import date2num
    from matplotlib.figure import Figure  # a Figure needs no pyplot state (thread-safe)

    days = date2num([b.start for b in buckets])
    span = date2num([buckets[0].start, buckets[-1].end]) if buckets else None
    width = min((b.end - b.start).total_seconds() / 86_400 for b in buckets) * 0.8 if buckets else 1
    charts: dict[str, bytes] = {}

    fig = Figure(figsize=(8, 3.5))
    ax = fig.add_subplot()
    ax.bar(
        days,
        [b.succeeded for b in buckets],
        width=width,
        align="edge",
        color="#2e7d32",
        label="succeeded",
    )
    ax.bar(
        days,
        [b.failures for b in buckets],
        width=width,
        align="edge",
        bottom=[b.succeeded for b in buckets],
        color="#c62828",
        label="failed",
    )
    ax.xaxis_date()
    if span is not None:
        ax.set_xlim(span[0], span[1])
    ax.set_ylabel("deployments")
    ax.set_title("Deployments over time")
    twin = ax.twinx()
    twin.plot(
        days + width / 2,
        [b.deployment_frequency_per_day for b in buckets],
        color="#1565c0",
        label="per day",
    )
    twin.set_ylabel("succeeded per day")
    ax.legend(loc="upper left")
    fig.autofmt_xdate()
    charts["deploy-frequency"] = _png(fig)

    fig = Figure(figsize=(8, 3.5))
    ax = fig.add_subplot()
    lead = [
        b.lead_time_hours_median if b.lead_time_hours_median is not None else math.nan
        for b in buckets
    ]
    ax.plot(days, lead, marker="o", color="#6a1b9a")
    ax.xaxis_date()
    if span is not None:
        ax.set_xlim(span[0], span[1])
    ax.set_ylabel("median lead time (h)")
    ax.set_title("Lead time for changes over time")
    fig.autofmt_xdate()
    charts["lead-time"] = _png(fig)

    fig = Figure(figsize=(6, 3.5))
    ax = fig.add_subplot()
    if causes:
        ax.barh(
            [c.cause for c in causes][::-1], [100 * c.share for c in causes][::-1], color="#ef6c00"
        )
        ax.set_xlabel("share of failures (%)")
        ax.set_xlim(0, 100)
    else:
        ax.text(0.5, 0.5, "no failures in the window", ha="center", va="center")
        ax.set_axis_off()
    ax.set_title("Failure causes")
    charts["failure-causes"] = _png(fig)
    return charts


# --- storage and report -------------------------------------------------------------------


def upload_charts(
    store: S3Store, prefix: str, until: datetime, charts: dict[str, bytes]
) -> list[ChartLink]:
    """Put each PNG under ``<prefix>/<until>/<name>.png`` and presign a GET link (7 days,
    SigV4's longest) for the image artifacts."""
    stamp = until.strftime("%Y%m%dT%H%M%SZ")
    links: list[ChartLink] = []
    for name, data in charts.items():
        key = f"{prefix.strip('/')}/{stamp}/{name}.png"
        _put_png(store, key, data)
        url = store.client.generate_presigned_url(
            "get_object", Params={"Bucket": store.bucket, "Key": key}, ExpiresIn=PRESIGN_SECONDS
        )
        links.append(ChartLink(name=name, key=key, url=str(url), bytes=len(data)))
    return links


def _put_png(store: S3Store, key: str, data: bytes) -> None:
    """One PNG with its content type (the store's own ``put`` writes JSON)."""
    try:
        store.client.put_object(
            Bucket=store.bucket,
            Key=key,
            Body=data,
            ContentType="image/png",
            ServerSideEncryption="AES256",
        )
    except Exception as exc:  # noqa: BLE001 - translated into the error split
        code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
        if code == "NoSuchBucket":
            raise ConfigError(f"bucket {store.bucket!r} does not exist") from None
        if is_transient(exc):
            raise TransientError(f"S3 put {key} failed: {exc}") from None
        raise PermanentError(f"S3 put {key} failed: {type(exc).__name__}: {exc}") from None


def _fmt(value: float | None, unit: str = "", digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"


def render_markdown(
    figures: DoraFigures,
    causes: Sequence[CauseShare],
    charts: Sequence[ChartLink],
    *,
    app: str | None = None,
    environment: str | None = None,
) -> str:
    """The report as markdown: the four keys with their bands, availability and the
    platform score, the failure causes, and the charts."""
    b = figures.bands
    scope = ", ".join(
        s
        for s in (f"app {app}" if app else "", f"environment {environment}" if environment else "")
        if s
    )
    rate = None if figures.change_failure_rate is None else 100 * figures.change_failure_rate
    rows = [
        (
            "deployment frequency",
            _fmt(figures.deployment_frequency_per_day, " /day"),
            b.deployment_frequency,
        ),
        ("lead time (median)", _fmt(figures.lead_time_hours_median, " h"), b.lead_time),
        ("change failure rate", _fmt(rate, " %", 1), b.change_failure_rate),
        (
            "time to restore (mean)",
            _fmt(figures.time_to_restore_minutes_mean, " min", 1),
            b.time_to_restore,
        ),
        ("availability", _fmt(figures.availability_percent, " %", 3), None),
        ("platform score", _fmt(figures.platform_score, "", 1), None),
    ]
    lines = [
        f"# DORA report: {_iso(figures.since)} to {_iso(figures.until)}",
        "",
        f"{figures.window_days:g} days{', ' + scope if scope else ''}; "
        f"{figures.deployments} deployments, {figures.failures} failed.",
        "",
        "| metric | value | DORA 2023 band |",
        "|---|---|---|",
        *(f"| {name} | {value} | {band or ''} |" for name, value, band in rows),
        "",
        "platform score = 0.6 * availability (%) + 20 * ln(deployments per day)"
        " + 100 / (MTTR minutes + 1)",
        "",
        "## Failure causes",
        "",
    ]
    if causes:
        lines += ["| cause | failures | share |", "|---|---|---|"]
        lines += [f"| {c.cause} | {c.failures} | {100 * c.share:.1f} % |" for c in causes]
    else:
        lines.append("No failed deployments in the window.")
    if charts:
        lines += ["", "## Charts", ""]
        lines += [f"![{c.name}]({c.url})" for c in charts]
    return "\n".join(lines) + "\n"


def build_report(
    records: Sequence[DeliveryRecord],
    config: DoraReportConfig,
    store: S3Store | None,
    now: datetime,
) -> DoraReport:
    """Figures, buckets, causes and charts of the configured window; the charts are
    uploaded when a store is given (without one the report carries no links)."""
    since, until = config.window(now)
    chosen = [
        r
        for r in filter_records(records, config.app, config.environment)
        if in_window(r, since, until)
    ]
    figures = compute(chosen, since, until)
    causes = cause_shares(chosen, since, until)
    buckets = time_buckets(chosen, since, until, config.bucket_days)
    charts = render_charts(buckets, causes)
    links = upload_charts(store, config.prefix, until, charts) if store is not None else []
    if store is not None:
        _put_json(
            store,
            f"{config.prefix.strip('/')}/{until.strftime('%Y%m%dT%H%M%SZ')}/figures.json",
            figures,
        )
    return DoraReport(
        figures=figures,
        causes=causes,
        buckets=buckets,
        charts=links,
        table=figure_table(chosen, since, until),
        markdown=render_markdown(
            figures, causes, links, app=config.app, environment=config.environment
        ),
        records=len(records),
    )


def _put_json(store: S3Store, key: str, figures: DoraFigures) -> None:
    """The figures next to the charts (readable with any S3 tool, as drill history is)."""
    data = {"since": _iso(figures.since), "until": _iso(figures.until), **figures.to_json_dict()}
    store.put(key, json.dumps(data, indent=2).encode())
