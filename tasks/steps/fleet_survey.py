"""Drift check and backup of a fleet as Prefect tasks: load the fleet, one task per cluster.

Each wrapper names the task and calls the Prefect-free core in
:mod:`tasks.fleet.survey`. A cluster's step is not retried by Prefect: its outcome
(failed, unreachable) is a row of the report, and the Kubernetes client already
retries single calls.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE as NO_CACHE

from blocks.storage import BackupStorage
from tasks.backup_export import BackupConfig
from tasks.fleet.config import Fleet
from tasks.fleet.survey import (
    ClusterSweep,
    backup_fleet_cluster,
    drift_fleet_cluster,
    load_fleet_targets,
)

__all__ = ["backup_cluster_of_fleet", "drift_cluster_of_fleet", "load_fleet_task"]


@task(name="load-fleet", cache_policy=NO_CACHE)
def load_fleet_task(fleet_file: str) -> Fleet:
    """Read and check the fleet file (ConfigError: bad input)."""
    return load_fleet_targets(fleet_file)


@task(name="drift-cluster", cache_policy=NO_CACHE, task_run_name="drift-{name}")
def drift_cluster_of_fleet(
    fleet: Fleet, name: str, repo: str, branch: str = "main", revision: str | None = None
) -> ClusterSweep:
    """Compare cluster ``name`` with git (clean, drifted, failed or unreachable)."""
    return drift_fleet_cluster(fleet, name, repo, branch=branch, revision=revision)


@task(name="backup-cluster", cache_policy=NO_CACHE, task_run_name="backup-{name}")
def backup_cluster_of_fleet(
    fleet: Fleet, name: str, config: BackupConfig, storage: BackupStorage
) -> ClusterSweep:
    """Back up cluster ``name`` under ``<prefix>/<name>/`` and apply its retention."""
    return backup_fleet_cluster(fleet, name, config, storage.get_store(), prefix=storage.prefix)
