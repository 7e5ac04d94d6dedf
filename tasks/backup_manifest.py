"""Backup layout, manifest, checksums, retention and backup selection: the format that
the backup steps write and the restore drills read.

A backup is a set of S3 objects under ``<prefix>/<cluster>/<backup-id>/``: one JSON
object per Kubernetes resource under ``objects/`` and a ``manifest.json`` written last
(a backup without a manifest is incomplete and ignored). The manifest lists the sha256
of every object, so a restore can prove it reads exactly what was written.

Backup ids start with their UTC creation time (``20260102T030405Z-1a2b3c``), so
lexical order is age order and "latest" needs no extra reads.

Everything here is pure except :func:`complete_backups` and :func:`read_manifest`, which
read that layout through an :class:`~shipyard.core.s3.S3Store`.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field

from shipyard.core.errors import ConfigError, PermanentError
from shipyard.core.manifests import group_of
from shipyard.core.parallel import DEFAULT_WORKERS, parallel_map
from shipyard.core.s3 import S3Store

__all__ = [
    "MANIFEST_NAME",
    "BackupEntry",
    "BackupManifest",
    "ChecksumProblem",
    "IntegrityError",
    "backup_key",
    "backup_root",
    "build_manifest",
    "choose_backup",
    "complete_backups",
    "encode_object",
    "expired_backups",
    "new_backup_id",
    "object_path",
    "parse_backup_time",
    "read_manifest",
    "sha256_hex",
    "verify_contents",
]

MANIFEST_NAME = "manifest.json"
OBJECTS_DIR = "objects"
DRILLS_DIR = "_drills"
FORMAT_VERSION = 1
_ID_TIME = "%Y%m%dT%H%M%SZ"


class IntegrityError(PermanentError):
    """A backup object is missing or its content does not match the manifest."""


class BackupEntry(BaseModel):
    """One backed-up object: where it is and what it must hash to."""

    path: str = Field(description="Key relative to the backup root, under objects/.")
    sha256: str = Field(description="Hex sha256 of the object's bytes.")
    size: int = Field(description="Bytes.")
    api_version: str = Field(description="apiVersion of the object.")
    kind: str = Field(description="Kind of the object.")
    namespace: str | None = Field(None, description="Namespace; None for cluster-scoped.")
    name: str = Field(description="metadata.name.")
    secret: bool = Field(False, description="A Secret: stored encrypted, never shown.")


class BackupManifest(BaseModel):
    """What a backup holds: the index a restore verifies against."""

    format_version: int = Field(FORMAT_VERSION, description="Manifest schema version.")
    backup_id: str = Field(description="Id, prefixed by its UTC creation time.")
    cluster: str = Field(description="Cluster name the backup was taken from.")
    created_at: datetime = Field(description="When the export started (UTC): the RPO point.")
    cluster_version: str = Field("", description="gitVersion reported by /version.")
    gitops_revision: str | None = Field(None, description="GitOps commit deployed at backup time.")
    namespaces: list[str] = Field(default_factory=list, description="Namespaces exported.")
    objects: list[BackupEntry] = Field(default_factory=list, description="Every object.")
    counts: dict[str, int] = Field(default_factory=dict, description="Objects per kind.")
    skipped: dict[str, int] = Field(
        default_factory=dict, description="Objects left out per kind (derived/controller-owned)."
    )
    total_bytes: int = Field(0, description="Sum of object sizes.")

    def entry(self, path: str) -> BackupEntry | None:
        """The entry at ``path``, if listed."""
        for e in self.objects:
            if e.path == path:
                return e
        return None


@dataclass(frozen=True)
class ChecksumProblem:
    """A backup object that failed verification."""

    path: str
    problem: str  # "missing" | "checksum mismatch" | "size mismatch"

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


def new_backup_id(now: datetime, rng: random.Random | None = None) -> str:
    """A fresh id: UTC time plus 6 random hex digits (unique across concurrent runs)."""
    suffix = (rng or random.SystemRandom()).getrandbits(24)
    return f"{now.astimezone(UTC).strftime(_ID_TIME)}-{suffix:06x}"


def parse_backup_time(backup_id: str) -> datetime | None:
    """The creation time encoded in ``backup_id`` (None when it is not one of ours)."""
    try:
        return datetime.strptime(backup_id.split("-", 1)[0], _ID_TIME).replace(tzinfo=UTC)
    except ValueError:
        return None


def backup_root(prefix: str, cluster: str, backup_id: str | None = None) -> str:
    """``<prefix>/<cluster>/`` or ``<prefix>/<cluster>/<backup-id>/`` (no leading slash)."""
    parts = [p.strip("/") for p in (prefix, cluster, backup_id or "") if p and p.strip("/")]
    return "/".join(parts) + "/"


def backup_key(root: str, path: str) -> str:
    """Full S3 key of a path (an object's, or the manifest's) inside a backup root."""
    return f"{root}{path}"


def object_path(obj: Mapping[str, Any]) -> str:
    """Stable relative key of an object in a backup.

    ``<namespace or _cluster>/<group or core>/<kind>/<name>.json``; names are DNS
    subdomains, so they are safe as key segments.
    """
    meta = obj.get("metadata") or {}
    group = group_of(str(obj.get("apiVersion", ""))) or "core"
    scope = meta.get("namespace") or "_cluster"
    return f"{scope}/{group}/{obj.get('kind')}/{meta.get('name')}.json"


def encode_object(obj: Mapping[str, Any]) -> bytes:
    """Canonical JSON bytes (sorted keys, no spaces): equal objects hash equally."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_hex(data: bytes) -> str:
    """Hex sha256 (manifest form)."""
    return hashlib.sha256(data).hexdigest()


