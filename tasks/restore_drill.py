"""Restore drill: prove a backup can rebuild the namespaces it holds, and how fast.

:func:`run_drill` picks a backup, verifies every object's sha256 *before* touching a
cluster (a tampered or missing object fails the drill naming it, and leaves nothing
behind), restores into ``<ns>-drill-<id>`` namespaces, checks parity and workload
availability, measures RTO (drill start to verified ready) and RPO (backup age), and
always deletes the drill namespaces, also when a step raised.

Drill history is kept as JSON objects next to the backups (``<prefix>/<cluster>/_drills/``),
so the trend survives Prefect database resets and is readable with any S3 tool.
:func:`render_report` and :func:`trend_rows` are pure; the ``@task`` wrappers at the end
publish artifacts and events.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE as NO_CACHE
from prefect.events import emit_event
from pydantic import BaseModel, ConfigDict, Field

from blocks.cluster import KubernetesCluster
from blocks.storage import BackupStorage
from shipyard.errors import retry_condition
from shipyard.redact import redact
from tasks.backup_cluster import DEFAULT_WORKERS, KubeApi, S3Store, parallel_map
from tasks.backup_manifest import (
    DRILLS_DIR,
    BackupManifest,
    IntegrityError,
    backup_root,
    choose_backup,
    integrity_error,
    object_key,
    verify_contents,
)
from tasks.normalize import drill_namespace
from tasks.restore_objects import (
    ExistingPolicy,
    RestoreOutcome,
    cleanup_drill,
    measure_parity,
    plan_restore,
    restore_plan,
    wait_workloads,
)

__all__ = [
    "DrillConfig",
    "DrillResult",
    "drill_history",
    "publish_drill",
    "render_report",
    "restore_drill_task",
    "run_drill",
    "trend_rows",
]

log = logging.getLogger(__name__)
JSON = dict[str, Any]


class DrillConfig(BaseModel):
    """How to run one restore drill."""

    model_config = ConfigDict(extra="forbid")

    cluster: str = Field("default", description="Cluster name the backups were taken from.")
    backup: str = Field("latest", description="Backup id, 'latest', or 'random' (see window).")
    window_days: float | None = Field(
        None, gt=0, description="With backup='random': pick among backups this recent."
    )
    existing: ExistingPolicy = Field(
        ExistingPolicy.FAIL, description="Objects already in the drill target: skip, update, fail."
    )
    rto_target_seconds: float | None = Field(
        None, gt=0, description="Fail the drill when restore-to-verified takes longer."
    )
    rpo_target_seconds: float | None = Field(
        None, gt=0, description="Fail the drill when the backup is older than this."
    )
    ready_timeout_seconds: float = Field(
        120.0, gt=0, description="How long to wait for restored workloads to become Available."
    )
    cleanup_timeout_seconds: float = Field(
        120.0, gt=0, description="How long to wait for drill namespaces to disappear."
    )
    check_workloads: bool = Field(True, description="Require restored workloads Available.")
    workers: int = Field(DEFAULT_WORKERS, ge=1, le=64, description="Parallel API/S3 calls.")
    drill_id: str | None = Field(
        None, pattern=r"^[a-z0-9]{1,8}$", description="Fixed drill id (default random)."
    )


class DrillResult(BaseModel):
    """The outcome of a drill: the CLI's JSON and the drill history record."""

    passed: bool = Field(description="Every check passed and targets were met.")
    backup_id: str = Field(description="The backup restored.")
    drill_id: str = Field("", description="Suffix of the drill namespaces.")
    cluster: str = Field("default", description="Cluster name of the backup.")
    started_at: datetime = Field(description="Drill start (UTC).")
    objects: int = Field(0, description="Objects in the backup.")
    restored: int = Field(0, description="Objects created or updated by the drill.")
    parity: float = Field(0.0, description="Share of objects equal to the backup after restore.")
    rto_seconds: float = Field(0.0, description="Drill start to verified ready.")
    rpo_seconds: float = Field(0.0, description="Age of the backup at drill start.")
    rto_target_seconds: float | None = Field(None, description="RTO target, if any.")
    rpo_target_seconds: float | None = Field(None, description="RPO target, if any.")
    mismatches: list[str] = Field(default_factory=list, description="Parity differences.")
    unavailable: list[str] = Field(default_factory=list, description="Workloads not Available.")
    failures: list[str] = Field(default_factory=list, description="Why the drill failed.")
    namespaces: dict[str, str] = Field(default_factory=dict, description="Source -> drill ns.")
    cleanup_left: list[str] = Field(
        default_factory=list, description="Drill objects still present after cleanup."
    )

    def cli_json(self) -> JSON:
        """Exactly the keys of the CLI contract."""
        return {
            "passed": self.passed,
            "backup_id": self.backup_id,
            "objects": self.objects,
            "restored": self.restored,
            "parity": round(self.parity, 6),
            "rto_seconds": round(self.rto_seconds, 3),
            "rpo_seconds": round(self.rpo_seconds, 3),
            "mismatches": self.mismatches,
        }


