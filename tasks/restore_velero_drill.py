"""Restore drill of a Velero backup: a velero.io Restore with namespaceMapping into drill
namespaces, then parity of each drill namespace against its live source, readiness,
RTO/RPO and cleanup.

Velero's backup contents are opaque to Shipyard, so parity is measured against the live
namespaces (changes made since the backup show up as mismatches). The driver itself is
:mod:`tasks.velero`; the task is in :mod:`tasks.steps.dr`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from shipyard.core.errors import ConfigError, PermanentError, TransientError
from shipyard.core.export import export_objects
from shipyard.core.kube import KubeClient
from shipyard.core.parallel import DEFAULT_WORKERS
from shipyard.core.redact import redact
from tasks.drill_report import DrillConfig, DrillResult, evaluate
from tasks.restore_objects import (
    PlannedObject,
    cleanup_drill,
    compare_environments,
    compared_objects,
    drill_namespace,
    map_namespace,
    new_drill_id,
    wait_workloads,
)
from tasks.velero import VELERO_API, VeleroConfig, run_velero, velero_restore_object

__all__ = ["latest_velero_backup", "run_velero_drill", "velero_drill"]

JSON = dict[str, Any]


def latest_velero_backup(kube: KubeClient, config: VeleroConfig, name: str = "latest") -> JSON:
    """A Completed velero.io Backup by name, or the newest Completed one."""
    doc = kube.get(f"{VELERO_API}/namespaces/{config.namespace}/backups")
    if doc is None:
        raise ConfigError("Velero is not installed (no velero.io/v1 API on the cluster)")
    done = [
        b for b in doc.get("items") or [] if (b.get("status") or {}).get("phase") == "Completed"
    ]
    if name != "latest":
        found = [b for b in done if b["metadata"]["name"] == name]
        if not found:
            raise ConfigError(f"no Completed Velero backup {name!r} in {config.namespace}")
        return found[0]
    if not done:
        raise ConfigError("no Completed Velero backups", hint="create one with the backup flow")
    return max(done, key=_velero_time)


def _velero_time(backup: JSON) -> str:
    status = backup.get("status") or {}
    meta = backup.get("metadata") or {}
    return str(status.get("startTimestamp") or meta.get("creationTimestamp") or "")


def run_velero_drill(
    kube: KubeClient,
    config: VeleroConfig,
    *,
    backup: str = "latest",
    drill_id: str | None = None,
    rto_target_seconds: float | None = None,
    ready_timeout: float = 120.0,
    workers: int = DEFAULT_WORKERS,
    wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    clock: Callable[[], float] = time.monotonic,
) -> DrillResult:
    """Drill a Velero backup: a Restore with namespaceMapping into drill namespaces, then
    parity of each drill namespace against its live source, readiness, RTO/RPO, cleanup.

    Velero's backup contents are opaque to Shipyard, so parity is measured against the
    live namespaces (changes made since the backup show up as mismatches).
    """
    t0 = clock()
    started = wall()
    chosen = latest_velero_backup(kube, config, backup)
    name = str(chosen["metadata"]["name"])
    namespaces = [str(n) for n in (chosen.get("spec") or {}).get("includedNamespaces") or []]
    if not namespaces or "*" in namespaces:
        raise ConfigError(f"Velero backup {name} does not list its namespaces explicitly")
    taken = _velero_time(chosen)
    rpo = 0.0
    if taken:
        rpo = max(
            0.0, (started - datetime.fromisoformat(taken.replace("Z", "+00:00"))).total_seconds()
        )
    did = drill_id or new_drill_id()
    mapping = {ns: drill_namespace(ns, did) for ns in namespaces}
    result = DrillResult(
        passed=False,
        backup_id=name,
        drill_id=did,
        started_at=started,
        rpo_seconds=rpo,
        rto_target_seconds=rto_target_seconds,
        namespaces=mapping,
    )
    restore = velero_restore_object(f"shipyard-drill-{did}", name, mapping, config)
    restore_url = (
        f"{VELERO_API}/namespaces/{config.namespace}/restores/{restore['metadata']['name']}"
    )
    try:
        outcome = run_velero(kube, restore, config)
        if not outcome.ok:
            result.failures.append(
                f"Velero restore ended {outcome.phase} ({outcome.errors} errors)"
            )
        matched = total = 0
        for source, target in mapping.items():
            live, _ = export_objects(kube, [source], include_crds=False, workers=workers)
            built, _ = export_objects(kube, [target], include_crds=False, workers=workers)
            built = [map_namespace(o, {target: source}) for o in built]
            parity, only_live, only_drill, diffs = compare_environments(live, built)
            pair_total = compared_objects(live + built)
            matched += round(parity * pair_total)
            total += pair_total
            result.mismatches += [f"{source}: {d}" for d in diffs]
            result.mismatches += [f"{source}: {o} missing after restore" for o in only_live]
            result.mismatches += [f"{source}: {o} not in the live namespace" for o in only_drill]
            result.objects += len([o for o in live if o.get("kind") != "Namespace"])
            result.restored += len([o for o in built if o.get("kind") != "Namespace"])
            plan = [
                PlannedObject(f"{target}/{i}", map_namespace(o, {source: target}), False)
                for i, o in enumerate(built)
            ]
            result.unavailable += wait_workloads(kube, plan, timeout=ready_timeout, workers=workers)
        result.parity = 1.0 if total == 0 else matched / total
        result.mismatches = result.mismatches[:50]
        result.rto_seconds = clock() - t0
    except (PermanentError, TransientError) as exc:
        result.rto_seconds = clock() - t0
        result.failures.append(redact(f"restore failed: {exc}"))
    finally:
        result.cleanup_left = cleanup_drill(kube, list(mapping.values()))
        kube.request("DELETE", restore_url)
    result.failures.extend(evaluate(result))
    result.passed = not result.failures
    return result


def velero_drill(kube: KubeClient, velero: VeleroConfig, config: DrillConfig) -> DrillResult:
    """:func:`run_velero_drill` with the settings of a drill config."""
    return run_velero_drill(
        kube,
        velero,
        backup=config.backup,
        drill_id=config.drill_id,
        rto_target_seconds=config.rto_target_seconds,
        ready_timeout=config.ready_timeout_seconds,
        workers=config.workers,
    )
