"""Undo a manifest commit with a new revert commit, pushed without force.

Rollback in GitOps means git says the old thing again: ``git revert --no-edit <sha>`` on
the current tip of the branch (so commits pushed since are kept), committed with a
``Reason:`` trailer, and pushed. A non-fast-forward push (someone pushed meanwhile) is
answered like Kargo's git-push step: fetch, rebase the revert onto the new tip, push
again, up to ``max_attempts``. Never a force push.

A commit that is already reverted on the branch is a no-op (rollback is idempotent, so a
retried rollback does not revert the revert). A revert that conflicts with later commits
is a :class:`PermanentError`: a person has to decide.

Every revert carries the trailer, with :data:`NO_REASON` when no reason was recorded (a
caller's failure rolled the delivery back), so ``git log`` always answers "why".

Layers: :class:`RevertConfig`, the git core :func:`revert_commit` (gitpython + the real
``git`` binary, on the clone, push, trailer and error translation helpers of
:mod:`shipyard.core.git`), and the thin task ``revert_manifest_commit`` in
:mod:`tasks.steps.gitops`.
"""

from __future__ import annotations

import random
import re
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from git import Repo
from git.exc import GitCommandError
from pydantic import BaseModel, ConfigDict, Field, field_validator

from shipyard.core.errors import PermanentError, TransientError
from shipyard.core.git import (
    CloneConfig,
    GitWriteConfig,
    add_trailers,
    author_env,
    backoff_delay,
    clone,
    fetch_branch,
    push_head,
)

__all__ = ["NO_REASON", "RevertConfig", "RevertResult", "revert_commit"]

NO_REASON = "rolled back without a recorded reason"
"""The ``Reason:`` of a revert nobody gave a reason for (e.g. a caller's failure rolled it
back): every revert commit carries the trailer, so ``git log`` always answers "why"."""

_SHA = re.compile(r"^[0-9a-f]{7,40}$")


