"""`shipyard stack up | down | status`: the local stack of real services."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from shipyard.stack import StackLayout, StackReport, stack_down, stack_status, stack_up

StateDir = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help="Where the stack keeps its state (default: the nearest .shipyard/ up the tree).",
    ),
]
JsonOut = Annotated[bool, typer.Option("--json", help="Print a JSON report instead of a table.")]


def register(app: typer.Typer) -> None:
    """Add the `stack` command group to ``app``."""
    stack = typer.Typer(help="Start, stop and inspect the local stack of real services.")
    app.add_typer(stack, name="stack")

    @stack.command("up")
    def up(
        state_dir: StateDir = None,
        json_out: JsonOut = False,
        clusters: Annotated[
            int | None,
            typer.Option(
                "--clusters",
                min=0,
                help="Also run N labelled simulated clusters (a fleet: <state>/fleet.yaml); "
                "default: as many as the last up; 0 removes them.",
            ),
        ] = None,
        database: Annotated[
            str | None,
            typer.Option(
                "--database",
                help="The Prefect server's database: sqlite (default) or postgresql "
                "(a local PostgreSQL in the state dir); default: as the last up.",
            ),
        ] = None,
        messaging: Annotated[
            str | None,
            typer.Option(
                "--messaging",
                help="Prefect's messaging: memory (default) or redis (a local Redis "
                "with prefect-redis); default: as the last up.",
            ),
        ] = None,
    ) -> None:
        """Start every service (idempotent), wait until healthy, write the env file."""
        layout = StackLayout.from_env(state_dir)
        console = Console(stderr=True)
        with console.status("starting the stack") as status:
            report = stack_up(
                layout,
                progress=lambda m: status.update(m),
                clusters=clusters,
                database=database,
                messaging=messaging,
            )
        _print(report, json_out, "up")
        if not json_out:
            console.print(f"env file: {report.env_file}  (source it: . {report.env_file})")

    @stack.command("down")
    def down(
        state_dir: StateDir = None,
        purge: Annotated[bool, typer.Option(help="Also delete the state directory.")] = False,
        json_out: JsonOut = False,
    ) -> None:
        """Stop every service and leave no process behind."""
        report = stack_down(StackLayout.from_env(state_dir), purge=purge)
        if json_out:
            typer.echo(json.dumps(report.to_dict()))
        else:
            stopped = [s.name for s in report.services if s.note == "stopped"]
            typer.echo(f"stopped: {', '.join(stopped) or 'nothing was running'}")

    @stack.command("status")
    def status(state_dir: StateDir = None, json_out: JsonOut = False) -> None:
        """Show each service's pid and health; exit 1 if any is unhealthy."""
        layout = StackLayout.from_env(state_dir)
        if not layout.root.is_dir() and not json_out:
            typer.echo(
                f"shipyard: no stack at {layout.root}: run 'shipyard stack up' in the project "
                "(or pass --state-dir)",
                err=True,
            )
            raise typer.Exit(1)
        report = stack_status(layout)
        _print(report, json_out, "status")
        if not report.services or not report.healthy:
            raise typer.Exit(1)


def _print(report: StackReport, json_out: bool, verb: str) -> None:
    if json_out:
        typer.echo(json.dumps(report.to_dict()))
        return
    profile = f", {report.profile}" if report.profile else ""
    table = Table(title=f"shipyard stack {verb} ({report.seconds:.1f}s{profile})")
    for column in ("service", "healthy", "pid", "address", "ready in"):
        table.add_column(column)
    for s in report.services:
        table.add_row(
            s.name,
            "yes" if s.healthy else ("not started" if s.ok else "no"),
            str(s.pid or "-"),
            s.address,
            "-" if s.seconds is None else f"{s.seconds:.1f}s",
        )
    Console().print(table)
