"""The alert actions' steps as Prefect tasks (cores in :mod:`tasks.alert_actions`).

The Prefect-side ports of :func:`tasks.alert_actions.pause_app_rollouts` live here too:
the fleet control Variables, and the app a flow run delivers (its ``app`` parameter,
else its parent run's, for a fleet subflow).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from prefect import task
from prefect.cache_policies import NONE as NO_CACHE
from prefect.client.orchestration import get_client
from prefect.variables import Variable

from tasks.alert_actions import CONTROL_PREFIX, pause_app_rollouts

__all__ = ["pause_rollouts_of_app"]


def _controls() -> dict[str, Any]:
    """Every fleet control Variable (name -> value) of the Prefect API."""
    with get_client(sync_client=True) as client:
        found = client.read_variables()
    return {v.name: v.value for v in found if v.name.startswith(CONTROL_PREFIX)}


def _app_of_run(run_id: str) -> str | None:
    """The ``app`` parameter of a running flow run, or of its parent run (None: none)."""
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(run_id))
        if run.state is not None and run.state.is_final():
            return None
        app = run.parameters.get("app")
        if not app and run.parent_task_run_id is not None:
            parent = client.read_task_run(run.parent_task_run_id).flow_run_id
            app = client.read_flow_run(parent).parameters.get("app") if parent else None
    return str(app) if app else None


def _write(name: str, value: dict[str, Any]) -> None:
    Variable.set(name, value, overwrite=True)


@task(name="pause-app-rollouts", cache_policy=NO_CACHE)
def pause_rollouts_of_app(app: str, by: str) -> list[str]:
    """Pause every running fleet rollout of ``app``; the flow run ids paused."""
    return pause_app_rollouts(app, by, _controls(), _app_of_run, _write)
