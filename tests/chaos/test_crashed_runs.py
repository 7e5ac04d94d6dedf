"""The crashed-run automations of deployments/automations/crashed-runs.yaml, on the real
Prefect server: a Shipyard `deliver` run whose heartbeats stop is marked Crashed by
`shipyard-crash-zombie-runs` (90 s after its last heartbeat), and the Crashed run is put
back to Scheduled by `shipyard-rerun-crashed-deliver`, so a worker runs it again.

The run's process is simulated the way it looks from the server: a Running flow run of
a flow named `deliver`, tagged `shipyard`, that sent one heartbeat event (as the flow
engine sends them) and then nothing.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from bench import _load_common as lc


def _states(client: Any, run_id: Any) -> list[tuple[str, str | None, str]]:
    return [(s.type.value, s.name, s.message or "") for s in client.read_flow_run_states(run_id)]


@pytest.mark.slow
@pytest.mark.timeout(400)
@pytest.mark.usefixtures("prefect_api")
def test_a_silent_deliver_run_is_crashed_then_scheduled_again() -> None:
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.events import emit_event
    from prefect.states import Running

    names = lc.install_crash_automations()
    assert names == ["shipyard-crash-zombie-runs", "shipyard-rerun-crashed-deliver"]

    @flow(name="deliver")
    def deliver() -> None:
        """Stands in for the real flow: only its name matters to the automations."""

    with get_client(sync_client=True) as client:
        run = client.create_flow_run(deliver, tags=["shipyard", "delivery"])
        client.set_flow_run_state(run.id, Running(), force=True)
        run = client.read_flow_run(run.id)
        emit_event(
            event="prefect.flow-run.heartbeat",
            resource={
                "prefect.resource.id": f"prefect.flow-run.{run.id}",
                "prefect.resource.name": run.name,
            },
            related=[
                {
                    "prefect.resource.id": f"prefect.flow.{run.flow_id}",
                    "prefect.resource.role": "flow",
                    "prefect.resource.name": "deliver",
                },
                {"prefect.resource.id": "prefect.tag.shipyard", "prefect.resource.role": "tag"},
                {"prefect.resource.id": "prefect.tag.delivery", "prefect.resource.role": "tag"},
            ],
        )
        started = time.monotonic()
        crashed: tuple[str, str | None, str] | None = None
        while time.monotonic() - started < 240:
            history = _states(client, run.id)
            crashed = next((s for s in history if s[0] == "CRASHED"), None)
            if crashed and history[-1][0] == "SCHEDULED":
                break
            time.sleep(2)
        waited = time.monotonic() - started
        history = _states(client, run.id)

    print(f"crashed and rescheduled after {waited:.0f}s: {history}")
    assert crashed is not None, history
    assert "shipyard-crash-zombie-runs" in crashed[2]
    assert waited >= 85, "marked Crashed before 90 s of silence"
    assert history[-1][:2] == ("SCHEDULED", "AwaitingRetry"), history
    assert "shipyard-rerun-crashed-deliver" in history[-1][2]
