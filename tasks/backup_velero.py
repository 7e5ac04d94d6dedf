"""Back up namespaces with Velero: create a velero.io Backup and wait for its final phase.

For clusters that already run Velero (driver ``velero`` of the backup flow); the driver
itself (object builders, create-and-wait) is :mod:`tasks.velero`. The
``backup_with_velero`` task is in :mod:`tasks.steps.dr`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from shipyard.core.errors import PermanentError
from shipyard.core.kube import KubeClient
from tasks.backup_manifest import new_backup_id
from tasks.velero import VeleroConfig, VeleroOutcome, run_velero, velero_backup_object

__all__ = ["run_velero_backup"]


def run_velero_backup(
    kube: KubeClient,
    namespaces: Sequence[str],
    velero: VeleroConfig,
    *,
    now: datetime | None = None,
) -> VeleroOutcome:
    """A Completed Velero backup of ``namespaces``; any other final phase is permanent."""
    name = f"shipyard-{new_backup_id(now or datetime.now(UTC)).lower()}"
    outcome = run_velero(kube, velero_backup_object(name, namespaces, velero), velero)
    if not outcome.ok:
        raise PermanentError(
            f"Velero backup {name} ended {outcome.phase} ({outcome.errors} errors)",
            hint=f"velero backup logs {name}",
        )
    return outcome
