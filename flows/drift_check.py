"""`drift-check` for one app environment: does the cluster still run what git declares?

Runs the ``detect-drift`` step (see :mod:`tasks.detect_drift`), publishes the report as a
table artifact and a ``shipyard.drift.detected`` (or ``shipyard.drift.clean``) event;
with ``heal`` it syncs and checks again. Orchestration only: the step does the I/O.

``drift-check-fleet`` does the same for every cluster of a fleet file: one
``drift-<cluster>`` task run per cluster (at most ``max_parallel`` at once), a table
artifact ``drift-fleet-<fleet>`` (cluster, drifted objects, status) updated as clusters
finish, and one event per cluster whose resource id names the cluster. An unreachable
cluster is reported and the others still run; the run ends Failed, with the report
attached, when any cluster could not be checked (drift alone is a finding, not a
failure). ``drift_check_fleet_directly`` runs the same without Prefect (the CLI without
an API).
"""

from __future__ import annotations

import re
from typing import Any

from prefect import flow
from prefect.artifacts import create_table_artifact
from prefect.states import Failed

from flows.common import emit
from shipyard.core.errors import ConfigError
from tasks.detect_drift import DriftConfig, DriftItem, DriftReport
from tasks.fleet.config import Fleet
from tasks.fleet.survey import (
    ClusterSweep,
    FleetSweep,
    drift_config_for,
    drift_fleet_cluster,
    fleet_of_environment,
    load_fleet_targets,
    sweep,
)
from tasks.steps.drift import detect_drift_task
from tasks.steps.fleet_survey import drift_cluster_of_fleet, load_fleet_task
from tasks.steps.rollout import sync_app
from tasks.sync.config import SyncConfig

__all__ = [
    "DriftConfig",
    "DriftItem",
    "DriftReport",
    "catalog_fleet",
    "drift_check",
    "drift_check_directly",
    "drift_check_fleet",
    "drift_check_fleet_directly",
]


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


def drift_check_directly(cluster: Any, config: DriftConfig) -> DriftReport:
    """:func:`drift_check` without Prefect (no heal, artifact or event): the CLI's path
    when no Prefect API answers."""
    from shipyard.core.kube import KubeClient
    from tasks.detect_drift import detect_drift

    return detect_drift(KubeClient(cluster.get_api_client()), config)


def artifact_key(kind: str, fleet: Fleet) -> str:
    """``<kind>-fleet-<fleet name>`` as an artifact key (lower case, dashes)."""
    return f"{kind}-fleet-" + re.sub(r"[^a-z0-9-]+", "-", fleet.metadata.name.lower())


def _drift_event(fleet: Fleet, row: ClusterSweep, repo: str) -> None:
    config = drift_config_for(fleet, row.cluster, repo)
    if row.status in ("clean", "drifted"):
        name = "shipyard.drift.detected" if row.status == "drifted" else "shipyard.drift.clean"
    else:
        name = "shipyard.drift.failed"
    emit(
        name,
        f"shipyard.app.{config.app}.{config.namespace}.cluster.{row.cluster}",
        {
            "fleet": fleet.metadata.name,
            "cluster": row.cluster,
            "namespace": config.namespace,
            "revision": row.revision,
            "status": row.status,
            "items": row.drifted,
            "reason": row.reason,
        },
    )


def catalog_fleet(app: str, environment: str, gitops_block: str) -> tuple[Fleet, str, str]:
    """(fleet, repo URL, branch) of catalog environment ``app``/``environment`` that
    targets a fleet: its labelled KubernetesCluster blocks the selector picks."""
    from blocks.gitops import GitOpsRepository
    from flows.common import load_block
    from flows.fleet_deliver import cluster_inventory
    from tasks.steps.gitops import read_catalog

    repository = load_block(GitOpsRepository, gitops_block)
    entry = read_catalog(repository).catalog.app(app)
    env = entry.environment(environment)
    return fleet_of_environment(entry, env, cluster_inventory()), repository.url, env.branch


def _fleet_input(
    fleet_file: str | None, app: str | None, environment: str | None, gitops_block: str
) -> tuple[Fleet, str | None, str | None]:
    """The fleet from a fleet file, or from a catalog environment (with its repo, branch)."""
    if bool(fleet_file) == bool(app and environment):
        raise ConfigError("give a fleet file, or app and environment (a catalog fleet)")
    if fleet_file:
        return load_fleet_task(fleet_file), None, None
    assert app is not None and environment is not None
    return catalog_fleet(app, environment, gitops_block)


@flow(name="drift-check-fleet", log_prints=True)
def drift_check_fleet(
    fleet_file: str | None = None,
    repo: str | None = None,
    branch: str = "main",
    revision: str | None = None,
    max_parallel: int = 4,
    app: str | None = None,
    environment: str | None = None,
    gitops_block: str = "shipyard-gitops",
) -> Any:
    """Report drift of every cluster of a fleet against git (see module docstring); the
    report, or a Failed state carrying it when a cluster failed.

    Args:
        fleet_file: Fleet file naming the clusters; or give app and environment.
        repo: GitOps repo (working tree or URL); default the GitOps block's (catalog).
        branch: Branch compared (its tip); a catalog environment's own branch wins.
        revision: Compare with this commit instead of the tip.
        max_parallel: Clusters checked at once.
        app: Catalog app whose environment targets a fleet (with environment).
        environment: That environment (its fleet selector picks cluster blocks).
        gitops_block: GitOps repository block holding the catalog.
    """
    fleet, catalog_repo, catalog_branch = _fleet_input(fleet_file, app, environment, gitops_block)
    source = repo or catalog_repo
    branch = catalog_branch or branch
    if not source:
        raise ConfigError("no GitOps repo: pass repo")
    names = [c.name for c in fleet.clusters]
    key = artifact_key("drift", fleet)

    def publish(rows: list[ClusterSweep]) -> None:
        done = {r.cluster: r.row() for r in rows}
        table = [
            done.get(n, {"cluster": n, "found": "", "status": "pending", "reason": ""})
            for n in names
        ]
        create_table_artifact(table, key=key, description=f"drift of fleet {fleet.metadata.name}")

    rows = sweep(
        names,
        lambda name: drift_cluster_of_fleet(fleet, name, source, branch, revision),
        max_parallel,
        publish=publish,
    )
    for row in rows:
        _drift_event(fleet, row, source)
    report = FleetSweep(fleet=fleet.metadata.name, action="drift-check", clusters=rows)
    print(report.summary())
    if not report.passed:
        return Failed(message=report.summary(), data=report)
    return report


def drift_check_fleet_directly(
    fleet_file: str,
    repo: str,
    branch: str = "main",
    revision: str | None = None,
    max_parallel: int = 4,
) -> FleetSweep:
    """The same check without Prefect: the cores in this process, no artifact or event."""
    fleet = load_fleet_targets(fleet_file)
    rows = sweep(
        [c.name for c in fleet.clusters],
        lambda name: drift_fleet_cluster(fleet, name, repo, branch=branch, revision=revision),
        max_parallel,
    )
    return FleetSweep(fleet=fleet.metadata.name, action="drift-check", clusters=rows)
