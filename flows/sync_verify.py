"""Sync a GitOps commit, verify it, and roll back automatically when it is not healthy.

The second half of a delivery, after the manifest commit was pushed:

1. inside one Prefect transaction: the ``record-manifest-commit`` task (whose
   ``on_rollback`` hook reverts the commit through the ``revert-manifest-commit`` task,
   with a new revert commit, never a force push; see :mod:`tasks.steps.rollback`), sync, verify
   every workload, then the smoke checks and metric gates;
2. any failure in there rolls the transaction back, so the hook puts git back to the
   previous version; the flow then syncs the revert and verifies the previous version is
   healthy again, as visible task runs ("rollback-sync", "rollback-verify");
3. the run ends Failed with :class:`RolledBackError` ("rolled back: <reason>", the
   original error as its cause) and emits ``shipyard.delivery.rolled-back``; if the
   rollback itself fails the run fails with both reasons
   (:class:`RollbackFailedError`) and emits ``shipyard.delivery.rollback-failed``.
   Both errors carry the reason and the commits, so the calling flow (``deliver``,
   ``promote``) can show the rollback on its own run.

Each step logs what it did in the run logs: the objects applied, the revision synced,
each workload's verified state.

A caller can also open its own transaction around its write-back task and call
:func:`~tasks.steps.rollback.record_manifest_commit` + :func:`verify_delivery` itself.
What the hook needs and what it did live in the transactions, not in the process.
"""

from __future__ import annotations

from typing import Any, NoReturn

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.transactions import transaction
from pydantic import BaseModel, ConfigDict, Field

from blocks.gitops import GitOpsRepository
from flows.common import emit
from shipyard.core.catalog import AnomalyGate, Environment, MetricGate, SmokeCheck
from shipyard.core.errors import PermanentError, ShipyardError
from tasks.anomaly_gate import bind_revision
from tasks.steps.rollback import (
    RollbackOutcome,
    record_manifest_commit,
    rollback_outcome,
    set_rollback_reason,
)
from tasks.steps.rollout import anomaly_gate, metric_gate, smoke_check, sync_app, verify_rollout
from tasks.sync.config import SyncConfig, SyncResult
from tasks.verify_rollout import VerifyConfig, VerifyResult

__all__ = [
    "DeliveryOutcome",
    "RollbackFailedError",
    "RolledBackError",
    "VerifyPlan",
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
    anomaly: AnomalyGate | None = Field(None, description="New-vs-baseline anomaly gate.")
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
            anomaly=bind_revision(env.verify.anomaly, digest) if env.verify.anomaly else None,
        )

    def without_digest(self) -> VerifyPlan:
        """The plan for the previous version: same workloads, any digest, no gates."""
        return VerifyPlan(workloads=[w.model_copy(update={"digest": None}) for w in self.workloads])


class DeliveryOutcome(BaseModel):
    """What a successful sync-and-verify did."""

    commit: str = Field(description="The manifest commit now running.")
    sync: SyncResult = Field(description="The sync.")
    verified: list[VerifyResult] = Field(default_factory=list, description="Per workload.")


class RolledBackError(PermanentError):
    """The delivery failed and the previous version was put back (and is healthy).

    ``reason`` is why the delivery failed (the original error is the ``__cause__``),
    ``commit`` the rolled-back GitOps commit, ``revert_commit`` the revert, ``cause``
    the step that failed (``sync`` or ``verify``, the ledger's cause).
    """

    def __init__(
        self,
        reason: str = "",
        commit: str = "",
        revert_commit: str | None = None,
        cause: str = "verify",
    ) -> None:
        super().__init__(f"rolled back: {reason}")
        self.reason, self.commit, self.revert_commit = reason, commit, revert_commit
        self.cause = cause

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.reason, self.commit, self.revert_commit, self.cause))


class RollbackFailedError(PermanentError):
    """The delivery failed and putting the previous version back failed too."""

    def __init__(
        self,
        message: str = "",
        *,
        reason: str = "",
        commit: str = "",
        revert_commit: str | None = None,
        rollback_error: str = "",
        cause: str = "verify",
    ) -> None:
        super().__init__(message)
        self.reason, self.commit = reason, commit
        self.revert_commit, self.rollback_error = revert_commit, rollback_error
        self.cause = cause

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rollback_failed,
            (
                self.message,
                self.reason,
                self.commit,
                self.revert_commit,
                self.rollback_error,
                self.cause,
            ),
        )


def _rollback_failed(
    message: str,
    reason: str,
    commit: str,
    revert_commit: str | None,
    error: str,
    cause: str = "verify",
) -> RollbackFailedError:
    """Rebuild a RollbackFailedError (pickling keeps its keyword fields)."""
    return RollbackFailedError(
        message,
        reason=reason,
        commit=commit,
        revert_commit=revert_commit,
        rollback_error=error,
        cause=cause,
    )


