"""Pause, resume and skip-a-cluster for a running fleet rollout, read from one value.

A rollout (the ``fleet-rollout`` flow, or ``deliver``/``promote`` to a fleet
environment) keeps its controls in one JSON value, a Prefect Variable named
``shipyard-fleet-<flow run id>`` (:func:`control_variable`) that the run creates when it
starts and deletes when it ends. ``shipyard fleet pause|resume|skip`` edit it, and so
can a person in the UI (Variables page), with the same JSON::

    {"paused": true, "by": "alice", "skip": {"us-1": "bob"}}

Before every wave and before every cluster, the run calls :func:`await_gate`: while
``paused`` it writes nothing and waits; a cluster named in ``skip`` is not started and
is reported ``skipped`` with reason "skipped by <who>". A cluster already syncing when
the pause comes finishes its step (a half-applied cluster is worse than a finished one).

Pure: the value is read through a callable, so tests and the flow share the logic.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field, ValidationError

__all__ = [
    "FleetControl",
    "await_gate",
    "control_variable",
    "parse_control",
    "with_pause",
    "with_skip",
]

MAX_PAUSE_SECONDS = 24 * 3600.0
UI_USER = "the UI"


class FleetControl(BaseModel):
    """The controls of one running rollout."""

    paused: bool = Field(False, description="True: start nothing more until resumed.")
    by: str = Field("", description="Who paused or resumed it last.")
    skip: dict[str, str] = Field(
        default_factory=dict, description="Clusters not to start: name -> who skipped it."
    )


def control_variable(run_id: str) -> str:
    """The Prefect Variable name holding the controls of flow run ``run_id``."""
    return f"shipyard-fleet-{run_id}"


def parse_control(value: Any) -> FleetControl:
    """The controls in ``value`` (a dict or its JSON text; None: no controls).

    Lenient, because a person types it in the UI: ``skip`` may be a list of names
    (skipped by "the UI"), ``paused`` may be "true"/"false". Anything unreadable counts
    as no controls rather than stopping a rollout.
    """
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return FleetControl()
    if not isinstance(value, dict):
        return FleetControl()
    data = dict(value)
    skip = data.get("skip")
    if isinstance(skip, list):
        data["skip"] = {str(n): str(data.get("by") or UI_USER) for n in skip}
    elif isinstance(skip, dict):
        data["skip"] = {str(k): str(v or UI_USER) for k, v in skip.items()}
    elif skip is not None:
        data["skip"] = {}
    if isinstance(data.get("paused"), str):
        data["paused"] = data["paused"].strip().lower() in ("true", "yes", "1")
    data["by"] = str(data.get("by") or "")
    try:
        return FleetControl.model_validate(
            {k: data[k] for k in ("paused", "by", "skip") if k in data}
        )
    except ValidationError:
        return FleetControl()


def with_pause(control: FleetControl, paused: bool, by: str) -> FleetControl:
    """``control`` paused (or resumed) by ``by``."""
    return control.model_copy(update={"paused": paused, "by": by})


def with_skip(control: FleetControl, cluster: str, by: str) -> FleetControl:
    """``control`` with ``cluster`` skipped by ``by``."""
    return control.model_copy(update={"skip": {**control.skip, cluster: by}})


def await_gate(
    read: Callable[[], Any],
    cluster: str | None = None,
    *,
    say: Callable[[str], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    poll_seconds: float = 1.0,
    max_pause_seconds: float = MAX_PAUSE_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> str | None:
    """Wait while the rollout is paused; then why ``cluster`` is skipped, or None to go.

    ``read()`` returns the current control value. A pause longer than
    ``max_pause_seconds`` skips the cluster ("paused longer than ...") so the run ends.
    """
    control = parse_control(read())
    started = clock()
    told = False
    while control.paused:
        if not told and say is not None:
            where = f"before cluster {cluster}" if cluster else "before the next wave"
            say(f"rollout paused by {control.by or UI_USER}: waiting {where} until resumed")
            told = True
        if clock() - started > max_pause_seconds:
            return f"not started: paused longer than {max_pause_seconds:.0f}s"
        sleep(poll_seconds)
        control = parse_control(read())
    if told and say is not None:
        say(f"rollout resumed by {control.by or UI_USER}")
    if cluster is not None and cluster in control.skip:
        return f"skipped by {control.skip[cluster]}"
    return None
