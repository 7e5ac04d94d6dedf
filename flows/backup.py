"""`backup`: export selected namespaces of a cluster to S3, then apply retention.

Orchestration only: resolve the cluster and storage (saved blocks or plain
parameters), run the ``backup_cluster`` task, then ``apply_retention``, and publish what
was written. The restore-drill flows resolve their cluster and storage the same way.

``backup-fleet`` backs up every cluster of a fleet file: one ``backup-<cluster>`` task
run per cluster (at most ``max_parallel`` at once), each writing under
``<prefix>/<cluster>/<backup-id>/`` (so clusters never overwrite each other; a restore
drill picks one with its ``cluster``) and applying retention to that cluster's backups;
a table artifact ``backup-fleet-<fleet>`` (cluster, manifest key, status) and a
``shipyard.backup.completed`` or ``shipyard.backup.failed`` event per cluster (resource
``shipyard.backup.<fleet>.<cluster>``). An unreachable cluster is reported, the others
still run, and the run ends Failed with the report attached.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.states import Failed

from blocks.cluster import KubernetesCluster
from blocks.storage import BackupStorage
from flows.common import emit, load_block
from flows.drift_check import catalog_fleet
from shipyard.core.config import parse_config
from shipyard.core.errors import ConfigError
from tasks.backup_export import BackupConfig, BackupResult, render_backup_report
from tasks.fleet.config import Fleet
from tasks.fleet.survey import (
    ClusterSweep,
    FleetSweep,
    backup_fleet_cluster,
    load_fleet_targets,
    sweep,
)
from tasks.steps.dr import apply_retention, backup_cluster, backup_with_velero
from tasks.steps.fleet_survey import backup_cluster_of_fleet, load_fleet_task
from tasks.velero import VeleroConfig


def resolve_cluster(
    kubeconfig: str | None, cluster: str, cluster_block: str | None
) -> KubernetesCluster:
    """A saved cluster block by name, or one built from a kubeconfig path."""
    if cluster_block:
        return load_block(KubernetesCluster, cluster_block)
    return KubernetesCluster(name=cluster, kubeconfig_path=kubeconfig)


def resolve_storage(
    bucket: str | None, prefix: str, s3_endpoint: str | None, storage_block: str | None
) -> BackupStorage:
    """A saved storage block by name, or one built from bucket/prefix/endpoint."""
    if storage_block:
        return load_block(BackupStorage, storage_block)
    if not bucket:
        raise ConfigError("no bucket: pass --bucket or a storage block name")
    return BackupStorage(bucket=bucket, prefix=prefix, endpoint_url=s3_endpoint)


@flow(name="backup", log_prints=True)
def backup(
    namespaces: list[str],
    bucket: str | None = None,
    prefix: str = "shipyard-backups",
    s3_endpoint: str | None = None,
    kubeconfig: str | None = None,
    cluster: str = "default",
    gitops_revision: str | None = None,
    keep_last: int | None = None,
    max_age_days: float | None = None,
    cluster_block: str | None = None,
    storage_block: str | None = None,
    driver: Literal["shipyard", "velero"] = "shipyard",
    velero_namespace: str = "velero",
) -> BackupResult:
    """Back up namespaces (objects, custom resources, their CRDs) to S3 with a manifest.

    Args:
        namespaces: Namespaces to export.
        bucket: S3 bucket (ignored when storage_block is given).
        prefix: Key prefix; backups go under <prefix>/<cluster>/<backup-id>/.
        s3_endpoint: S3-compatible endpoint URL (MinIO, moto); default AWS.
        kubeconfig: kubeconfig path (ignored when cluster_block is given).
        cluster: Cluster name used in keys and reports.
        gitops_revision: GitOps commit deployed now, recorded in the manifest.
        keep_last: Retention: always keep the N newest backups.
        max_age_days: Retention: delete backups older than this (beyond keep_last).
        cluster_block: Name of a saved Shipyard Kubernetes Cluster block.
        storage_block: Name of a saved Shipyard Backup Storage block.
        driver: 'shipyard' (export to S3) or 'velero' (create a velero.io Backup and wait).
        velero_namespace: Namespace of the Velero server (driver 'velero').
    """
    config = parse_config(
        BackupConfig,
        {
            "namespaces": namespaces,
            "cluster": cluster,
            "gitops_revision": gitops_revision,
            "keep_last": keep_last,
            "max_age_days": max_age_days,
        },
    )
    target = resolve_cluster(kubeconfig, cluster, cluster_block)
    if driver == "velero":
        outcome = backup_with_velero(config, target, VeleroConfig(namespace=velero_namespace))
        print(f"velero backup {outcome.name}: {outcome.phase} in {outcome.seconds:.1f}s")
        return BackupResult(
            backup_id=outcome.name, cluster=cluster, objects=0, bytes=0, manifest_key=""
        )
    if driver != "shipyard":
        raise ConfigError(f"unknown backup driver {driver!r}: use 'shipyard' or 'velero'")
    storage = resolve_storage(bucket, prefix, s3_endpoint, storage_block)
    result = backup_cluster(config, target, storage)
    retention = apply_retention(config, storage)
    create_markdown_artifact(
        key="backup-report",
        markdown=render_backup_report(
            result, config, storage.bucket, deleted=len(retention.deleted), kept=retention.kept
        ),
        description="What the backup wrote.",
    )
    print(f"backup {result.backup_id}: {result.objects} objects, {result.bytes} bytes")
    return result


def _fleet_config(
    fleet: Fleet,
    namespaces: list[str] | None,
    gitops_revision: str | None,
    keep_last: int | None,
    max_age_days: float | None,
) -> BackupConfig:
    """The backup of each cluster: ``namespaces``, default the fleet's rollout namespace."""
    return parse_config(
        BackupConfig,
        {
            "namespaces": namespaces or [fleet.rollout.namespace],
            "gitops_revision": gitops_revision,
            "keep_last": keep_last,
            "max_age_days": max_age_days,
        },
    )


