"""Flows the alert automations of ``prefect.yaml`` start (docs/bridge.md, "Alerts").

- ``alert-notify``: publish the alert as a markdown artifact ``alert-<name>`` (and a
  warning in the run's log). Prefect OSS sends notifications only through a
  notification block (Slack, e-mail, ...) that each installation configures; an
  artifact needs nothing and shows in the UI's Artifacts page, so this is the
  notification that works everywhere. Add a block-backed automation beside it to be
  paged.
- ``alert-pause-fleet``: pause the running fleet rollouts of the alert's app (its
  waves stop before the next cluster until resumed: ``shipyard fleet resume`` or the
  Variables page).
"""

from __future__ import annotations

import re

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from tasks.alert_actions import AlertNotice, notice_markdown
from tasks.steps.alerts import pause_rollouts_of_app

__all__ = ["alert_notify", "alert_pause_fleet"]


def _key(alertname: str) -> str:
    """``alert-<name>`` as an artifact key (lower case, dashes)."""
    return "alert-" + (re.sub(r"[^a-z0-9-]+", "-", alertname.lower()).strip("-") or "unnamed")


@flow(name="alert-notify", flow_run_name="notify-{notice.alertname}")
def alert_notify(notice: AlertNotice) -> str:
    """Publish one alert as a markdown artifact and a warning; return the markdown."""
    text = notice_markdown(notice)
    get_run_logger().warning("%s %s: %s", notice.alertname, notice.status, notice.summary)
    create_markdown_artifact(text, key=_key(notice.alertname), description=notice.summary)
    return text


@flow(name="alert-pause-fleet", flow_run_name="pause-fleet-{app}")
def alert_pause_fleet(app: str, alertname: str = "") -> list[str]:
    """Pause the running fleet rollouts of ``app``; the flow run ids paused."""
    by = f"alert {alertname}" if alertname else "an alert"
    paused = pause_rollouts_of_app(app, by)
    lines = [f"# Fleet rollouts of {app or '(no app)'} paused by {by}", ""]
    lines += [f"- flow run `{run_id}`" for run_id in paused] or ["No rollout of it was running."]
    create_markdown_artifact("\n".join(lines) + "\n", key=_key(f"pause-{app or 'none'}"))
    return paused
