"""The Velero driver shared by the Velero backup step and the Velero restore drill.

For clusters that already run Velero: Shipyard creates velero.io/v1 Backup and Restore
objects and waits for their phases instead of exporting objects itself. The object
builders and :func:`outcome_of` are pure; :func:`run_velero` creates and waits.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shipyard.core.errors import ConfigError, PermanentError, TransientError
from shipyard.core.kube import KubeClient

__all__ = [
    "VELERO_API",
    "VeleroConfig",
    "VeleroOutcome",
    "outcome_of",
    "run_velero",
    "velero_backup_object",
    "velero_restore_object",
]

JSON = dict[str, Any]
VELERO_API = "/apis/velero.io/v1"
VELERO_DONE = frozenset({"Completed", "PartiallyFailed", "Failed", "FailedValidation"})


class VeleroConfig(BaseModel):
    """Where Velero runs and how long to wait for it."""

    model_config = ConfigDict(extra="forbid")

    namespace: str = Field("velero", description="Namespace of the Velero server.")
    storage_location: str | None = Field(None, description="BackupStorageLocation name.")
    ttl: str = Field("720h0m0s", description="Backup TTL (Velero duration).")
    timeout_seconds: float = Field(1800.0, gt=0, description="How long to wait for a phase.")
    poll_seconds: float = Field(2.0, gt=0, description="Polling interval.")


class VeleroOutcome(BaseModel):
    """A Velero Backup or Restore that reached a final phase."""

    name: str = Field(description="Object name.")
    phase: str = Field(description="Final phase.")
    ok: bool = Field(description="Phase is Completed.")
    errors: int = Field(0, description="status.errors.")
    warnings: int = Field(0, description="status.warnings.")
    seconds: float = Field(0.0, description="Time until the final phase.")


def _velero_object(kind: str, name: str, config: VeleroConfig, spec: JSON) -> JSON:
    return {
        "apiVersion": "velero.io/v1",
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": config.namespace,
            "labels": {"app.kubernetes.io/managed-by": "shipyard"},
        },
        "spec": spec,
    }


def velero_backup_object(name: str, namespaces: Sequence[str], config: VeleroConfig) -> JSON:
    """The velero.io/v1 Backup requesting ``namespaces`` (pure)."""
    spec: JSON = {"includedNamespaces": list(namespaces), "ttl": config.ttl}
    if config.storage_location:
        spec["storageLocation"] = config.storage_location
    return _velero_object("Backup", name, config, spec)


def velero_restore_object(
    name: str,
    backup_name: str,
    mapping: Mapping[str, str],
    config: VeleroConfig,
    *,
    existing: str = "none",
) -> JSON:
    """The velero.io/v1 Restore of ``backup_name`` into mapped namespaces (pure)."""
    spec: JSON = {
        "backupName": backup_name,
        "includedNamespaces": sorted(mapping),
        "namespaceMapping": dict(mapping),
        "existingResourcePolicy": existing,
    }
    return _velero_object("Restore", name, config, spec)


def outcome_of(obj: JSON, seconds: float) -> VeleroOutcome | None:
    """The final outcome of a Backup/Restore object, or None while it is still running."""
    status = obj.get("status") or {}
    phase = str(status.get("phase") or "New")
    if phase not in VELERO_DONE:
        return None
    return VeleroOutcome(
        name=str((obj.get("metadata") or {}).get("name")),
        phase=phase,
        ok=phase == "Completed",
        errors=int(status.get("errors") or 0),
        warnings=int(status.get("warnings") or 0),
        seconds=seconds,
    )


def run_velero(
    kube: KubeClient,
    obj: JSON,
    config: VeleroConfig,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> VeleroOutcome:
    """Create a Velero Backup/Restore and wait for its final phase.

    "Still running" is a state inside the deadline, not a failure; running past the
    deadline is a TransientError (the next attempt finds the same object).
    """
    plural = {"Backup": "backups", "Restore": "restores"}[str(obj["kind"])]
    collection = f"{VELERO_API}/namespaces/{config.namespace}/{plural}"
    if kube.get(VELERO_API) is None:
        raise ConfigError("Velero is not installed (no velero.io/v1 API on the cluster)")
    url = f"{collection}/{obj['metadata']['name']}"
    if kube.get(url) is None:
        kube.request("POST", collection, obj)
    start = clock()
    while True:
        current = kube.get(url)
        if current is None:
            raise PermanentError(f"Velero {obj['kind']} {url} disappeared")
        done = outcome_of(current, clock() - start)
        if done is not None:
            return done
        if clock() - start > config.timeout_seconds:
            raise TransientError(
                f"Velero {obj['kind']} {obj['metadata']['name']} still "
                f"{(current.get('status') or {}).get('phase', 'New')} after "
                f"{config.timeout_seconds:.0f}s"
            )
        time.sleep(config.poll_seconds)