def entry_for(obj: Mapping[str, Any], data: bytes) -> BackupEntry:
    """The manifest entry of a normalized object and its encoded bytes."""
    meta = obj.get("metadata") or {}
    return BackupEntry(
        path=f"{OBJECTS_DIR}/{object_path(obj)}",
        sha256=sha256_hex(data),
        size=len(data),
        api_version=str(obj.get("apiVersion", "")),
        kind=str(obj.get("kind", "")),
        namespace=meta.get("namespace"),
        name=str(meta.get("name", "")),
        secret=obj.get("kind") == "Secret",
    )


def build_manifest(
    *,
    backup_id: str,
    cluster: str,
    created_at: datetime,
    entries: Sequence[BackupEntry],
    namespaces: Sequence[str],
    cluster_version: str = "",
    gitops_revision: str | None = None,
    skipped: Mapping[str, int] | None = None,
) -> BackupManifest:
    """Assemble the manifest; entries are sorted by path so manifests diff cleanly."""
    ordered = sorted(entries, key=lambda e: e.path)
    paths = [e.path for e in ordered]
    if len(set(paths)) != len(paths):
        dupes = sorted({p for p in paths if paths.count(p) > 1})
        raise PermanentError(f"duplicate objects in backup: {', '.join(dupes[:5])}")
    return BackupManifest(
        backup_id=backup_id,
        cluster=cluster,
        created_at=created_at,
        cluster_version=cluster_version,
        gitops_revision=gitops_revision,
        namespaces=sorted(namespaces),
        objects=ordered,
        counts=dict(sorted(Counter(e.kind for e in ordered).items())),
        skipped=dict(sorted((skipped or {}).items())),
        total_bytes=sum(e.size for e in ordered),
    )


def verify_contents(
    manifest: BackupManifest, contents: Mapping[str, bytes | None]
) -> list[ChecksumProblem]:
    """Check fetched bytes (path -> bytes, None when absent) against the manifest."""
    problems: list[ChecksumProblem] = []
    for entry in manifest.objects:
        data = contents.get(entry.path)
        if data is None:
            problems.append(ChecksumProblem(entry.path, "missing"))
        elif len(data) != entry.size:
            problems.append(ChecksumProblem(entry.path, "size mismatch"))
        elif sha256_hex(data) != entry.sha256:
            problems.append(ChecksumProblem(entry.path, "checksum mismatch"))
    return problems


