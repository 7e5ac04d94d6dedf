"""`drift-check` for one app environment: does the cluster still run what git declares?

Runs the ``detect-drift`` step (see :mod:`tasks.detect_drift`), publishes the report as a
table artifact and a ``shipyard.drift.detected`` (or ``shipyard.drift.clean``) event;
with ``heal`` it syncs and checks again. Orchestration only: the step does the I/O.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_table_artifact

from flows.common import emit
from tasks.detect_drift import DriftConfig, DriftItem, DriftReport
from tasks.steps.drift import detect_drift_task
from tasks.steps.rollout import sync_app
from tasks.sync.config import SyncConfig

__all__ = ["DriftConfig", "DriftItem", "DriftReport", "drift_check"]


def _publish(report: DriftReport, config: DriftConfig) -> None:
    rows = [
        {"object": i.object, "change": i.change, "differences": "; ".join(i.differences)[:500]}
        for i in report.items
    ] or [{"object": "-", "change": "none", "differences": ""}]
    create_table_artifact(
        rows, description=f"drift of {config.app} in {config.namespace} vs {report.revision[:12]}"
    )
    emit(
        "shipyard.drift.detected" if report.drifted else "shipyard.drift.clean",
        f"shipyard.app.{config.app}.{config.namespace}",
        {
            "revision": report.revision,
            "namespace": config.namespace,
            "items": [i.model_dump() for i in report.items],
            "healed": report.healed,
        },
    )


@flow(name="drift-check")
def drift_check(
    cluster: Any, config: DriftConfig, heal: bool = False, sync: SyncConfig | None = None
) -> DriftReport:
    """Report drift of one app/environment; with ``heal``, sync (``sync`` or direct apply
    of the same path) and report again."""
    report = detect_drift_task(cluster, config)
    if heal and report.drifted:
        heal_config = sync or config.sync_config().model_copy(
            update={"field_manager": config.managed_by}
        )
        sync_app.with_options(name="heal-sync")(cluster, heal_config)
        after = detect_drift_task(cluster, config)
        # keep what was found, and say whether the heal removed it
        report = report.model_copy(update={"healed": not after.drifted})
    _publish(report, config)
    return report
