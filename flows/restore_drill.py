"""`restore_drill`: restore a backup into drill namespaces and prove it works.

Orchestration only: run the drill task (verify checksums, restore, parity, readiness,
RTO/RPO, cleanup in ``finally``), then publish the report, trend and event. A drill
that misses its bar ends the flow run Failed, with the result attached, so schedules
and automations see it, and callers still read the numbers.
"""

from __future__ import annotations

from typing import Any, Literal

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.states import Failed

from flows.backup import resolve_cluster, resolve_storage
from flows.common import emit, publish_drill_report
from shipyard.core.config import parse_config
from shipyard.core.errors import ConfigError
from tasks.drill_report import (
    DrillConfig,
    DrillResult,
    GitDrillResult,
    drill_event,
    render_git_report,
)
from tasks.steps.dr import (
    checkout_env,
    publish_drill,
    restore_drill_task,
    restore_from_git_task,
    velero_drill_task,
)
from tasks.velero import VeleroConfig


@flow(name="restore-drill", log_prints=True)
def restore_drill(
    bucket: str | None = None,
    prefix: str = "shipyard-backups",
    s3_endpoint: str | None = None,
    kubeconfig: str | None = None,
    cluster: str = "default",
    backup: str = "latest",
    window_days: float | None = None,
    existing: Literal["skip", "update", "fail"] = "fail",
    rto_target_seconds: float | None = None,
    rpo_target_seconds: float | None = None,
    ready_timeout_seconds: float = 120.0,
    cluster_block: str | None = None,
    drill_cluster_block: str | None = None,
    storage_block: str | None = None,
    driver: Literal["shipyard", "velero"] = "shipyard",
    velero_namespace: str = "velero",
) -> Any:
    """Restore a backup into <ns>-drill-<id> namespaces, verify parity, measure RTO/RPO.

    Args:
        bucket: S3 bucket (ignored when storage_block is given).
        prefix: Key prefix the backups were written under.
        s3_endpoint: S3-compatible endpoint URL; default AWS.
        kubeconfig: kubeconfig of the drill target (ignored with a cluster block).
        cluster: Name of the cluster whose backups to drill.
        backup: Backup id, 'latest', or 'random' (within window_days).
        window_days: With backup='random', pick among backups this recent.
        existing: Objects already present in the drill target: skip, update or fail.
        rto_target_seconds: Fail when drill start to verified ready takes longer.
        rpo_target_seconds: Fail when the backup is older than this.
        ready_timeout_seconds: How long restored workloads may take to become Available.
        cluster_block: Saved cluster block of the drill target.
        drill_cluster_block: A separate drill cluster's block (takes precedence).
        storage_block: Saved Shipyard Backup Storage block.
        driver: 'shipyard' (S3 backups) or 'velero' (a velero.io Restore with namespace
            mapping; parity measured against the live namespaces).
        velero_namespace: Namespace of the Velero server (driver 'velero').
    """
    config = parse_config(
        DrillConfig,
        {
            "cluster": cluster,
            "backup": backup,
            "window_days": window_days,
            "existing": existing,
            "rto_target_seconds": rto_target_seconds,
            "rpo_target_seconds": rpo_target_seconds,
            "ready_timeout_seconds": ready_timeout_seconds,
        },
    )
    target = resolve_cluster(kubeconfig, cluster, drill_cluster_block or cluster_block)
    if driver not in ("shipyard", "velero"):
        raise ConfigError(f"unknown drill driver {driver!r}: use 'shipyard' or 'velero'")
    storage = resolve_storage(bucket, prefix, s3_endpoint, storage_block)
    result: DrillResult
    if driver == "velero":
        result = velero_drill_task(config, target, VeleroConfig(namespace=velero_namespace))
    else:
        result = restore_drill_task(config, target, storage)
    publish_drill_report(publish_drill(result, storage))
    print(
        f"drill of {result.backup_id}: {'PASSED' if result.passed else 'FAILED'} "
        f"parity={result.parity:.4f} rto={result.rto_seconds:.1f}s rpo={result.rpo_seconds:.1f}s"
    )
    if not result.passed:
        return Failed(message="; ".join(result.failures) or "drill failed", data=result)
    return result


@flow(name="restore-from-git-drill", log_prints=True)
def restore_from_git_drill(
    env_path: str,
    live_namespace: str,
    repo_url: str | None = None,
    ref: str = "main",
    kubeconfig: str | None = None,
    cluster: str = "default",
    cluster_block: str | None = None,
    ready_timeout_seconds: float = 120.0,
) -> Any:
    """Prove git alone can rebuild an environment: render it into a drill namespace and
    compare it with the live one (parity, objects only in git or only live).

    Args:
        env_path: Environment directory (inside repo_url when given, else a local path).
        live_namespace: Namespace the environment runs in.
        repo_url: GitOps repository to clone (shallow); omit to use a local directory.
        ref: Branch or tag to check out.
        kubeconfig: kubeconfig path (ignored when cluster_block is given).
        cluster: Cluster name for reports.
        cluster_block: Saved Shipyard Kubernetes Cluster block.
        ready_timeout_seconds: How long rebuilt workloads may take to become Available.
    """
    env_dir = checkout_env(repo_url, ref, env_path) if repo_url else env_path
    target = resolve_cluster(kubeconfig, cluster, cluster_block)
    result: GitDrillResult = restore_from_git_task(
        target, env_dir, live_namespace, ready_timeout_seconds
    )
    create_markdown_artifact(
        key="restore-from-git-drill",
        markdown=render_git_report(result),
        description=f"Rebuild of {live_namespace} from git",
    )
    emit(
        drill_event(result.passed),
        f"shipyard.cluster.{cluster}",
        {
            "kind": "git",
            "live_namespace": live_namespace,
            "parity": result.parity,
            "failures": result.failures[:10],
        },
        name=cluster,
    )
    print(
        f"git drill of {live_namespace}: {'PASSED' if result.passed else 'FAILED'} "
        f"parity={result.parity:.4f}"
    )
    if not result.passed:
        return Failed(message="; ".join(result.failures), data=result)
    return result
