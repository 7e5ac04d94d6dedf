"""`backup`: export selected namespaces of a cluster to S3, then apply retention.

Orchestration only: resolve the cluster and storage (saved blocks or plain
parameters), run the ``backup_cluster`` task, then ``apply_retention``, and publish what
was written. The restore-drill flows resolve their cluster and storage the same way.
"""

from __future__ import annotations

from typing import Literal

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from blocks.cluster import KubernetesCluster
from blocks.storage import BackupStorage
from flows.common import load_block
from shipyard.core.config import parse_config
from shipyard.core.errors import ConfigError
from tasks.backup_export import BackupConfig, BackupResult, render_backup_report
from tasks.steps.dr import apply_retention, backup_cluster, backup_with_velero
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
