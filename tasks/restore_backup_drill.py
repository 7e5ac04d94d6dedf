"""Restore drill of a Shipyard backup: prove it can rebuild the namespaces it holds, and
how fast.

:func:`run_drill` picks a backup, verifies every object's sha256 *before* touching a
cluster (a tampered or missing object fails the drill naming it, and leaves nothing
behind), restores into ``<ns>-drill-<id>`` namespaces, checks parity and workload
availability, measures RTO (drill start to verified ready) and RPO (backup age), and
always deletes the drill namespaces, also when a step raised. The result, its history
and its report are :mod:`tasks.drill_report`; the task is in :mod:`tasks.steps.dr`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from shipyard.core.kube import KubeClient
from shipyard.core.manifests import register_secret_values
from shipyard.core.parallel import parallel_map
from shipyard.core.redact import redact
from shipyard.core.s3 import S3Store
from tasks.backup_manifest import (
    BackupManifest,
    IntegrityError,
    backup_key,
    backup_root,
    choose_backup,
    complete_backups,
    integrity_error,
    read_manifest,
    verify_contents,
)
from tasks.drill_report import DrillConfig, DrillResult, evaluate
from tasks.restore_objects import (
    RestoreOutcome,
    cleanup_drill,
    drill_namespace,
    measure_parity,
    new_drill_id,
    plan_restore,
    restore_plan,
    wait_workloads,
)

__all__ = ["DrillConfig", "run_drill"]

log = logging.getLogger(__name__)
JSON = dict[str, Any]


def _fetch_verified(
    store: S3Store, manifest: BackupManifest, root: str, workers: int
) -> dict[str, JSON]:
    """Download every object of the backup and check it against the manifest."""
    paths = [e.path for e in manifest.objects]
    blobs = parallel_map(lambda p: store.get(backup_key(root, p)), paths, workers)
    contents = dict(zip(paths, blobs, strict=True))
    problems = verify_contents(manifest, contents)
    if problems:
        raise integrity_error(manifest.backup_id, problems)
    out: dict[str, JSON] = {}
    for path, data in contents.items():
        assert data is not None
        out[path] = json.loads(data)
        register_secret_values(out[path])
    return out


def run_drill(
    kube: KubeClient,
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
    ids = complete_backups(store, prefix, config.cluster, config.workers)
    window = timedelta(days=config.window_days) if config.window_days else None
    backup_id = choose_backup(ids, config.backup, now=started, window=window)
    manifest = read_manifest(store, prefix, config.cluster, backup_id)
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
    mark = clock()

    def lap(phase: str) -> None:
        nonlocal mark
        now = clock()
        result.timings[phase] = round(now - mark, 3)
        mark = now

    lap("select")
    try:
        objects = _fetch_verified(store, manifest, root, config.workers)
        lap("verify")
    except IntegrityError as exc:
        result.failures.append(exc.message)
        result.mismatches = [exc.message]
        result.rto_seconds = clock() - t0
        return result

    drill_id = config.drill_id or new_drill_id()
    mapping = {ns: drill_namespace(ns, drill_id) for ns in manifest.namespaces}
    result.drill_id = drill_id
    result.namespaces = mapping
    plan = plan_restore(manifest, objects, mapping, drill_id)
    outcome = RestoreOutcome()
    try:
        restore_plan(kube, plan, policy=config.existing, workers=config.workers, outcome=outcome)
        result.restored = outcome.restored
        lap("restore")
        parity = measure_parity(kube, plan, workers=config.workers)
        result.parity = parity.parity
        result.mismatches = parity.mismatches
        lap("parity")
        if config.check_workloads:
            result.unavailable = wait_workloads(
                kube, plan, timeout=config.ready_timeout_seconds, workers=config.workers
            )
            lap("ready")
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
        lap("cleanup")
    result.failures.extend(evaluate(result))
    result.passed = not result.failures
    return result
