"""The alert automations' flows on the real Prefect server: `alert-pause-fleet` pauses
the running fleet rollouts of the alert's app (and no other), `alert-notify` publishes
the notice artifact."""

from __future__ import annotations

from typing import Any

import pytest

from flows.alert_actions import alert_notify, alert_pause_fleet
from tasks.alert_actions import AlertNotice
from tasks.fleet.control import control_variable

pytestmark = pytest.mark.slow


def _run(client: Any, app: str, running: bool) -> str:
    """A flow run of `deliver` for ``app`` (Running, or Completed), with its control."""
    from prefect import flow
    from prefect.client.schemas.objects import FlowRun
    from prefect.states import Completed, Running
    from prefect.variables import Variable

    @flow(name="deliver")
    def stand_in(app: str) -> None:  # pragma: no cover - never run, only registered
        return None

    run: FlowRun = client.create_flow_run(stand_in, parameters={"app": app})
    client.set_flow_run_state(run.id, Running() if running else Completed(), force=True)
    Variable.set(control_variable(str(run.id)), {"paused": False, "by": ""}, overwrite=True)
    return str(run.id)


def test_pause_fleet_pauses_only_the_apps_running_rollouts(prefect_api: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.variables import Variable

    with get_client(sync_client=True) as client:
        mine = _run(client, "cart-alerts", running=True)
        other = _run(client, "shop-alerts", running=True)
        ended = _run(client, "cart-alerts", running=False)

    paused = alert_pause_fleet(app="cart-alerts", alertname="ShipyardDeliveryFailed")

    def control(run_id: str) -> dict[str, Any]:
        value = Variable.get(control_variable(run_id))
        assert isinstance(value, dict)
        return value

    assert paused == [mine]
    assert control(mine)["paused"] is True
    assert control(mine)["by"] == "alert ShipyardDeliveryFailed"
    assert control(other)["paused"] is False
    assert control(ended)["paused"] is False


def test_notify_publishes_the_notice_as_an_artifact(prefect_api: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    text = alert_notify(
        notice=AlertNotice(
            alertname="ShipyardRestoreDrillFailed",
            severity="critical",
            summary="The last restore drill failed.",
        )
    )
    assert "# ShipyardRestoreDrillFailed is firing" in text
    with get_client(sync_client=True) as client:
        (artifact, *_) = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["alert-shipyardrestoredrillfailed"])
            )
        )
    assert artifact.type == "markdown"
    assert "The last restore drill failed." in str(artifact.data)
