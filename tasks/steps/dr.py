"""The disaster-recovery steps as Prefect tasks: backups, retention, restore drills.

Each wrapper builds its ports from blocks (a :class:`~blocks.cluster.KubernetesCluster`
gives the Kubernetes client, a :class:`~blocks.storage.BackupStorage` the S3 store),
calls its Prefect-free core and returns the result; retries are for transient failures
only (``retry_condition``). :func:`publish_drill` records a drill and returns what to
publish about it; the flow publishes it (:func:`flows.common.publish_drill_report`).
"""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NONE as NO_CACHE

from blocks.cluster import KubernetesCluster
from blocks.storage import BackupStorage
from shipyard.core.errors import retry_condition
from shipyard.core.kube import KubeClient, Retry
from tasks.backup_export import BackupConfig, BackupResult, run_backup
from tasks.backup_retention import RetentionResult, apply_backup_retention
from tasks.backup_velero import run_velero_backup
from tasks.drill_report import (
    DrillConfig,
    DrillPublication,
    DrillResult,
    GitDrillResult,
    record_and_publish,
)
from tasks.restore_backup_drill import run_drill
from tasks.restore_git_drill import checkout_env_dir, run_git_drill
from tasks.restore_velero_drill import velero_drill
from tasks.velero import VeleroConfig, VeleroOutcome

__all__ = [
    "apply_retention",
    "backup_cluster",
    "backup_with_velero",
    "checkout_env",
    "publish_drill",
    "restore_drill_task",
    "restore_from_git_task",
    "velero_drill_task",
]


def _kube(cluster: KubernetesCluster) -> KubeClient:
    """DR's client: bulk listing and writing of thousands of objects, so a shorter retry
    budget per call (the task retries as a whole) and a longer read timeout."""
    return cluster.get_kube_client(retry=Retry(attempts=4), request_timeout=60.0)


# --- backup ---------------------------------------------------------------------------


@task(
    name="backup_cluster",
    retries=2,
    retry_delay_seconds=[5, 20],
    retry_condition_fn=retry_condition,
    cache_policy=NO_CACHE,
)
def backup_cluster(
    config: BackupConfig, cluster: KubernetesCluster, storage: BackupStorage
) -> BackupResult:
    """Back up ``config.namespaces`` of ``cluster`` into ``storage``."""
    return run_backup(_kube(cluster), storage.get_store(), config, prefix=storage.prefix)


@task(
    name="apply_retention",
    retries=2,
    retry_delay_seconds=[5, 20],
    retry_condition_fn=retry_condition,
    cache_policy=NO_CACHE,
)
def apply_retention(config: BackupConfig, storage: BackupStorage) -> RetentionResult:
    """Delete backups of ``config.cluster`` beyond keep_last / older than max_age_days."""
    return apply_backup_retention(storage.get_store(), config, prefix=storage.prefix)


@task(
    name="backup_with_velero",
    retries=1,
    retry_delay_seconds=30,
    retry_condition_fn=retry_condition,
    cache_policy=NO_CACHE,
)
def backup_with_velero(
    config: BackupConfig, cluster: KubernetesCluster, velero: VeleroConfig
) -> VeleroOutcome:
    """Create a velero.io Backup of ``config.namespaces`` and wait for its final phase."""
    return run_velero_backup(_kube(cluster), config.namespaces, velero)


# --- restore drills -------------------------------------------------------------------


@task(
    name="restore_drill",
    retries=1,
    retry_delay_seconds=10,
    retry_condition_fn=retry_condition,
    cache_policy=NO_CACHE,
)
def restore_drill_task(
    config: DrillConfig, cluster: KubernetesCluster, storage: BackupStorage
) -> DrillResult:
    """Verify, restore, check and clean up one backup (see :func:`run_drill`)."""
    return run_drill(_kube(cluster), storage.get_store(), config, prefix=storage.prefix)


@task(
    name="publish_drill",
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=retry_condition,
    cache_policy=NO_CACHE,
)
def publish_drill(result: DrillResult, storage: BackupStorage) -> DrillPublication:
    """Record the drill in S3; its report, trend and event, for the flow to publish."""
    return record_and_publish(storage.get_store(), storage.prefix, result)


@task(
    name="restore_from_git",
    retries=1,
    retry_delay_seconds=10,
    retry_condition_fn=retry_condition,
    cache_policy=NO_CACHE,
)
def restore_from_git_task(
    cluster: KubernetesCluster, env_dir: str, live_namespace: str, ready_timeout: float = 120.0
) -> GitDrillResult:
    """Rebuild ``env_dir`` into a drill namespace and compare with ``live_namespace``."""
    return run_git_drill(_kube(cluster), Path(env_dir), live_namespace, ready_timeout=ready_timeout)


@task(name="checkout_env", retries=2, retry_delay_seconds=[2, 10], cache_policy=NO_CACHE)
def checkout_env(repo_url: str, ref: str, env_path: str) -> str:
    """Shallow-clone ``repo_url`` at ``ref`` into a temp dir; return the env directory."""
    return checkout_env_dir(repo_url, ref, env_path)


@task(
    name="velero_restore_drill",
    retries=1,
    retry_delay_seconds=30,
    retry_condition_fn=retry_condition,
    cache_policy=NO_CACHE,
)
def velero_drill_task(
    config: DrillConfig, cluster: KubernetesCluster, velero: VeleroConfig
) -> DrillResult:
    """Drill a Velero backup (see :func:`tasks.restore_velero_drill.run_velero_drill`)."""
    return velero_drill(_kube(cluster), velero, config)