class RevertConfig(BaseModel):
    """Which commit to revert on which branch, as whom, and how hard to try."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    commit: str = Field(description="The manifest commit to undo (sha).")
    branch: str = Field("main", description="Branch the commit is on and the revert goes to.")
    reason: str = Field(
        "",
        description="Why: becomes the commit's Reason: trailer (folded to one line; "
        "empty: NO_REASON).",
    )
    author_name: str = Field("Shipyard", description="Author and committer name.")
    author_email: str = Field("shipyard@localhost", description="Author and committer email.")
    max_attempts: int = Field(8, ge=1, le=100, description="Push attempts before giving up.")
    backoff_seconds: float = Field(0.2, ge=0, description="First retry delay; doubles, jittered.")
    timeout_seconds: float = Field(120.0, gt=0, description="Deadline of one git network call.")

    @field_validator("commit")
    @classmethod
    def _sha(cls, value: str) -> str:
        if not _SHA.match(value):
            raise ValueError(f"commit {value!r} must be a hex sha")
        return value

    @classmethod
    def on(cls, write: GitWriteConfig, commit: str, reason: str = "") -> RevertConfig:
        """Revert ``commit`` on ``write``'s branch as ``write``'s author (e.g. a block's)."""
        return cls(
            commit=commit,
            branch=write.branch,
            reason=reason,
            author_name=write.author_name,
            author_email=write.author_email,
        )


class RevertResult(BaseModel):
    """The revert commit pushed (or the one that already existed)."""

    reverted: str = Field(description="The commit undone (full sha).")
    revert_commit: str = Field(description="The revert commit on the branch.")
    attempts: int = Field(0, description="Push attempts used (0 when already reverted).")
    already_reverted: bool = Field(False, description="True when the branch had it reverted.")


def _existing_revert(repo: Repo, sha: str) -> str | None:
    """The commit after ``sha`` on HEAD that says it reverts ``sha``, if any."""
    out = repo.git.log("--format=%H", f"--grep=This reverts commit {sha}", f"{sha}..HEAD")
    return out.split()[0] if out.strip() else None


def _make_revert(repo: Repo, sha: str, config: RevertConfig) -> str:
    """Create the revert commit of ``sha`` on the current HEAD; return its sha."""
    summary = repo.commit(sha).summary
    subject = summary.decode("utf-8", "replace") if isinstance(summary, bytes) else summary
    message = add_trailers(
        f'Revert "{subject}"\n\nThis reverts commit {sha}.\n',
        {"Reason": config.reason.strip() or NO_REASON},
    )
    with repo.git.custom_environment(**author_env(config.author_name, config.author_email)):
        try:
            repo.git.revert("--no-edit", "--no-commit", sha)
        except GitCommandError as exc:
            repo.git.revert("--abort")
            detail = " ".join(f"{exc.stderr or ''}".split())[:300]
            raise PermanentError(
                f"reverting {sha[:12]} conflicts with later commits on {config.branch}; "
                f"resolve by hand ({detail})"
            ) from None
        status = repo.git.status("--porcelain")
        if not status.strip():
            raise PermanentError(f"reverting {sha[:12]} changes nothing on {config.branch}")
        repo.git.commit("-q", "--no-verify", "-m", message)
    return str(repo.head.commit.hexsha)


def revert_commit(
    url: str,
    config: RevertConfig,
    *,
    env: Mapping[str, str] | None = None,
    workdir: str | Path | None = None,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> RevertResult:
    """Push a commit reverting ``config.commit`` onto ``config.branch`` of ``url``."""
    rng = rng or random.Random()  # noqa: S311 - jitter
    where = CloneConfig(branch=config.branch, depth=None, timeout_seconds=config.timeout_seconds)
    with tempfile.TemporaryDirectory(prefix="shipyard-revert-", dir=workdir) as tmp:
        repo = clone(url, Path(tmp) / "checkout", where, env=env)
        try:
            try:
                sha = str(repo.commit(config.commit).hexsha)
                repo.git.merge_base("--is-ancestor", sha, "HEAD")
            except (GitCommandError, ValueError):
                raise PermanentError(
                    f"commit {config.commit} is not on branch {config.branch}; nothing to revert"
                ) from None
            done = _existing_revert(repo, sha)
            if done is not None:
                return RevertResult(reverted=sha, revert_commit=done, already_reverted=True)
            revert = _make_revert(repo, sha, config)
            for attempt in range(1, config.max_attempts + 1):
                try:
                    push_head(repo, config.branch, config.timeout_seconds)
                    return RevertResult(reverted=sha, revert_commit=revert, attempts=attempt)
                except TransientError:
                    if attempt == config.max_attempts:
                        raise
                sleep(backoff_delay(attempt, config.backoff_seconds, 5.0, rng))
                rebased = _rebase(repo, sha, config)
                if rebased is None:  # someone else reverted it meanwhile
                    done = _existing_revert(repo, sha)
                    assert done is not None
                    return RevertResult(reverted=sha, revert_commit=done, already_reverted=True)
                revert = rebased
        finally:
            repo.close()
    raise TransientError(f"revert of {config.commit} still rejected")  # pragma: no cover


def _rebase(repo: Repo, sha: str, config: RevertConfig) -> str | None:
    """Fetch the new tip and rebase our revert onto it (redo it when the rebase conflicts)."""
    fetch_branch(repo, config.branch, config.timeout_seconds)
    upstream = f"origin/{config.branch}"
    if repo.git.log(
        "--format=%H", f"--grep=This reverts commit {sha}", f"{sha}..{upstream}"
    ).strip():
        repo.git.reset("-q", "--hard", upstream)
        return None
    with repo.git.custom_environment(**author_env(config.author_name, config.author_email)):
        try:
            repo.git.rebase(upstream)
            return str(repo.head.commit.hexsha)
        except GitCommandError:
            repo.git.rebase("--abort")
    repo.git.reset("-q", "--hard", upstream)
    return _make_revert(repo, sha, config)
