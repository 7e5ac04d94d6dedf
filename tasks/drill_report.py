"""What a restore drill is asked (its config) and what it reports: its result, the
verdict, the history kept in S3, and the report, trend and event published for it.

The three drills (:mod:`tasks.restore_backup_drill`, :mod:`tasks.restore_git_drill`,
:mod:`tasks.restore_velero_drill`) take the config and return the results defined here.
Drill history is kept as JSON objects next to the backups (``<prefix>/<cluster>/_drills/``),
so the trend survives Prefect database resets and is readable with any S3 tool.
Everything here is pure except :func:`record_drill` and :func:`drill_history`; the
``publish_drill`` task in :mod:`tasks.steps.dr` records a drill and returns its
:class:`DrillPublication`, which the flow sends to Prefect
(:func:`flows.common.publish_drill_report`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shipyard.core.parallel import DEFAULT_WORKERS, parallel_map
from shipyard.core.redact import redact
from shipyard.core.s3 import S3Store
from tasks.backup_manifest import DRILLS_DIR, backup_root
from tasks.restore_objects import ExistingPolicy

__all__ = [
    "DrillConfig",
    "DrillPublication",
    "DrillResult",
    "GitDrillResult",
    "drill_history",
    "drill_publication",
    "evaluate",
    "record_drill",
    "render_git_report",
    "render_report",
    "trend_rows",
]

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
    timings: dict[str, float] = Field(
        default_factory=dict, description="Seconds per phase (select, verify, restore, ...)."
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


class GitDrillResult(BaseModel):
    """Outcome of rebuilding an environment from git next to the live one."""

    passed: bool = Field(description="The git-built copy equals the live environment.")
    live_namespace: str = Field(description="The live environment's namespace.")
    drill_namespace: str = Field(description="Where the git copy was built (deleted after).")
    objects: int = Field(0, description="Objects rendered from git.")
    restored: int = Field(0, description="Objects created in the drill namespace.")
    parity: float = Field(0.0, description="Share of live+git objects equal on both sides.")
    only_in_git: list[str] = Field(default_factory=list, description="Rendered, not live.")
    only_in_live: list[str] = Field(default_factory=list, description="Live, not in git.")
    mismatches: list[str] = Field(default_factory=list, description="Field differences.")
    failures: list[str] = Field(default_factory=list, description="Why the drill failed.")
    rto_seconds: float = Field(0.0, description="Render + apply + verify time.")
    cleanup_left: list[str] = Field(default_factory=list, description="Not cleaned up.")


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


# --- history --------------------------------------------------------------------------


def history_key(prefix: str, result: DrillResult) -> str:
    """Where a drill record is stored (time-sortable)."""
    stamp = result.started_at.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")
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


# --- report ---------------------------------------------------------------------------


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
    if result.timings:
        lines += ["", "Phases (s): " + ", ".join(f"{k} {v:.1f}" for k, v in result.timings.items())]
    return redact("\n".join(lines))


def render_git_report(result: GitDrillResult) -> str:
    """Markdown report of a restore-from-git drill (pure)."""
    verdict = "PASSED" if result.passed else "FAILED"
    lines = [
        f"# Restore from git {verdict}",
        "",
        f"Live `{result.live_namespace}` vs rebuilt `{result.drill_namespace}`: "
        f"{result.objects} objects rendered, {result.restored} created, parity "
        f"{result.parity:.4f}, {result.rto_seconds:.1f}s.",
        "",
    ]
    for title, items in (
        ("Failures", result.failures),
        ("Only in git", result.only_in_git),
        ("Only live (not in git)", result.only_in_live),
        ("Mismatches", [f"`{m}`" for m in result.mismatches]),
    ):
        if items:
            lines += [f"## {title}", "", *(f"- {i}" for i in items), ""]
    return redact("\n".join(lines))


# --- publication ----------------------------------------------------------------------


def drill_event(passed: bool) -> str:
    """The Prefect event a drill emits: ``shipyard.drill.passed`` or ``...failed``."""
    return "shipyard.drill.passed" if passed else "shipyard.drill.failed"


def cluster_resource(cluster: str) -> dict[str, str]:
    """The Prefect event resource naming a cluster."""
    return {"prefect.resource.id": f"shipyard.cluster.{cluster}", "prefect.resource.name": cluster}


@dataclass(frozen=True)
class DrillPublication:
    """What a backup drill publishes: report + trend artifacts and one event (pure data;
    the Prefect edge sends it)."""

    report: str
    report_description: str
    trend: list[JSON]
    event: str
    resource: dict[str, str]
    related: list[dict[str, str]] = field(default_factory=list)
    payload: JSON = field(default_factory=dict)

    REPORT_KEY = "restore-drill-report"
    TREND_KEY = "restore-drill-trend"
    TREND_DESCRIPTION = "Recent restore drills: parity, RTO and RPO over time."


def drill_publication(result: DrillResult, history: list[DrillResult]) -> DrillPublication:
    """The report, trend and event of ``result`` given the recent ``history`` (pure)."""
    return DrillPublication(
        report=render_report(result),
        report_description=f"Restore drill of backup {result.backup_id}",
        trend=trend_rows(history),
        event=drill_event(result.passed),
        resource=cluster_resource(result.cluster),
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


def record_and_publish(store: S3Store, prefix: str, result: DrillResult) -> DrillPublication:
    """Append ``result`` to the history in S3 and build what to publish about it."""
    record_drill(store, prefix, result)
    return drill_publication(result, drill_history(store, prefix, result.cluster))
