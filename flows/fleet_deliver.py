"""Deliver and promote to a catalog environment that targets a fleet (``fleet:``).

``deliver`` and ``promote`` write the GitOps commit once, exactly as for one cluster;
then, instead of one sync-and-verify, :func:`converge_fleet` takes that commit through
the environment's waves with the fleet rollout machinery (:mod:`flows.fleet_rollout`):
one subflow per wave (``wave-<name>``), one task run per cluster (``roll-out-<cluster>``),
the live wave table artifact ``fleet-<app>-<env>``, approval before a wave with
``approve: true`` (the promote flow's form), pause/resume/skip through the run's control
Variable. The clusters are the labelled KubernetesCluster blocks the environment's
``fleet.selector`` matches (block name = cluster name).

When a wave halts, its clusters (or every wave's, with ``rollback: all``) go back to the
revision each ran before, then the GitOps commit is reverted (a new commit, as for one
cluster), and the caller gets :class:`~flows.sync_verify.RolledBackError` (or
:class:`~flows.sync_verify.RollbackFailedError` when the revert failed), so the run ends
Failed "rolled back: halted at wave canary: ..." with the same artifact and event as a
single-cluster rollback. Later waves are never touched. A wave whose approval is
rejected undoes the earlier waves too (every cluster back, then the revert): after a
rejection git and every cluster agree again.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound

from blocks.cluster import KubernetesCluster
from blocks.gitops import GitOpsRepository
from flows.approval import ApprovalRequest
from flows.common import flow_run_url, load_block
from flows.fleet_rollout import approve_wave, run_waves, summary, wave_table
from flows.sync_verify import RollbackFailedError, RolledBackError
from shipyard.core.catalog import App, Environment
from shipyard.core.errors import ConfigError, PolicyError
from tasks.fleet.config import FleetCluster, FleetPlan, PlannedWave
from tasks.fleet.run import FleetReport
from tasks.steps.fleet import fleet_roll_back, plan_fleet_environment
from tasks.steps.gitops import read_pinned, revert_manifest_commit

__all__ = ["as_fleet_cluster", "cluster_inventory", "converge_fleet"]


def as_fleet_cluster(name: str, block: KubernetesCluster) -> FleetCluster:
    """The inventory entry of the cluster block saved as ``name``.

    A fleet reaches each cluster through a kubeconfig file: the block's
    ``kubeconfig_path``, else $KUBECONFIG, else ~/.kube/config (as for one cluster).
    """
    if block.cluster_config is not None or block.in_cluster:
        raise ConfigError(
            f"cluster block {name!r}: a fleet member needs kubeconfig_path "
            "(cluster_config and in_cluster are for single-cluster environments)"
        )
    kubeconfig = (
        block.kubeconfig_path
        or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
        or str(Path.home() / ".kube" / "config")
    )
    return FleetCluster(
        name=name, kubeconfig=kubeconfig, context=block.context, labels=dict(block.labels)
    )


def cluster_inventory() -> list[FleetCluster]:
    """Every saved KubernetesCluster block that has labels, as inventory entries."""
    slug = KubernetesCluster.get_block_type_slug()
    try:
        with get_client(sync_client=True) as client:
            names = [d.name for d in client.read_block_documents_by_type(slug) if d.name]
    except ObjectNotFound:
        return []
    blocks = {n: load_block(KubernetesCluster, n) for n in sorted(names)}
    return [as_fleet_cluster(n, b) for n, b in blocks.items() if b.labels]


def _approval(
    app: App, env: Environment, digest: str, plan: FleetPlan, wave: PlannedWave
) -> str | None:
    """The promote form, saying which wave of which environment gets which digest."""
    request = ApprovalRequest(
        app=app.name,
        from_environment=f"{env.name}: the waves before {wave.name}",
        to_environment=f"{env.name} wave {wave.name} ({', '.join(wave.clusters)})",
        image=f"{app.image}@{digest}",
        digest=digest,
        verified_at=datetime.now(UTC).isoformat(timespec="seconds"),
        verified_in=f"{env.namespace} on the clusters of the waves before it",
        link=flow_run_url(),
    )
    return approve_wave(plan, wave, request)


def _log(report: FleetReport) -> None:
    logger = get_run_logger()
    for wave in report.waves:
        for c in wave.clusters:
            line = f"wave {wave.name}: {c.name} {c.status or 'not started'}: {c.reason or ''}"
            (logger.info if c.status in ("healthy", "unchanged") else logger.warning)(line)


def _reason(report: FleetReport) -> str:
    """Where it halted, and why the first failed cluster failed (one line)."""
    first = next(
        (c for w in report.waves for c in w.clusters if c.status == "failed" and c.reason), None
    )
    if first is None or first.reason is None:
        return summary(report)
    why = first.reason.split("; rolled back to ")[0].split("; rollback to ")[0]
    return f"{summary(report)} ({first.name}: {why[:300]})"


def _undo_earlier_waves(plan: FleetPlan, report: FleetReport, why: str) -> FleetReport:
    """Roll back every cluster that reached REV (as ``rollback: all`` does after a halt)."""
    undone = report.model_copy(deep=True)
    for wave in undone.waves:
        wave.clusters = [
            fleet_roll_back(plan, c, why) if c.status in ("healthy", "unchanged") else c
            for c in wave.clusters
        ]
    wave_table(plan)(undone)
    return undone


def converge_fleet(
    repository: GitOpsRepository,
    app: App,
    env: Environment,
    commit: str | None,
    digest: str,
) -> str:
    """Take GitOps ``commit`` through the waves of ``env``'s fleet; the revision synced.

    ``commit`` was just pushed by this run (a halt reverts it); None: the files already
    pinned ``digest``, so the tip of the environment's branch is re-checked on every
    cluster (a cluster not at it is synced; a halt then reverts nothing and raises
    PolicyError). Skipped clusters (on_unreachable: skip, or skipped by a person) are
    logged and in the table, not a failure.
    """
    sha = commit or read_pinned(repository, env.branch, env.path, app.image).commit
    inventory = cluster_inventory()
    plan = plan_fleet_environment(app.name, env, inventory, repository.url, sha)
    refused: list[str] = []

    def approve(wave: PlannedWave) -> str | None:
        why = _approval(app, env, digest, plan, wave)
        refused.extend([why] if why else [])
        return why

    report = run_waves(plan, approve=approve)
    if report.halted_at is None:
        _log(report)
        return sha
    reason = _reason(report) + (f" ({refused[0]})" if refused else "")
    if commit is None:
        _log(report)
        raise PolicyError(f"{app.name}/{env.name}: {reason}")
    if refused:  # a rejected wave undoes the earlier ones too: git and clusters agree again
        report = _undo_earlier_waves(plan, report, reason)
    _log(report)
    try:
        reverted = revert_manifest_commit(repository, commit, reason, env.branch)
    except Exception as exc:  # noqa: BLE001 - any failure of the revert is reported as such
        raise RollbackFailedError(
            f"delivery of {commit[:12]} failed ({reason}) and the revert failed: {exc}",
            reason=reason,
            commit=commit,
            rollback_error=f"revert of {commit[:12]} failed: {exc}",
        ) from None
    stuck = [
        f"{c.name}: {c.reason}"
        for w in report.waves
        for c in w.clusters
        if c.status == "failed" and "rollback to" in (c.reason or "")
    ]
    if stuck:
        raise RollbackFailedError(
            f"delivery of {commit[:12]} failed ({reason}) and a cluster rollback failed",
            reason=reason,
            commit=commit,
            revert_commit=reverted.revert_commit,
            rollback_error="; ".join(stuck),
        )
    raise RolledBackError(reason, commit, reverted.revert_commit)