def _fetch_verified(
    store: S3Store, manifest: BackupManifest, root: str, workers: int
) -> dict[str, JSON]:
    """Download every object of the backup and check it against the manifest."""
    import json

    paths = [e.path for e in manifest.objects]
    blobs = parallel_map(lambda p: store.get(object_key(root, p)), paths, workers)
    contents = dict(zip(paths, blobs, strict=True))
    problems = verify_contents(manifest, contents)
    if problems:
        raise integrity_error(manifest.backup_id, problems)
    out: dict[str, JSON] = {}
    for path, data in contents.items():
        assert data is not None
        out[path] = json.loads(data)
    return out


def run_drill(
    kube: KubeApi,
    store: S3Store,
    config: DrillConfig,
    *,
    prefix: str,
    wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    clock: Callable[[], float] = time.monotonic,
) -> DrillResult:
    """Run one drill end to end and return its result (a failed drill returns, not raises).

    Raises only for unusable input (unknown bucket or backup id: ConfigError) and for
    infrastructure failures that retrying may fix (TransientError).
    """
    t0 = clock()
    started = wall()
    store.check_bucket()
    ids = store.complete_backups(prefix, config.cluster, config.workers)
    window = timedelta(days=config.window_days) if config.window_days else None
    backup_id = choose_backup(ids, config.backup, now=started, window=window)
    manifest = store.read_manifest(prefix, config.cluster, backup_id)
    result = DrillResult(
        passed=False,
        backup_id=backup_id,
        cluster=config.cluster,
        started_at=started,
        objects=len(manifest.objects),
        rpo_seconds=max(0.0, (started - manifest.created_at).total_seconds()),
        rto_target_seconds=config.rto_target_seconds,
        rpo_target_seconds=config.rpo_target_seconds,
    )
    root = backup_root(prefix, config.cluster, backup_id)
    try:
        objects = _fetch_verified(store, manifest, root, config.workers)
    except IntegrityError as exc:
        result.failures.append(exc.message)
        result.mismatches = [exc.message]
        result.rto_seconds = clock() - t0
        return result

    drill_id = config.drill_id or f"{random.SystemRandom().getrandbits(24):06x}"
    mapping = {ns: drill_namespace(ns, drill_id) for ns in manifest.namespaces}
    result.drill_id = drill_id
    result.namespaces = mapping
    plan = plan_restore(manifest, objects, mapping, drill_id)
    outcome = RestoreOutcome()
    try:
        restore_plan(kube, plan, policy=config.existing, workers=config.workers, outcome=outcome)
        result.restored = outcome.restored
        parity = measure_parity(kube, plan, workers=config.workers)
        result.parity = parity.parity
        result.mismatches = parity.mismatches
        if config.check_workloads:
            result.unavailable = wait_workloads(
                kube, plan, timeout=config.ready_timeout_seconds, workers=config.workers
            )
        result.rto_seconds = clock() - t0
    except Exception as exc:  # noqa: BLE001 - recorded as a failed drill, cleanup follows
        result.restored = outcome.restored
        result.rto_seconds = clock() - t0
        result.failures.append(redact(f"restore failed: {exc}"))
    finally:
        result.cleanup_left = cleanup_drill(
            kube,
            list(mapping.values()),
            outcome.created_cluster_scoped,
            timeout=config.cleanup_timeout_seconds,
        )
    result.failures.extend(evaluate(result))
    result.passed = not result.failures
    return result


def evaluate(result: DrillResult) -> list[str]:
    """Reasons a drill misses its bar (pure): parity, availability, RTO, RPO, cleanup."""
    reasons: list[str] = []
    if result.parity < 1.0 and not any(f.startswith("restore failed") for f in result.failures):
        reasons.append(f"parity {result.parity:.4f} < 1.0 ({len(result.mismatches)} differences)")
    if result.unavailable:
        reasons.append(f"workloads not Available: {', '.join(result.unavailable[:5])}")
    if result.rto_target_seconds is not None and result.rto_seconds > result.rto_target_seconds:
        reasons.append(
            f"RTO {result.rto_seconds:.1f}s exceeds target {result.rto_target_seconds:.1f}s"
        )
    if result.rpo_target_seconds is not None and result.rpo_seconds > result.rpo_target_seconds:
        reasons.append(
            f"RPO {result.rpo_seconds:.1f}s exceeds target {result.rpo_target_seconds:.1f}s"
        )
    if result.cleanup_left:
        reasons.append(f"cleanup incomplete: {', '.join(result.cleanup_left[:5])}")
    return reasons