def verify_delivery(
    cluster: Any, plan: VerifyPlan, *, prefix: str = "", retries: int | None = None
) -> list[VerifyResult]:
    """Verify every workload, then smoke checks, metric gates and the anomaly gate (raises
    on the first failure, with its reason; an anomaly gate without data is logged as not
    checked). ``retries`` overrides the workload tasks' own (0 inside a transaction)."""
    logger = get_run_logger()
    results = []
    options: dict[str, Any] = {} if retries is None else {"retries": retries}
    if prefix:
        options["name"] = f"{prefix}verify-rollout"
    runner = verify_rollout.with_options(**options) if options else verify_rollout
    for workload in plan.workloads:
        result = runner(cluster, workload)
        logger.info("%sverified %s", prefix, describe_verify(result, workload.digest))
        results.append(result)
    for check in plan.smoke:
        smoke_check(check, plan.smoke_interval_seconds)
        logger.info("%ssmoke check passed: %s", prefix, check.url)
    for gate in plan.metrics:
        metric_gate(gate)
        logger.info("%smetric gate passed: %s", prefix, gate.query)
    if plan.anomaly is not None:
        verdict = anomaly_gate(plan.anomaly)
        log = logger.info if verdict.outcome == "passed" else logger.warning
        log("%sanomaly gate %s", prefix, verdict.message)
        title = f"anomaly gate {verdict.outcome}: {verdict.revision} vs {verdict.baseline}"
        rows = [m.model_dump(exclude={"message"}) for m in verdict.metrics]
        create_table_artifact(rows, description=title[:200])
    return results


def describe_verify(result: VerifyResult, digest: str | None = None) -> str:
    """One line for the run log: which workload, how many ready, on what."""
    on = f" on {digest}" if digest else ""
    state = "healthy" if result.healthy else f"NOT healthy ({result.reason})"
    return (
        f"{result.workload} in {result.namespace}: {state}, "
        f"{result.ready}/{result.desired} ready{on} ({result.seconds:.1f}s)"
    )


def describe_sync(result: SyncResult) -> str:
    """One line for the run log: revision, driver and every object applied or pruned."""
    applied = ", ".join(result.applied) or "nothing"
    pruned = f"; pruned {', '.join(result.pruned)}" if result.pruned else ""
    return (
        f"synced {result.revision[:12]} with {result.driver}: applied "
        f"{len(result.applied)} object(s): {applied}{pruned} ({result.seconds:.1f}s)"
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
    logger = get_run_logger()
    resource_id = f"shipyard.delivery.{app or sync.app}.{environment or 'default'}"
    # Inside a caller's transaction, ours is its child: a later failure of the caller
    # rolls ours back too, and the hook finds what it needs in the transactions.
    step = "sync"  # the ledger's cause when it fails: sync, then verify
    try:
        with transaction() as txn:
            record_manifest_commit(repository, commit, sync.branch)
            # No Prefect task retries in here: a failed attempt rolls the transaction
            # back (git is reverted), and a retry that then succeeded would leave the
            # cluster on the new version with git on the old one. The Kubernetes client
            # already retries 429/5xx (honouring Retry-After) inside each attempt.
            try:
                once = sync_app.with_options(retries=0)
                synced = once(cluster, sync.model_copy(update={"revision": commit}))
                logger.info("%s", describe_sync(synced))
                step = "verify"
                verified = verify_delivery(cluster, plan, retries=0)
            except BaseException as exc:
                set_rollback_reason(txn, _reason(exc))
                raise
    except Exception as exc:  # noqa: BLE001 - any failure of the delivery triggers rollback
        _finish_rollback(
            cluster,
            sync,
            plan,
            commit,
            rollback_outcome(txn),
            _reason(exc),
            exc,
            resource_id,
            cause=step,
        )
    emit(EVENT_VERIFIED, resource_id, {"commit": commit, "driver": synced.driver}, resource_id)
    return DeliveryOutcome(commit=synced.revision, sync=synced, verified=verified)


def _finish_rollback(
    cluster: Any,
    sync: SyncConfig,
    plan: VerifyPlan,
    commit: str,
    outcome: RollbackOutcome | None,
    reason: str,
    original: Exception,
    resource_id: str,
    cause: str = "verify",
) -> NoReturn:
    """After the hook reverted git: sync the revert, verify the previous version, report."""
    logger = get_run_logger()
    logger.warning("delivery of %s failed: %s; rolling back", commit[:12], reason)
    payload: dict[str, Any] = {"commit": commit, "reason": reason, "cause": cause}
    failure: str | None = None
    if outcome is None or outcome.revert is None:
        error = outcome.error if outcome is not None else None
        failure = f"revert of {commit[:12]} failed: {error or 'hook did not run'}"
    else:
        payload["revert_commit"] = outcome.revert.revert_commit
        try:
            rollback_sync = sync_app.with_options(name="rollback-sync")
            synced = rollback_sync(
                cluster, sync.model_copy(update={"revision": outcome.revert.revert_commit})
            )
            logger.info("rollback: %s", describe_sync(synced))
            verify_delivery(cluster, plan.without_digest(), prefix="rollback-")
        except Exception as exc:  # noqa: BLE001 - any failure here means rollback failed
            failure = f"previous version is not healthy after the revert: {_reason(exc)}"
    lines = [
        f"# Rollback of `{commit[:12]}`",
        "",
        f"* reason: {reason}",
        f"* revert commit: `{payload.get('revert_commit', 'none')}`",
        f"* outcome: {'FAILED: ' + failure if failure else 'previous version healthy'}",
    ]
    create_markdown_artifact("\n".join(lines), description="automatic rollback")
    revert = payload.get("revert_commit")
    if failure is not None:
        payload["rollback_error"] = failure
        emit(EVENT_ROLLBACK_FAILED, resource_id, payload, resource_id)
        logger.error("rollback of %s failed: %s", commit[:12], failure)
        raise RollbackFailedError(
            f"delivery of {commit[:12]} failed ({reason}) and the rollback failed: {failure}",
            reason=reason,
            commit=commit,
            revert_commit=revert,
            rollback_error=failure,
            cause=cause,
        ) from original
    emit(EVENT_ROLLED_BACK, resource_id, payload, resource_id)
    logger.warning("rolled back %s with %s: previous version healthy", commit[:12], revert)
    raise RolledBackError(reason, commit, revert, cause) from original
