"""`shipyard deliveries export`: the delivery ledger as JSON Lines.

One :class:`~shipyard.core.ledger.DeliveryRecord` per line (``to_json``), derived from
the Prefect API's events (:mod:`shipyard.core.ledger_events`), for the records whose
``deployed_at`` lies in ``[--since, --until)`` (defaults: everything until now),
filtered by ``--app`` and ``--environment``. Events are read from 30 days before
``--since`` to now, so restorations after the window and the change time of a promoted
digest are still found.

Exit codes: 0 written (possibly no record); 2 bad input (a malformed ISO time,
``--since`` not before ``--until``) or no Prefect API to read (one line on stderr saying
how to start it; nothing written).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from shipyard.core.errors import ConfigError
from shipyard.core.ledger import DeliveryRecord
from shipyard.core.ledger_events import derive_records, parse_time

__all__ = ["export_records", "parse_window", "register"]

CONTEXT = timedelta(days=30)
ALL_TIME = timedelta(days=3650)


def parse_window(
    since: str | None, until: str | None, now: datetime
) -> tuple[datetime | None, datetime]:
    """``[since, until)`` from the flags; ConfigError on a bad time or an empty window."""
    bounds: dict[str, datetime | None] = {}
    for flag, value in (("--since", since), ("--until", until)):
        if value is None:
            bounds[flag] = None
            continue
        moment = parse_time(value)
        if moment is None:
            raise ConfigError(f"{flag} {value!r} is not an ISO 8601 time (2026-11-01T10:00Z)")
        bounds[flag] = moment
    start, end = bounds["--since"], bounds["--until"] or now
    if start is not None and start >= end:
        raise ConfigError(f"--since {start.isoformat()} must be before --until {end.isoformat()}")
    return start, end


def export_records(
    events: list[dict[str, object]],
    since: datetime | None,
    until: datetime,
    app: str | None = None,
    environment: str | None = None,
) -> list[DeliveryRecord]:
    """The ledger of ``events`` deployed in ``[since, until)``, filtered (pure)."""
    return [
        r
        for r in derive_records(events)
        if (since is None or r.deployed_at >= since)
        and r.deployed_at < until
        and (app is None or r.app == app)
        and (environment is None or r.environment == environment)
    ]


def _read_events(since: datetime, now: datetime) -> list[dict[str, object]]:
    """Every Shipyard event since ``since``, with a live count on stderr."""
    from shipyard.exporter.prefect_api import PrefectReader, PrefectUnavailable

    console = Console(stderr=True)
    events: list[dict[str, object]] = []
    try:
        with (
            PrefectReader() as reader,
            console.status("reading Shipyard events from Prefect...") as status,
        ):
            for event in reader.read_events(since, now):
                events.append(event)
                if len(events) % 50 == 0:
                    status.update(f"reading Shipyard events from Prefect... {len(events)}")
    except PrefectUnavailable as exc:
        raise ConfigError(exc.message) from None
    return events


def register(app: typer.Typer) -> None:
    """Add the ``deliveries`` group with ``export``."""
    group = typer.Typer(
        help="The delivery ledger (one record per deployment).", no_args_is_help=True
    )

    @group.command("export")
    def export(
        since: Annotated[
            str | None,
            typer.Option("--since", help="Window start on deployed_at (ISO 8601, inclusive)."),
        ] = None,
        until: Annotated[
            str | None,
            typer.Option("--until", help="Window end on deployed_at (ISO 8601, exclusive; now)."),
        ] = None,
        app_name: Annotated[str | None, typer.Option("--app", help="Only this app.")] = None,
        environment: Annotated[
            str | None, typer.Option("--environment", help="Only this environment.")
        ] = None,
        output: Annotated[
            Path | None, typer.Option("--output", help="Write to FILE instead of stdout.")
        ] = None,
    ) -> None:
        """Write the delivery ledger as JSON Lines (DeliveryRecord, one per line)."""
        now = datetime.now(UTC)
        start, end = parse_window(since, until, now)
        events = _read_events((start or now - ALL_TIME) - CONTEXT, now)
        records = export_records(events, start, end, app_name, environment)
        text = "".join(r.to_json() + "\n" for r in records)
        if output is None:
            sys.stdout.write(text)
        else:
            output.write_text(text, encoding="utf-8")
            typer.echo(f"{len(records)} record(s) written to {output}", err=True)

    app.add_typer(group, name="deliveries")
