"""A pushed manifest commit as a compensable step of a Prefect transaction.

:func:`record_manifest_commit` enlists the commit in the current transaction; when
anything later in that transaction (or in an enclosing one) fails, Prefect rolls it back
and the hook :func:`revert_on_rollback` pushes a revert commit through the
``revert-manifest-commit`` task. Everything the hook needs, and what it did, is kept in
the transaction itself (no process-wide state): the flow sets the failure reason with
:func:`set_rollback_reason` and reads the outcome with :func:`rollback_outcome`.
"""

from __future__ import annotations

from dataclasses import dataclass

from prefect import task
from prefect.cache_policies import NONE as NO_CACHE
from prefect.transactions import Transaction, get_transaction

from blocks.gitops import GitOpsRepository
from tasks.revert_commit import RevertResult
from tasks.steps.gitops import revert_manifest_commit

__all__ = [
    "ManifestCommit",
    "RollbackOutcome",
    "record_manifest_commit",
    "revert_on_rollback",
    "rollback_outcome",
    "set_rollback_reason",
]

_MANIFEST = "shipyard.manifest-commit"
_REASON = "shipyard.rollback-reason"
_OUTCOME = "shipyard.rollback-outcome"


@dataclass(frozen=True)
class ManifestCommit:
    """The commit a rollback would revert, and where."""

    repository: GitOpsRepository
    commit: str
    branch: str | None = None


@dataclass(frozen=True)
class RollbackOutcome:
    """What the rollback hook did: the revert, or why it failed."""

    commit: str
    revert: RevertResult | None = None
    error: str | None = None


def _enlist(manifest: ManifestCommit) -> str:
    """Keep ``manifest`` in the task's own transaction, where its rollback hook reads it."""
    txn = get_transaction()
    if txn is not None:
        txn.set(_MANIFEST, manifest)
    return manifest.commit


@task(name="record-manifest-commit", cache_policy=NO_CACHE)
def record_manifest_commit(
    repository: GitOpsRepository, commit: str, branch: str | None = None
) -> str:
    """Enlist the pushed manifest ``commit`` in the current transaction (does nothing
    by itself; its ``on_rollback`` hook reverts the commit)."""
    return _enlist(ManifestCommit(repository=repository, commit=commit, branch=branch))


@record_manifest_commit.on_rollback
def revert_on_rollback(txn: Transaction) -> None:
    """Rollback hook: revert the enlisted commit; keep the outcome in ``txn``.

    The reason comes from the enclosing transaction (:func:`set_rollback_reason`); a
    rollback started by a caller's failure has none.
    """
    manifest: ManifestCommit = txn.get(_MANIFEST)
    reason = str(txn.get(_REASON, ""))
    try:
        revert = revert_manifest_commit(
            manifest.repository, manifest.commit, reason, manifest.branch
        )
    except Exception as exc:
        txn.set(_OUTCOME, RollbackOutcome(manifest.commit, error=f"{type(exc).__name__}: {exc}"))
        raise
    txn.set(_OUTCOME, RollbackOutcome(manifest.commit, revert=revert))


def set_rollback_reason(txn: Transaction, reason: str) -> None:
    """Record why ``txn`` fails, for the revert commit's ``Reason:`` trailer."""
    txn.set(_REASON, reason)


def rollback_outcome(txn: Transaction) -> RollbackOutcome | None:
    """What the hook of a manifest commit enlisted under ``txn`` did (None: no hook ran)."""
    for child in reversed(txn.children):
        outcome = child.get(_OUTCOME, None)
        if isinstance(outcome, RollbackOutcome):
            return outcome
    return None