def _backup_event(fleet: Fleet, row: ClusterSweep, bucket: str) -> None:
    emit(
        "shipyard.backup.completed" if row.ok else "shipyard.backup.failed",
        f"shipyard.backup.{fleet.metadata.name}.{row.cluster}",
        {
            "fleet": fleet.metadata.name,
            "cluster": row.cluster,
            "status": row.status,
            "backup_id": row.backup_id,
            "manifest_key": row.backup_key,
            "bucket": bucket,
            "objects": row.objects,
            "reason": row.reason,
        },
    )


@flow(name="backup-fleet", log_prints=True)
def backup_fleet(
    fleet_file: str | None = None,
    namespaces: list[str] | None = None,
    bucket: str | None = None,
    prefix: str = "shipyard-backups",
    s3_endpoint: str | None = None,
    gitops_revision: str | None = None,
    keep_last: int | None = None,
    max_age_days: float | None = None,
    storage_block: str | None = None,
    max_parallel: int = 4,
    app: str | None = None,
    environment: str | None = None,
    gitops_block: str = "shipyard-gitops",
) -> Any:
    """Back up every cluster of a fleet (see module docstring).

    Args:
        fleet_file: Fleet file naming the clusters (kubeconfig, context); or app and
            environment.
        namespaces: Namespaces to export; default the fleet's rollout namespace.
        bucket: S3 bucket (ignored when storage_block is given).
        prefix: Key prefix; each cluster's backups go under <prefix>/<cluster>/.
        s3_endpoint: S3-compatible endpoint URL (MinIO, moto); default AWS.
        gitops_revision: GitOps commit deployed now, recorded in each manifest.
        keep_last: Retention per cluster: always keep the N newest backups.
        max_age_days: Retention per cluster: delete backups older than this.
        storage_block: Name of a saved Shipyard Backup Storage block.
        max_parallel: Clusters backed up at once.
        app: Catalog app whose environment targets a fleet (instead of fleet_file).
        environment: That environment (its fleet selector picks cluster blocks).
        gitops_block: GitOps repository block holding the catalog.
    """
    if bool(fleet_file) == bool(app and environment):
        raise ConfigError("give a fleet file, or app and environment (a catalog fleet)")
    if fleet_file:
        fleet = load_fleet_task(fleet_file)
    else:
        assert app is not None and environment is not None
        fleet, _, _ = catalog_fleet(app, environment, gitops_block)
    config = _fleet_config(fleet, namespaces, gitops_revision, keep_last, max_age_days)
    storage = resolve_storage(bucket, prefix, s3_endpoint, storage_block)
    names = [c.name for c in fleet.clusters]
    key = "backup-fleet-" + re.sub(r"[^a-z0-9-]+", "-", fleet.metadata.name.lower())

    def publish(rows: list[ClusterSweep]) -> None:
        done = {r.cluster: r.row() for r in rows}
        table = [
            done.get(n, {"cluster": n, "found": "", "status": "pending", "reason": ""})
            for n in names
        ]
        create_table_artifact(
            table,
            key=key,
            description=f"backups of fleet {fleet.metadata.name} in {storage.bucket}",
        )

    rows = sweep(
        names,
        lambda name: backup_cluster_of_fleet(fleet, name, config, storage),
        max_parallel,
        publish=publish,
    )
    for row in rows:
        _backup_event(fleet, row, storage.bucket)
    report = FleetSweep(fleet=fleet.metadata.name, action="backup", clusters=rows)
    print(report.summary())
    if not report.passed:
        return Failed(message=report.summary(), data=report)
    return report


def backup_fleet_directly(
    fleet_file: str,
    namespaces: list[str] | None = None,
    bucket: str | None = None,
    prefix: str = "shipyard-backups",
    s3_endpoint: str | None = None,
    gitops_revision: str | None = None,
    keep_last: int | None = None,
    max_age_days: float | None = None,
    storage_block: str | None = None,
    max_parallel: int = 4,
) -> FleetSweep:
    """:func:`backup_fleet` without Prefect (no artifact, no event; no storage block)."""
    fleet = load_fleet_targets(fleet_file)
    config = _fleet_config(fleet, namespaces, gitops_revision, keep_last, max_age_days)
    storage = resolve_storage(bucket, prefix, s3_endpoint, None)
    store = storage.get_store()
    rows = sweep(
        [c.name for c in fleet.clusters],
        lambda name: backup_fleet_cluster(fleet, name, config, store, prefix=storage.prefix),
        max_parallel,
    )
    return FleetSweep(fleet=fleet.metadata.name, action="backup", clusters=rows)
