"""`shipyard dora`: DORA's four keys and the seed's platform score from the ledger.

Flags, JSON keys and exit codes are a contract (issue 16): the ledger comes from
``--records FILE`` (JSON Lines, as ``shipyard deliveries export`` writes it) or, without
it, from the Prefect API; bad input (a malformed line, a missing file, a bad ISO time,
``since >= until``) is one line on stderr and exit 2. The figures are
:mod:`shipyard.core.dora`'s; this module parses, reads and prints.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from shipyard.core.dora import (
    FIGURE_KEYS,
    CauseShare,
    Comparison,
    DoraFigures,
    breakdown,
    cause_shares,
    compare,
    compute,
    default_window,
)
from shipyard.core.errors import ConfigError
from shipyard.core.ledger import DeliveryRecord

BY_CHOICES = ("app", "environment", "cause")
API_LOOKBACK = timedelta(days=30)


def parse_time(text: str, flag: str) -> datetime:
    """An ISO 8601 date or time (``Z`` allowed); naive times are UTC. ConfigError naming
    ``flag`` otherwise."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"{flag}: not an ISO 8601 time: {text!r}") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def read_records_file(path: Path) -> list[DeliveryRecord]:
    """Every record of a JSON Lines file; ConfigError for a missing file or a bad line."""
    from tasks.dora_report import read_records_file as read_file

    return read_file(path, "--records")


def read_api_records(since: datetime, until: datetime) -> list[DeliveryRecord]:
    """The ledger around ``[since, until)`` from the Prefect API's delivery events, read
    with the exporter's reader as ``shipyard deliveries export`` reads them: from 30 days
    before ``since`` (a promotion's change time) up to now (later restores). An API that
    does not answer is one line and exit 2, as for ``deliveries export``."""
    from rich.console import Console

    from shipyard.core.ledger_events import EVENT_DELIVERED, EVENT_FAILED, derive_records
    from shipyard.exporter.prefect_api import PrefectReader, PrefectUnavailable

    events: list[dict[str, Any]] = []
    try:
        with (
            PrefectReader() as reader,
            Console(stderr=True).status("reading delivery events from Prefect...") as status,
        ):
            for event in reader.read_events(
                since - API_LOOKBACK,
                max(until, datetime.now(UTC)),
                prefixes=(EVENT_DELIVERED, EVENT_FAILED),
            ):
                events.append(event)
                if len(events) % 50 == 0:
                    status.update(f"reading delivery events from Prefect... {len(events)}")
    except PrefectUnavailable as exc:
        raise ConfigError(str(exc)) from None
    return derive_records(events)


# --- printing -----------------------------------------------------------------------------


def _console() -> Any:
    """A rich console on stdout; 120 columns when it is not a terminal (pipes, tests)."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=120)


def _num(value: float | None, unit: str = "", digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def figure_rows(f: DoraFigures) -> list[tuple[str, str, str]]:
    """(metric, value, band) rows of one window, as people read them."""
    b = f.bands
    return [
        ("deployments", str(f.deployments), ""),
        ("failures", str(f.failures), ""),
        (
            "deployment frequency",
            _num(f.deployment_frequency_per_day, " /day"),
            b.deployment_frequency or "-",
        ),
        ("lead time (median)", _num(f.lead_time_hours_median, " h"), b.lead_time or "-"),
        ("change failure rate", _pct(f.change_failure_rate), b.change_failure_rate or "-"),
        (
            "time to restore (mean)",
            _num(f.time_to_restore_minutes_mean, " min", 1),
            b.time_to_restore or "-",
        ),
        ("availability", _num(f.availability_percent, " %", 3), ""),
        ("platform score", _num(f.platform_score, "", 1), ""),
    ]


def _day(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M")


def _title(f: DoraFigures, app: str | None, environment: str | None) -> str:
    scope = " ".join(
        part
        for part in (
            f"app={app}" if app else "",
            f"environment={environment}" if environment else "",
        )
        if part
    )
    window = f"DORA {_day(f.since)} → {_day(f.until)} ({f.window_days:g} days)"
    return f"{window} {scope}" if scope else window


def print_figures(f: DoraFigures, app: str | None, environment: str | None) -> None:
    """One window as a table: metric, value, DORA 2023 band."""
    from rich.table import Table

    title = _title(f, app, environment)
    table = Table(title=title, min_width=len(title) + 2)
    for column in ("metric", "value", "band"):
        table.add_column(column)
    for row in figure_rows(f):
        table.add_row(*row)
    _console().print(table)


def print_breakdown(groups: dict[str, DoraFigures], by: str, total: DoraFigures) -> None:
    """One row per app or environment, the four keys and the score as columns."""
    from rich.table import Table

    table = Table(title=f"{_title(total, None, None)} by {by}")
    columns = (by, "deploys", "fails", "freq /day", "lead h", "CFR", "MTTR min", "avail %", "score")
    for column in columns:
        table.add_column(column)
    for name, f in [*groups.items(), ("(all)", total)]:
        table.add_row(
            name,
            str(f.deployments),
            str(f.failures),
            _num(f.deployment_frequency_per_day),
            _num(f.lead_time_hours_median),
            _pct(f.change_failure_rate),
            _num(f.time_to_restore_minutes_mean, "", 1),
            _num(f.availability_percent, "", 3),
            _num(f.platform_score, "", 1),
        )
    _console().print(table)


def print_causes(shares: list[CauseShare], total: DoraFigures) -> None:
    """The seed's failure causes: count and share of the window's failures."""
    from rich.table import Table

    title = f"{_title(total, None, None)}: failure causes"
    table = Table(title=title, min_width=len(title) + 2)
    for column in ("cause", "failures", "share"):
        table.add_column(column)
    for share in shares:
        table.add_row(share.cause, str(share.failures), _pct(share.share))
    if not shares:
        table.add_row("(no failures)", "0", "-")
    _console().print(table)


def print_comparison(c: Comparison) -> None:
    """The seed's before/after table: both windows and the change, metric by metric."""
    from rich.table import Table

    table = Table(title="DORA before / after")
    table.add_column("metric")
    table.add_column(f"before\n{_day(c.before.since)} → {_day(c.before.until)}")
    table.add_column(f"after\n{_day(c.after.since)} → {_day(c.after.until)}")
    table.add_column("change")
    keys = [k for k in FIGURE_KEYS if k not in ("bands", "window_days")]
    for key, before, after in zip(keys, figure_rows(c.before), figure_rows(c.after), strict=True):
        delta = c.change[key]
        shown = _change(key, delta)
        table.add_row(before[0], _with_band(before), _with_band(after), shown)
    _console().print(table)


