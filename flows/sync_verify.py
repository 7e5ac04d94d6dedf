"""Sync a GitOps commit, verify it, and roll back automatically when it is not healthy.

The second half of a delivery, after the manifest commit was pushed:

1. inside one Prefect transaction: :func:`record_manifest_commit` (whose ``on_rollback``
   hook reverts the commit with a new revert commit, never a force push), sync, verify
   every workload, then the smoke checks and metric gates;
2. any failure in there rolls the transaction back, so the hook puts git back to the
   previous version; the flow then syncs the revert and verifies the previous version is
   healthy again, as visible task runs ("rollback-sync", "rollback-verify");
3. the run ends Failed with the original reason and emits
   ``shipyard.delivery.rolled-back``; if the rollback itself fails the run fails with
   both reasons and emits ``shipyard.delivery.rollback-failed``.

The deliver flow can also open its own transaction around its write-back task and call
:func:`record_manifest_commit` + :func:`verify_delivery` itself.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from typing import Any, NoReturn

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE as NO_CACHE
from prefect.transactions import Transaction, get_transaction, transaction
from pydantic import BaseModel, ConfigDict, Field

from blocks.gitops import GitOpsRepository
from shipyard.core.catalog import Environment, MetricGate, SmokeCheck
from shipyard.core.errors import PermanentError, ShipyardError
from tasks.metric_gate import metric_gate
from tasks.revert_commit import RevertConfig, RevertResult, revert_commit
from tasks.smoke_check import smoke_check
from tasks.sync.config import SyncConfig, SyncResult
from tasks.sync_app import sync_app
from tasks.verify_rollout import VerifyConfig, VerifyResult, verify_rollout

__all__ = [
    "DeliveryOutcome",
    "RollbackFailedError",
    "RollbackLedger",
    "VerifyPlan",
    "close_ledger",
    "open_ledger",
    "record_manifest_commit",
    "sync_and_verify",
    "verify_delivery",
]

EVENT_ROLLED_BACK = "shipyard.delivery.rolled-back"
EVENT_ROLLBACK_FAILED = "shipyard.delivery.rollback-failed"
EVENT_VERIFIED = "shipyard.delivery.verified"


class VerifyPlan(BaseModel):
    """Everything that must hold after a sync: workloads, smoke checks, metric gates."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    workloads: list[VerifyConfig] = Field(default_factory=list, description="Rollouts to verify.")
    smoke: list[SmokeCheck] = Field(default_factory=list, description="HTTP smoke checks.")
    metrics: list[MetricGate] = Field(default_factory=list, description="Metric gates.")
    smoke_interval_seconds: float = Field(1.0, ge=0, description="Pause between smoke attempts.")

    @classmethod
    def for_environment(cls, env: Environment, digest: str | None = None) -> VerifyPlan:
        """The plan the catalog declares for ``env`` (``verify``), pinned to ``digest``."""
        return cls(
            workloads=[
                VerifyConfig(
                    namespace=env.namespace,
                    workload=w,
                    digest=digest,
                    timeout_seconds=env.verify.timeout_seconds,
                )
                for w in env.verify.workloads
            ],
            smoke=list(env.verify.smoke),
            metrics=list(env.verify.metrics),
        )

    def without_digest(self) -> VerifyPlan:
        """The plan for the previous version: same workloads, any digest, no gates."""
        return VerifyPlan(workloads=[w.model_copy(update={"digest": None}) for w in self.workloads])


class DeliveryOutcome(BaseModel):
    """What a successful sync-and-verify did."""

    commit: str = Field(description="The manifest commit now running.")
    sync: SyncResult = Field(description="The sync.")
    verified: list[VerifyResult] = Field(default_factory=list, description="Per workload.")


class RollbackFailedError(PermanentError):
    """The delivery failed and putting the previous version back failed too."""


@dataclass
class RollbackLedger:
    """What the rollback hook needs and what it did, shared by the flow and the hook.

    Prefect deep-copies transaction values and task parameters, so the hook finds the
    ledger by ``key`` in a process-wide registry (see :func:`open_ledger`) rather than
    receiving it.
    """

    repository: GitOpsRepository
    commit: str
    branch: str | None = None
    reason: str = ""
    revert: RevertResult | None = None
    error: str | None = None
    key: str = field(default_factory=lambda: uuid.uuid4().hex)


_LEDGERS: dict[str, RollbackLedger] = {}
_LEDGERS_LOCK = threading.Lock()


def open_ledger(
    repository: GitOpsRepository, commit: str, branch: str | None = None
) -> RollbackLedger:
    """Register a ledger for the manifest ``commit`` (pass its ``key`` to the task)."""
    ledger = RollbackLedger(repository=repository, commit=commit, branch=branch)
    with _LEDGERS_LOCK:
        _LEDGERS[ledger.key] = ledger
    return ledger


def close_ledger(ledger: RollbackLedger) -> None:
    """Forget a ledger once its transaction is over."""
    with _LEDGERS_LOCK:
        _LEDGERS.pop(ledger.key, None)


@task(name="record-manifest-commit", cache_policy=NO_CACHE)
def record_manifest_commit(ledger_key: str) -> str:
    """Enlist the pushed manifest commit (ledger from :func:`open_ledger`) in the current
    transaction.

    Does nothing by itself; its ``on_rollback`` hook reverts the commit when anything
    later in the same transaction fails.
    """
    with _LEDGERS_LOCK:
        ledger = _LEDGERS[ledger_key]
    txn = get_transaction()
    if txn is not None:
        txn.set("ledger_key", ledger_key)
    return ledger.commit