# --- history, report ------------------------------------------------------------------


def history_key(prefix: str, result: DrillResult) -> str:
    """Where a drill record is stored (time-sortable)."""
    stamp = result.started_at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return (
        f"{backup_root(prefix, result.cluster)}{DRILLS_DIR}/{stamp}-{result.drill_id or 'x'}.json"
    )


def record_drill(store: S3Store, prefix: str, result: DrillResult) -> str:
    """Append ``result`` to the drill history in S3; returns the key."""
    key = history_key(prefix, result)
    store.put(key, result.model_dump_json().encode())
    return key


def drill_history(
    store: S3Store, prefix: str, cluster: str, limit: int = 10, workers: int = DEFAULT_WORKERS
) -> list[DrillResult]:
    """The ``limit`` most recent drill records, oldest first."""
    keys = sorted(store.list_keys(f"{backup_root(prefix, cluster)}{DRILLS_DIR}/"))[-limit:]
    blobs = parallel_map(store.get, keys, workers)
    return [DrillResult.model_validate_json(b) for b in blobs if b is not None]


def trend_rows(history: list[DrillResult]) -> list[JSON]:
    """Table rows for the drill trend artifact (pure)."""
    return [
        {
            "started": r.started_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M"),
            "backup": r.backup_id,
            "passed": r.passed,
            "objects": r.objects,
            "parity": round(r.parity, 4),
            "rto_s": round(r.rto_seconds, 1),
            "rpo_s": round(r.rpo_seconds, 1),
        }
        for r in history
    ]


def render_report(result: DrillResult) -> str:
    """Markdown report of one drill (pure; Secret values never appear in results)."""
    verdict = "PASSED" if result.passed else "FAILED"

    def target(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    lines = [
        f"# Restore drill {verdict}",
        "",
        f"Backup `{result.backup_id}` of cluster `{result.cluster}`, drill `{result.drill_id}`.",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        f"| objects in backup | {result.objects} | |",
        f"| restored | {result.restored} | |",
        f"| parity | {result.parity:.4f} | 1.0 |",
        f"| RTO (s) | {result.rto_seconds:.1f} | {target(result.rto_target_seconds)} |",
        f"| RPO (s) | {result.rpo_seconds:.1f} | {target(result.rpo_target_seconds)} |",
        "",
    ]
    if result.namespaces:
        lines += [
            "Namespaces: " + ", ".join(f"`{k}` -> `{v}`" for k, v in result.namespaces.items()),
            "",
        ]
    if result.failures:
        lines += ["## Failures", "", *(f"- {f}" for f in result.failures), ""]
    if result.mismatches:
        lines += ["## Mismatches", "", *(f"- `{m}`" for m in result.mismatches[:50]), ""]
    if result.unavailable:
        lines += ["## Not available", "", *(f"- {u}" for u in result.unavailable), ""]
    cleanup = "complete" if not result.cleanup_left else f"left {result.cleanup_left}"
    lines += [f"Cleanup: {cleanup}."]
    return redact("\n".join(lines))


# --- tasks ----------------------------------------------------------------------------


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
    kube = KubeApi(cluster.get_api_client())
    store = S3Store(storage.get_s3_client(), storage.bucket)
    return run_drill(kube, store, config, prefix=storage.prefix)


@task(
    name="publish_drill",
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=retry_condition,
    cache_policy=NO_CACHE,
)
def publish_drill(result: DrillResult, storage: BackupStorage) -> None:
    """Record the drill in S3, publish report + trend artifacts, emit the drill event."""
    store = S3Store(storage.get_s3_client(), storage.bucket)
    record_drill(store, storage.prefix, result)
    history = drill_history(store, storage.prefix, result.cluster)
    create_markdown_artifact(
        key="restore-drill-report",
        markdown=render_report(result),
        description=f"Restore drill of backup {result.backup_id}",
    )
    create_table_artifact(
        key="restore-drill-trend",
        table=trend_rows(history),
        description="Recent restore drills: parity, RTO and RPO over time.",
    )
    emit_event(
        event="shipyard.drill.passed" if result.passed else "shipyard.drill.failed",
        resource={
            "prefect.resource.id": f"shipyard.cluster.{result.cluster}",
            "prefect.resource.name": result.cluster,
        },
        related=[
            {
                "prefect.resource.id": f"shipyard.backup.{result.backup_id}",
                "prefect.resource.role": "backup",
            }
        ],
        payload={
            "backup_id": result.backup_id,
            "parity": result.parity,
            "rto_seconds": result.rto_seconds,
            "rpo_seconds": result.rpo_seconds,
            "failures": result.failures[:10],
        },
    )
