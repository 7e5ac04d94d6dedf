"""Back up selected namespaces of a cluster to S3: one object per resource + a manifest.

Three layers, as every step: :class:`BackupConfig` (validated input; retention and the
Velero driver read it too), the export and upload core :func:`run_backup` (which takes
its two ports, a :class:`~shipyard.core.kube.KubeClient` and an
:class:`~shipyard.core.s3.S3Store`, ready-made so tests drive it against the simulator
and a real S3 server), and the thin ``backup_cluster`` task in :mod:`tasks.steps.dr`.

The ports translate library errors once: S3 and Kubernetes 5xx, throttling and timeouts
become :class:`~shipyard.core.errors.TransientError` (retried within the call, then by
the task's ``retry_condition``); a missing bucket or an unknown namespace is a
:class:`~shipyard.core.errors.ConfigError`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shipyard.core.catalog import DNS_LABEL
from shipyard.core.export import export_objects
from shipyard.core.kube import KubeClient
from shipyard.core.parallel import DEFAULT_WORKERS, parallel_map
from shipyard.core.s3 import S3Store
from tasks.backup_manifest import (
    MANIFEST_NAME,
    BackupEntry,
    backup_key,
    backup_root,
    build_manifest,
    encode_object,
    entry_for,
    new_backup_id,
)

__all__ = ["BackupConfig", "BackupResult", "render_backup_report", "run_backup"]

log = logging.getLogger(__name__)
JSON = dict[str, Any]


class BackupConfig(BaseModel):
    """What to back up and how long to keep it."""

    model_config = ConfigDict(extra="forbid")

    namespaces: list[str] = Field(description="Namespaces to export (at least one).")
    cluster: str = Field("default", description="Cluster name: the key segment after the prefix.")
    gitops_revision: str | None = Field(
        None, description="GitOps commit deployed when the backup was taken (recorded only)."
    )
    keep_last: int | None = Field(
        None, ge=1, description="Retention: keep at least the N newest backups."
    )
    max_age_days: float | None = Field(
        None, gt=0, description="Retention: delete backups older than this (and beyond keep_last)."
    )
    sse: Literal["AES256", "aws:kms"] = Field(
        "AES256", description="Server-side encryption requested for every object."
    )
    kms_key_id: str | None = Field(None, description="KMS key id when sse is aws:kms.")
    include_crds: bool = Field(
        True, description="Also export the CRDs of custom resources found in the namespaces."
    )
    workers: int = Field(DEFAULT_WORKERS, ge=1, le=64, description="Parallel API/S3 calls.")

    @field_validator("namespaces")
    @classmethod
    def _valid_namespaces(cls, value: list[str]) -> list[str]:
        names = sorted({n.strip() for n in value if n.strip()})
        if not names:
            raise ValueError("give at least one namespace")
        bad = [n for n in names if not DNS_LABEL.match(n) or len(n) > 63]
        if bad:
            raise ValueError(f"not valid namespace names: {', '.join(bad)}")
        return names

    @field_validator("cluster")
    @classmethod
    def _valid_cluster(cls, value: str) -> str:
        if not value or "/" in value:
            raise ValueError("cluster name must be non-empty and contain no '/'")
        return value


class BackupResult(BaseModel):
    """What a backup run wrote."""

    backup_id: str = Field(description="The new backup's id.")
    cluster: str = Field(description="Cluster name.")
    objects: int = Field(description="Objects written.")
    bytes: int = Field(description="Bytes written (objects only).")
    manifest_key: str = Field(description="S3 key of the manifest.")
    counts: dict[str, int] = Field(default_factory=dict, description="Objects per kind.")
    seconds: float = Field(0.0, description="Wall time of export + upload.")


def run_backup(
    kube: KubeClient,
    store: S3Store,
    config: BackupConfig,
    *,
    prefix: str,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> BackupResult:
    """Export, upload every object (SSE, checksums verified), then write the manifest.

    The manifest goes last, so an interrupted backup is never mistaken for a
    complete one; its objects are removed by the next retention run.
    """
    started = now()
    store.check_bucket()
    backup_id = new_backup_id(started)
    root = backup_root(prefix, config.cluster, backup_id)
    version = kube.version()
    objects, skipped = export_objects(
        kube, config.namespaces, include_crds=config.include_crds, workers=config.workers
    )

    def upload(obj: JSON) -> BackupEntry:
        data = encode_object(obj)
        entry = entry_for(obj, data)
        store.put(backup_key(root, entry.path), data, sse=config.sse, kms_key_id=config.kms_key_id)
        return entry

    entries = parallel_map(upload, objects, config.workers)
    manifest = build_manifest(
        backup_id=backup_id,
        cluster=config.cluster,
        created_at=started,
        entries=entries,
        namespaces=config.namespaces,
        cluster_version=version,
        gitops_revision=config.gitops_revision,
        skipped=skipped,
    )
    manifest_key = backup_key(root, MANIFEST_NAME)
    store.put(
        manifest_key,
        manifest.model_dump_json(indent=1).encode(),
        sse=config.sse,
        kms_key_id=config.kms_key_id,
    )
    log.info(
        "backup %s: %d objects, %d bytes (%s)",
        backup_id,
        len(entries),
        manifest.total_bytes,
        ", ".join(f"{k}={v}" for k, v in manifest.counts.items()),
    )
    return BackupResult(
        backup_id=backup_id,
        cluster=config.cluster,
        objects=len(entries),
        bytes=manifest.total_bytes,
        manifest_key=manifest_key,
        counts=manifest.counts,
        seconds=(now() - started).total_seconds(),
    )


def render_backup_report(
    result: BackupResult, config: BackupConfig, bucket: str, *, deleted: int, kept: int
) -> str:
    """Markdown report of a backup and the retention run after it (pure)."""
    counts = ", ".join(f"{k} {v}" for k, v in result.counts.items())
    return (
        f"# Backup `{result.backup_id}`\n\n{result.objects} objects, {result.bytes} bytes "
        f"from {', '.join(config.namespaces)} ({counts}).\n\n"
        f"Manifest: `s3://{bucket}/{result.manifest_key}`.\n\n"
        f"Retention deleted {deleted} backups; {kept} kept."
    )
