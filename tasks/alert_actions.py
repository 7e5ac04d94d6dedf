"""What Shipyard does when an alert fires, as plain logic (no Prefect).

Two actions back the alert automations of ``prefect.yaml`` (docs/bridge.md):

- :func:`notice_markdown`: an alert as a short markdown notice (the ``alert-notify``
  flow publishes it as an artifact, Prefect OSS having no notification without a
  block);
- :func:`pause_app_rollouts`: pause every running fleet rollout of one app (a failed
  delivery or rollback should stop the next waves). A running rollout keeps its
  controls in the Prefect Variable ``shipyard-fleet-<flow run id>``
  (:mod:`tasks.fleet.control`); the rollouts of ``app`` are those whose flow run (or
  its parent run) has the parameter ``app`` equal to it. Reading and writing go
  through the callables given, so the same logic runs against Prefect and in tests.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, Field

from tasks.fleet.control import parse_control, with_pause

__all__ = ["CONTROL_PREFIX", "AlertNotice", "notice_markdown", "pause_app_rollouts"]

CONTROL_PREFIX = "shipyard-fleet-"


class AlertNotice(BaseModel):
    """One alert as the automations pass it on (all strings, "" when unknown)."""

    alertname: str = Field(description="The alert's name (its alertname label).")
    status: str = Field("firing", description="firing or resolved.")
    severity: str = ""
    summary: str = ""
    description: str = ""
    app: str = ""
    environment: str = ""
    cluster: str = ""
    starts_at: str = ""
    generator_url: str = Field("", description="The Prometheus graph of the alert's expr.")
    runbook_url: str = ""


def notice_markdown(notice: AlertNotice) -> str:
    """A markdown notice for one alert: what, where, since when, and what to read."""
    where = "/".join(p for p in (notice.app, notice.environment) if p) or "the platform"
    if notice.cluster:
        where += f" on cluster {notice.cluster}"
    lines = [
        f"# {notice.alertname} is {notice.status}",
        "",
        f"**{notice.summary or notice.alertname}**",
        "",
        notice.description or "(no description)",
        "",
        "| | |",
        "| --- | --- |",
        f"| where | {where} |",
        f"| severity | {notice.severity or '-'} |",
        f"| since | {notice.starts_at or '-'} |",
    ]
    if notice.runbook_url:
        lines.append(f"| runbook | [{notice.runbook_url}]({notice.runbook_url}) |")
    if notice.generator_url:
        lines.append(f"| query | [Prometheus]({notice.generator_url}) |")
    return "\n".join(lines) + "\n"


def pause_app_rollouts(
    app: str,
    by: str,
    controls: Mapping[str, Any],
    app_of_run: Callable[[str], str | None],
    write: Callable[[str, dict[str, Any]], None],
) -> list[str]:
    """Pause the running rollouts of ``app``; the flow run ids paused (sorted).

    ``controls`` maps control Variable names to their values; ``app_of_run(run_id)``
    says which app a flow run delivers (None: none, or it ended); ``write(name,
    value)`` stores a control value. A rollout already paused is left as it is.
    """
    if not app:
        return []
    paused: list[str] = []
    for name, value in sorted(controls.items()):
        if not name.startswith(CONTROL_PREFIX):
            continue
        run_id = name.removeprefix(CONTROL_PREFIX)
        if app_of_run(run_id) != app:
            continue
        control = parse_control(value)
        if not control.paused:
            write(name, with_pause(control, True, by).model_dump())
        paused.append(run_id)
    return paused