def integrity_error(backup_id: str, problems: Sequence[ChecksumProblem]) -> IntegrityError:
    """One error naming the bad objects (the first few, and how many in all)."""
    shown = "; ".join(str(p) for p in problems[:5])
    more = f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""
    return IntegrityError(
        f"backup {backup_id} failed verification: {shown}{more}",
        hint="the backup is unusable; restore from another backup id",
    )


def expired_backups(
    backup_ids: Iterable[str],
    now: datetime,
    *,
    keep_last: int | None = None,
    max_age: timedelta | None = None,
) -> list[str]:
    """Ids to delete under the retention policy, oldest first.

    A backup is kept if it is among the ``keep_last`` newest or younger than
    ``max_age``; when both are given a backup goes only when both rules allow it, and
    the newest backup is never deleted (a retention slip must not leave nothing).
    """
    if keep_last is not None and keep_last < 1:
        raise ConfigError("keep_last must be at least 1")
    ids = sorted(i for i in backup_ids if parse_backup_time(i) is not None)
    if not ids or (keep_last is None and max_age is None):
        return []
    newest_first = list(reversed(ids))
    expired: list[str] = []
    for index, backup_id in enumerate(newest_first):
        if index == 0:
            continue
        created = parse_backup_time(backup_id)
        assert created is not None
        beyond_count = keep_last is not None and index >= keep_last
        too_old = max_age is not None and now - created > max_age
        if keep_last is not None and max_age is not None:
            drop = beyond_count and too_old
        else:
            drop = beyond_count or too_old
        if drop:
            expired.append(backup_id)
    return sorted(expired)


def choose_backup(
    backup_ids: Iterable[str],
    selector: str,
    *,
    now: datetime | None = None,
    window: timedelta | None = None,
    rng: random.Random | None = None,
) -> str:
    """Resolve ``selector`` ("latest", "random" within ``window``, or an id) to an id.

    An unknown id or an empty set of backups is a ConfigError naming what exists.
    """
    ids = sorted(i for i in backup_ids if parse_backup_time(i) is not None)
    if not ids:
        raise ConfigError("no complete backups found", hint="run 'shipyard backup' first")
    if selector == "latest":
        return ids[-1]
    if selector == "random":
        candidates = ids
        if window is not None:
            cutoff = (now or datetime.now(UTC)) - window
            candidates = [i for i in ids if (parse_backup_time(i) or cutoff) >= cutoff]
        if not candidates:
            raise ConfigError(f"no backup within the last {window}")
        return (rng or random.SystemRandom()).choice(candidates)
    if selector in ids:
        return selector
    raise ConfigError(
        f"unknown backup id {selector!r}",
        hint=f"latest is {ids[-1]}; {len(ids)} backups available",
    )


def complete_backups(
    store: S3Store, prefix: str, cluster: str, workers: int = DEFAULT_WORKERS
) -> list[str]:
    """Ids of backups of ``cluster`` that have a manifest, oldest first."""
    root = backup_root(prefix, cluster)
    ids = [i for i in store.list_prefixes(root) if parse_backup_time(i) is not None]
    present = parallel_map(
        lambda i: store.exists(backup_key(backup_root(prefix, cluster, i), MANIFEST_NAME)),
        ids,
        workers,
    )
    return sorted(i for i, ok in zip(ids, present, strict=True) if ok)


def read_manifest(store: S3Store, prefix: str, cluster: str, backup_id: str) -> BackupManifest:
    """The manifest of ``backup_id``; a missing one is a ConfigError (unknown id)."""
    key = backup_key(backup_root(prefix, cluster, backup_id), MANIFEST_NAME)
    data = store.get(key)
    if data is None:
        raise ConfigError(f"no backup {backup_id!r} in s3://{store.bucket}/{key}")
    try:
        return BackupManifest.model_validate_json(data)
    except ValueError as exc:
        raise PermanentError(f"manifest {key} is corrupt: {exc}") from None
