"""``shipyard fleet pause|resume|skip --run RUN_ID``: steer a running fleet rollout.

Every rollout over a fleet (``fleet-rollout``, and ``deliver``/``promote`` to a catalog
environment with ``fleet:``) reads its controls from the Prefect Variable
``shipyard-fleet-<RUN_ID>`` (RUN_ID: the id of the top-level flow run, as in its UI
address) before every wave and every cluster (:mod:`tasks.fleet.control`). These
commands edit that Variable; a person can do the same in the UI (Variables page).

- ``pause``: nothing more is written (clusters syncing right now finish their step);
- ``resume``: the rollout goes on where it stopped;
- ``skip --cluster NAME``: the cluster is not started; reported ``skipped``, reason
  "skipped by <who>".

``--by`` names who did it (default: the login name). Bad input (not a run id, no such
running rollout, no Prefect API) is one line on stderr and exit 2; nothing changes.
"""

from __future__ import annotations

import getpass
import json
import re
import uuid
from typing import Annotated

import typer

from shipyard.cli.fleet import fleet_app
from shipyard.core.errors import ConfigError

__all__ = ["register"]

_CLUSTER = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")

RunOption = Annotated[str, typer.Option("--run", help="Flow run id of the rollout (UI address).")]
ByOption = Annotated[str, typer.Option("--by", help="Who does it; default the login name.")]


def _run_id(run: str) -> str:
    try:
        return str(uuid.UUID(run.strip()))
    except ValueError:
        raise ConfigError(f"--run {run!r} is not a flow run id (a UUID)") from None


def _who(by: str) -> str:
    try:
        login = getpass.getuser()
    except (OSError, KeyError):
        login = "unknown"
    who = by.strip() or login
    if len(who) > 100 or not who.isprintable():
        raise ConfigError("--by must be a short printable name")
    return who


def _update(run: str, change: str, cluster: str, by: str) -> None:
    """Read the run's controls, apply ``change``, write them back; print the result."""
    from prefect.variables import Variable

    from shipyard.cli.runner import prefect_api_reachable
    from shipyard.cli.runs import ui_url
    from tasks.fleet.control import control_variable, parse_control, with_pause, with_skip

    run_id, who = _run_id(run), _who(by)
    if change == "skip" and not _CLUSTER.match(cluster):
        raise ConfigError(f"--cluster {cluster!r} is not a cluster name")
    if not prefect_api_reachable():
        raise ConfigError("no Prefect API answers (PREFECT_API_URL): start 'shipyard stack up'")
    name = control_variable(run_id)
    current = Variable.get(name)
    if current is None:
        raise ConfigError(
            f"flow run {run_id} has no fleet controls: it is not a running fleet rollout "
            "(fleet-rollout, or deliver/promote to a fleet environment), or it has ended"
        )
    control = parse_control(current)
    if change == "skip":
        control = with_skip(control, cluster, who)
    else:
        control = with_pause(control, change == "pause", who)
    Variable.set(name, control.model_dump(), overwrite=True)
    what = {
        "pause": "paused: nothing more is written until resumed",
        "resume": "resumed",
        "skip": f"cluster {cluster} will be skipped (if not started yet)",
    }[change]
    typer.echo(f"{run_id}: {what} (by {who}); controls {json.dumps(control.model_dump())}")
    typer.echo(f"run: {ui_url(run_id)}")


@fleet_app.command("pause")
def pause_command(run: RunOption = "", by: ByOption = "") -> None:
    """Pause a running fleet rollout before its next cluster or wave."""
    _update(run, "pause", "", by)


@fleet_app.command("resume")
def resume_command(run: RunOption = "", by: ByOption = "") -> None:
    """Resume a paused fleet rollout."""
    _update(run, "resume", "", by)


@fleet_app.command("skip")
def skip_command(
    run: RunOption = "",
    cluster: Annotated[str, typer.Option("--cluster", help="Cluster not to start.")] = "",
    by: ByOption = "",
) -> None:
    """Skip one cluster of a running fleet rollout (reported skipped, not a failure)."""
    _update(run, "skip", cluster, by)


def register(app: typer.Typer) -> None:
    """Nothing to add: the commands joined ``fleet_app`` when this module was imported."""
