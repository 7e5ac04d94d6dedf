"""Apply the backup retention policy: delete what ``keep_last`` / ``max_age_days`` expire.

The policy itself (:func:`~tasks.backup_manifest.expired_backups`) is pure; this step
lists the complete backups of a cluster and deletes the expired ones, manifest first,
so a half-deleted backup is never mistaken for a complete one. The ``apply_retention``
task is in :mod:`tasks.steps.dr`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, Field

from shipyard.core.parallel import DEFAULT_WORKERS
from shipyard.core.s3 import S3Store
from tasks.backup_export import BackupConfig
from tasks.backup_manifest import (
    MANIFEST_NAME,
    backup_key,
    backup_root,
    complete_backups,
    expired_backups,
)

__all__ = ["RetentionResult", "apply_backup_retention", "run_retention"]


class RetentionResult(BaseModel):
    """Backups deleted by the retention policy."""

    deleted: list[str] = Field(default_factory=list, description="Backup ids removed.")
    kept: int = Field(0, description="Complete backups left.")


def run_retention(
    store: S3Store,
    *,
    prefix: str,
    cluster: str,
    keep_last: int | None,
    max_age: timedelta | None,
    now: datetime,
    workers: int = DEFAULT_WORKERS,
) -> RetentionResult:
    """Delete backups the policy expires (all their objects, manifest first)."""
    ids = complete_backups(store, prefix, cluster, workers)
    doomed = expired_backups(ids, now, keep_last=keep_last, max_age=max_age)
    for backup_id in doomed:
        root = backup_root(prefix, cluster, backup_id)
        store.delete_keys([backup_key(root, MANIFEST_NAME)])  # never half-visible as complete
        store.delete_keys(store.list_keys(root))
    return RetentionResult(deleted=doomed, kept=len(ids) - len(doomed))


def apply_backup_retention(
    store: S3Store, config: BackupConfig, *, prefix: str, now: datetime | None = None
) -> RetentionResult:
    """Delete backups of ``config.cluster`` beyond keep_last / older than max_age_days
    (nothing at all when the config sets neither)."""
    if config.keep_last is None and config.max_age_days is None:
        return RetentionResult()
    return run_retention(
        store,
        prefix=prefix,
        cluster=config.cluster,
        keep_last=config.keep_last,
        max_age=timedelta(days=config.max_age_days) if config.max_age_days else None,
        now=now or datetime.now(UTC),
        workers=config.workers,
    )