def _change(key: str, delta: float | None) -> str:
    """A change as people read it: counts whole, the failure rate in points."""
    if delta is None:
        return "-"
    if key in ("deployments", "failures"):
        return f"{delta:+.0f}"
    if key == "change_failure_rate":
        return f"{100 * delta:+.1f} pt"
    return f"{delta:+.2f}"


def _with_band(row: tuple[str, str, str]) -> str:
    return f"{row[1]} ({row[2]})" if row[2] and row[2] != "-" else row[1]


# --- the command --------------------------------------------------------------------------


def run_dora(
    records: list[DeliveryRecord],
    since: datetime,
    until: datetime,
    *,
    app: str | None,
    environment: str | None,
    by: str | None,
    other: tuple[datetime, datetime] | None,
) -> tuple[dict[str, Any], Any]:
    """The JSON object and what to print as a table, for the options given (pure)."""
    total = compute(records, since, until, app=app, environment=environment)
    if other is not None:
        comparison = compare(records, (since, until), other, app=app, environment=environment)
        return comparison.to_json_dict(), comparison
    if by == "cause":
        shares = cause_shares(records, since, until, app=app, environment=environment)
        data = {
            "by": "cause",
            "failures": total.failures,
            "window_days": total.window_days,
            "groups": {s.cause: {"failures": s.failures, "share": s.share} for s in shares},
        }
        return data, (shares, total)
    if by in ("app", "environment"):
        groups = breakdown(records, since, until, by, app=app, environment=environment)  # type: ignore[arg-type]
        data = {
            "by": by,
            "window_days": total.window_days,
            "groups": {name: f.to_json_dict() for name, f in groups.items()},
            "total": total.to_json_dict(),
        }
        return data, (groups, total)
    return total.to_json_dict(), total


def register(app: typer.Typer) -> None:
    """Add `dora` to ``app``."""

    @app.command("dora")
    def dora_cmd(
        records: Annotated[
            Path | None,
            typer.Option("--records", help="Ledger as JSON Lines (default: the Prefect API)."),
        ] = None,
        since: Annotated[
            str | None, typer.Option("--since", help="Window start, ISO 8601 (default until-30d).")
        ] = None,
        until: Annotated[
            str | None,
            typer.Option("--until", help="Window end (excluded), ISO 8601 (default now)."),
        ] = None,
        app_name: Annotated[str | None, typer.Option("--app", help="Only this app.")] = None,
        environment: Annotated[
            str | None, typer.Option("--environment", help="Only this environment.")
        ] = None,
        json_out: Annotated[
            bool, typer.Option("--json", help="Print JSON instead of a table.")
        ] = False,
        by: Annotated[
            str | None, typer.Option("--by", help="Break down by app, environment or cause.")
        ] = None,
        compare_window: Annotated[
            tuple[str, str] | None,
            typer.Option(
                "--compare",
                metavar="SINCE2 UNTIL2",
                help="A second window to set side by side (before/after and the change).",
            ),
        ] = None,
    ) -> None:
        """DORA figures (deploy frequency, lead time, change failure rate, time to restore,
        availability, platform score) over [since, until)."""
        if by is not None and by not in BY_CHOICES:
            raise ConfigError(f"--by must be one of {', '.join(BY_CHOICES)}, not {by!r}")
        if by is not None and compare_window is not None:
            raise ConfigError("--by and --compare cannot be combined")
        start, end = default_window(
            datetime.now(UTC),
            parse_time(since, "--since") if since else None,
            parse_time(until, "--until") if until else None,
        )
        other: tuple[datetime, datetime] | None = None
        if compare_window is not None:
            other = default_window(
                end,
                parse_time(compare_window[0], "--compare SINCE2"),
                parse_time(compare_window[1], "--compare UNTIL2"),
            )
        if records is not None:
            ledger = read_records_file(records)
        else:
            lo = min(start, other[0]) if other else start
            hi = max(end, other[1]) if other else end
            ledger = read_api_records(lo, hi)
        data, shown = run_dora(
            ledger, start, end, app=app_name, environment=environment, by=by, other=other
        )
        if json_out:
            typer.echo(json.dumps(data))
        elif isinstance(shown, Comparison):
            print_comparison(shown)
        elif isinstance(shown, DoraFigures):
            print_figures(shown, app_name, environment)
        elif by == "cause":
            print_causes(*shown)
        else:
            print_breakdown(shown[0], str(by), shown[1])
