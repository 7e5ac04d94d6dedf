"""``fleet_rollout``: one GitOps revision taken to every cluster of a fleet, wave by wave.

The flow plans (a task: the fleet file, the commit, the waves; bad input fails it with a
ConfigError), then runs :func:`tasks.fleet.run.run_fleet` with one subflow per wave
(``wave-<name>``) and one task run per cluster (``roll-out-<cluster>``, and
``roll-back-<cluster>`` when a wave halts). A table artifact ``fleet-<name>`` (one row
per cluster: wave, status, times, reason) gets a new version at every change, so the
run page shows the rollout live. The run ends Failed, with the report attached, when
the rollout halted or a cluster was skipped. A wave with ``approve: true`` pauses the
run first with the promote flow's approval form (:mod:`flows.approval`); a rejection
halts the rollout there. While it runs, the rollout can be paused, resumed and a
cluster skipped through the Prefect Variable ``shipyard-fleet-<run id>``
(:mod:`tasks.fleet.control`; ``shipyard fleet pause|resume|skip`` or the UI's Variables
page). ``fleet_rollout_directly`` runs the same machine without Prefect (the CLI without
an API; no pause there).

The helpers (:func:`wave_table`, :func:`approve_wave`, :func:`gate_for`,
:func:`fleet_wave`) are public: ``deliver`` and ``promote`` to a fleet environment
(:mod:`flows.fleet_deliver`) run the same waves.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from prefect import flow
from prefect.artifacts import create_table_artifact
from prefect.states import Failed

from flows.approval import ApprovalRequest, request_approval
from flows.common import flow_run_id, flow_run_url
from shipyard.core.errors import PolicyError
from tasks.fleet.cluster import ClusterReport, recheck_cluster, roll_back_cluster, roll_cluster
from tasks.fleet.config import FleetPlan, PlannedWave, plan_rollout
from tasks.fleet.control import control_variable
from tasks.fleet.run import FleetReport, Gate, WaveReport, run_fleet, run_wave
from tasks.steps.fleet import (
    close_fleet_control,
    fleet_gate,
    fleet_recheck,
    fleet_roll_back,
    fleet_roll_cluster,
    open_fleet_control,
    plan_fleet,
)

__all__ = [
    "approve_wave",
    "controlled",
    "fleet_rollout",
    "fleet_rollout_directly",
    "fleet_wave",
    "gate_for",
    "run_waves",
    "summary",
    "wave_table",
]

APPROVAL_TIMEOUT_SECONDS = 24 * 3600


def summary(report: FleetReport) -> str:
    """One line: passed, or where it halted and which clusters are not at REV."""
    if report.passed:
        return f"every cluster verified at {report.revision[:12]}"
    bad = [
        f"{c.name} {c.status}"
        for w in report.waves
        for c in w.clusters
        if c.status not in ("healthy", "unchanged")
    ]
    where = f"halted at wave {report.halted_at}" if report.halted_at else "not every cluster at REV"
    return f"{where}: {', '.join(bad)}"


def wave_table(plan: FleetPlan) -> Any:
    """The ``publish`` of :func:`run_fleet`: a new version of the wave table artifact."""
    key = "fleet-" + re.sub(r"[^a-z0-9-]+", "-", plan.fleet.metadata.name.lower())

    def publish(report: FleetReport) -> None:
        rows = [
            {
                "wave": w.name,
                "cluster": c.name,
                "status": c.status or ("running" if c.reason == "rolling out" else "pending"),
                "started_at": c.started_at or "",
                "finished_at": c.finished_at or "",
                "reason": c.reason or "",
            }
            for w in report.waves
            for c in w.clusters
        ]
        create_table_artifact(
            rows, key=key, description=f"fleet {plan.fleet.metadata.name} at {plan.sha[:12]}"
        )

    return publish


def approve_wave(
    plan: FleetPlan, wave: PlannedWave, request: ApprovalRequest | None = None
) -> str | None:
    """Pause the run with the approval form before ``wave``; why not, or None.

    ``request`` says what is approved (default: the fleet's path at the revision)."""
    request = request or ApprovalRequest(
        app=plan.fleet.metadata.name,
        from_environment="previous waves",
        to_environment=f"wave {wave.name} ({', '.join(wave.clusters)})",
        image=f"{plan.fleet.rollout.path}@{plan.sha[:12]}",
        digest=plan.sha,
        verified_at=datetime.now(UTC).isoformat(),
        verified_in="the waves before it",
        link=flow_run_url(),
    )
    try:
        request_approval(request, APPROVAL_TIMEOUT_SECONDS)
    except PolicyError as exc:
        return str(exc)
    return None


def gate_for(control: str) -> Gate | None:
    """The gate of :func:`run_fleet` reading the control Variable ``control`` (none: no gate)."""
    if not control:
        return None
    return lambda cluster: fleet_gate(control, cluster, cluster or "wave")


def controlled() -> str:
    """The control Variable name of the current flow run ("" outside a run)."""
    run = flow_run_id()
    return control_variable(run) if run else ""


@flow(name="fleet-wave", flow_run_name="wave-{wave_name}", log_prints=True)
def fleet_wave(
    plan: FleetPlan, index: int, report: FleetReport, wave_name: str, control: str = ""
) -> WaveReport:
    """One wave: its clusters as task runs, at most ``max_parallel`` at once; each
    cluster passes the gate of the rollout's ``control`` Variable first (pause, skip)."""
    return run_wave(
        plan,
        index,
        report,
        lambda name: fleet_roll_cluster(plan, name),
        lambda r, why: fleet_roll_back(plan, r, why),
        wave_table(plan),
        gate_for(control),
    )


def run_waves(plan: FleetPlan, approve: Any = None) -> FleetReport:
    """Run ``plan``'s waves in the current flow run: subflows, tasks, table, controls.

    ``approve(wave)`` asks before a wave with ``approve: true`` (default
    :func:`approve_wave`). The control Variable lives as long as the waves run.
    """
    control = controlled()
    if control:
        open_fleet_control(control)
    try:
        return run_fleet(
            plan,
            lambda name: fleet_roll_cluster(plan, name),
            lambda r, why: fleet_roll_back(plan, r, why),
            lambda name: fleet_recheck(plan, name),
            wave=lambda p, i, r: fleet_wave(p, i, r, p.waves[i].name, control),
            publish=wave_table(plan),
            approve=approve or (lambda wave: approve_wave(plan, wave)),
            gate=gate_for(control),
        )
    finally:
        if control:
            close_fleet_control(control)


@flow(name="fleet-rollout", log_prints=True)
def fleet_rollout(fleet_file: str, repo_dir: str, revision: str) -> Any:
    """Roll ``revision`` of ``repo_dir`` out to the fleet of ``fleet_file`` in waves."""
    plan = plan_fleet(fleet_file, repo_dir, revision)
    report = run_waves(plan)
    if not report.passed:
        return Failed(message=summary(report), data=report)
    return report


def fleet_rollout_directly(fleet_file: str, repo_dir: str, revision: str) -> FleetReport:
    """The same rollout without Prefect: the cores of :mod:`tasks.fleet` in this process."""
    plan = plan_rollout(fleet_file, repo_dir, revision)

    def back(report: ClusterReport, why: str) -> ClusterReport:
        return roll_back_cluster(plan, report, why)

    return run_fleet(
        plan,
        lambda name: roll_cluster(plan, name),
        back,
        lambda name: recheck_cluster(plan, name),
    )
