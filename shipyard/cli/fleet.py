"""``shipyard fleet ...``: commands over a fleet of clusters.

``shipyard fleet rollout --fleet FILE --repo-dir DIR --revision REV [--json]`` takes the
GitOps path at REV (read from git, not the working tree) to every cluster of the fleet
in waves (:mod:`flows.fleet_rollout`; a flow run when a Prefect API answers, the same
steps directly otherwise). Exit 0 when every cluster is verified at REV, 1 when the
rollout halted or a cluster was skipped, 2 for bad input (one line, no traceback).
``--json`` prints ``{passed, revision, halted_at, waves: [{name, clusters: [{name,
status, started_at, finished_at, reason}]}]}``.

Other modules add commands to the same group: ``fleet_app.command(...)``.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from shipyard.cli.runner import run_flow
from shipyard.core.errors import ConfigError

__all__ = ["fleet_app", "register"]

EXIT_FAILED = 1

fleet_app = typer.Typer(
    name="fleet", help="Roll one revision out to many clusters, in waves.", no_args_is_help=True
)


@fleet_app.command("rollout")
def rollout_command(
    fleet: Annotated[
        str,
        typer.Option(
            "--fleet",
            envvar="SHIPYARD_FLEET",
            help="Fleet file (YAML, kind Fleet); default $SHIPYARD_FLEET (the stack's).",
        ),
    ] = "",
    repo_dir: Annotated[str, typer.Option("--repo-dir", help="GitOps working tree.")] = "",
    revision: Annotated[str, typer.Option("--revision", help="Commit or ref to roll out.")] = "",
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON report.")] = False,
) -> None:
    """Sync and verify REV on every cluster, wave by wave; halt and roll back on failure."""
    for flag, value in (("--fleet", fleet), ("--repo-dir", repo_dir), ("--revision", revision)):
        if not value.strip():
            raise ConfigError(f"{flag} is required")
    from flows.fleet_rollout import fleet_rollout, fleet_rollout_directly, summary

    report = run_flow(fleet_rollout, fleet_rollout_directly, fleet, repo_dir, revision)
    if json_out:
        typer.echo(json.dumps(report.cli_json()))
    else:
        for wave in report.waves:
            typer.echo(f"wave {wave.name}")
            for c in wave.clusters:
                typer.echo(f"  {c.name:<20} {c.status:<12} {c.reason or ''}")
        typer.echo(summary(report), err=not report.passed)
    if not report.passed:
        raise typer.Exit(EXIT_FAILED)


def register(app: typer.Typer) -> None:
    """Add the ``fleet`` group to ``app``."""
    app.add_typer(fleet_app, name="fleet")