@record_manifest_commit.on_rollback
def _revert_on_rollback(txn: Transaction) -> None:
    """Rollback hook: push a revert commit; record the outcome in the ledger."""
    with _LEDGERS_LOCK:
        ledger = _LEDGERS[txn.get("ledger_key")]
    try:
        config = RevertConfig(
            commit=ledger.commit,
            branch=ledger.branch or ledger.repository.branch,
            reason=ledger.reason,
            author_name=ledger.repository.author_name,
            author_email=ledger.repository.author_email,
        )
        with ledger.repository.git_environment() as env:
            ledger.revert = revert_commit(ledger.repository.url, config, env=env)
    except Exception as exc:
        ledger.error = f"{type(exc).__name__}: {exc}"
        raise


def verify_delivery(cluster: Any, plan: VerifyPlan, *, prefix: str = "") -> list[VerifyResult]:
    """Verify every workload, then smoke checks, then metric gates (raises on the first
    failure, with its reason)."""
    results = []
    for workload in plan.workloads:
        runner = (
            verify_rollout.with_options(name=f"{prefix}verify-rollout")
            if prefix
            else verify_rollout
        )
        results.append(runner(cluster, workload))
    for check in plan.smoke:
        smoke_check(check, plan.smoke_interval_seconds)
    for gate in plan.metrics:
        metric_gate(gate)
    return results


def _emit(event: str, resource_id: str, payload: dict[str, Any]) -> None:
    from prefect.events import emit_event

    emit_event(
        event=event,
        resource={"prefect.resource.id": resource_id, "prefect.resource.name": resource_id},
        payload=payload,
    )


def _reason(exc: BaseException) -> str:
    text = exc.message if isinstance(exc, ShipyardError) else str(exc)
    return " ".join(text.split()) or type(exc).__name__


@flow(name="sync-and-verify", log_prints=False)
def sync_and_verify(
    cluster: Any,
    repository: GitOpsRepository,
    commit: str,
    sync: SyncConfig,
    plan: VerifyPlan,
    app: str = "",
    environment: str = "",
) -> DeliveryOutcome:
    """Sync ``commit``, verify it, and roll back to the previous version on any failure.

    ``cluster`` is a :class:`~blocks.cluster.KubernetesCluster` block (or anything with
    ``get_api_client()``); ``sync`` says how (its revision is replaced by ``commit``).
    Returns the outcome when healthy; otherwise raises the original error after the
    rollback (or :class:`RollbackFailedError` when the rollback failed as well).
    """
    resource_id = f"shipyard.delivery.{app or sync.app}.{environment or 'default'}"
    ledger = open_ledger(repository, commit, sync.branch)
    # Inside a caller's transaction, ours is its child: a later failure of the caller
    # rolls ours back too, so the ledger must outlive this flow (it is tiny).
    nested = get_transaction() is not None
    try:
        with transaction():
            record_manifest_commit(ledger.key)
            try:
                synced = sync_app(cluster, sync.model_copy(update={"revision": commit}))
                verified = verify_delivery(cluster, plan)
            except BaseException as exc:
                ledger.reason = _reason(exc)
                raise
    except Exception as exc:  # noqa: BLE001 - any failure of the delivery triggers rollback
        original = exc
    else:
        if not nested:
            close_ledger(ledger)
        _emit(EVENT_VERIFIED, resource_id, {"commit": commit, "driver": synced.driver})
        return DeliveryOutcome(commit=synced.revision, sync=synced, verified=verified)
    try:
        _finish_rollback(cluster, sync, plan, ledger, original, resource_id)
    finally:
        close_ledger(ledger)


def _finish_rollback(
    cluster: Any,
    sync: SyncConfig,
    plan: VerifyPlan,
    ledger: RollbackLedger,
    original: Exception,
    resource_id: str,
) -> NoReturn:
    """After the hook reverted git: sync the revert, verify the previous version, report."""
    reason = ledger.reason or _reason(original)
    payload: dict[str, Any] = {"commit": ledger.commit, "reason": reason}
    failure: str | None = None
    if ledger.revert is None:
        failure = f"revert of {ledger.commit[:12]} failed: {ledger.error or 'hook did not run'}"
    else:
        payload["revert_commit"] = ledger.revert.revert_commit
        try:
            rollback_sync = sync_app.with_options(name="rollback-sync")
            rollback_sync(
                cluster, sync.model_copy(update={"revision": ledger.revert.revert_commit})
            )
            verify_delivery(cluster, plan.without_digest(), prefix="rollback-")
        except Exception as exc:  # noqa: BLE001 - any failure here means rollback failed
            failure = f"previous version is not healthy after the revert: {_reason(exc)}"
    lines = [
        f"# Rollback of `{ledger.commit[:12]}`",
        "",
        f"* reason: {reason}",
        f"* revert commit: `{payload.get('revert_commit', 'none')}`",
        f"* outcome: {'FAILED: ' + failure if failure else 'previous version healthy'}",
    ]
    create_markdown_artifact("\n".join(lines), description="automatic rollback")
    if failure is not None:
        payload["rollback_error"] = failure
        _emit(EVENT_ROLLBACK_FAILED, resource_id, payload)
        raise RollbackFailedError(
            f"delivery of {ledger.commit[:12]} failed ({reason}) and the rollback failed: {failure}"
        ) from original
    _emit(EVENT_ROLLED_BACK, resource_id, payload)
    raise original
