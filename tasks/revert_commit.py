"""Undo a manifest commit with a new revert commit, pushed without force.

Rollback in GitOps means git says the old thing again: ``git revert --no-edit <sha>`` on
the current tip of the branch (so commits pushed since are kept), committed with a
``Reason:`` trailer, and pushed. A non-fast-forward push (someone pushed meanwhile) is
answered like Kargo's git-push step: fetch, rebase the revert onto the new tip, push
again, up to ``max_attempts``. Never a force push.

A commit that is already reverted on the branch is a no-op (rollback is idempotent, so a
retried rollback does not revert the revert). A revert that conflicts with later commits
is a :class:`PermanentError`: a person has to decide.

Layers: :class:`RevertConfig`, the git core :func:`revert_commit` (gitpython + the real
``git`` binary, reusing :mod:`tasks.git_write`'s clone and error translation), and the
thin task :func:`revert_manifest_commit` taking the GitOps repository block.
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
from prefect import task
from prefect.cache_policies import NONE as NO_CACHE
from pydantic import BaseModel, ConfigDict, Field, field_validator

from blocks.gitops import GitOpsRepository
from shipyard.core.errors import PermanentError, TransientError, retry_condition
from tasks.git_write import GitWriteConfig, _git_error, clone

__all__ = ["RevertConfig", "RevertResult", "revert_commit", "revert_manifest_commit"]

_SHA = re.compile(r"^[0-9a-f]{7,40}$")


class RevertConfig(BaseModel):
    """Which commit to revert on which branch, as whom, and how hard to try."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    commit: str = Field(description="The manifest commit to undo (sha).")
    branch: str = Field("main", description="Branch the commit is on and the revert goes to.")
    reason: str = Field("", description="Why: becomes the commit's Reason: trailer.")
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


class RevertResult(BaseModel):
    """The revert commit pushed (or the one that already existed)."""

    reverted: str = Field(description="The commit undone (full sha).")
    revert_commit: str = Field(description="The revert commit on the branch.")
    attempts: int = Field(0, description="Push attempts used (0 when already reverted).")
    already_reverted: bool = Field(False, description="True when the branch had it reverted.")


def _ident(config: RevertConfig) -> dict[str, str]:
    return {
        "GIT_AUTHOR_NAME": config.author_name,
        "GIT_AUTHOR_EMAIL": config.author_email,
        "GIT_COMMITTER_NAME": config.author_name,
        "GIT_COMMITTER_EMAIL": config.author_email,
    }


def _existing_revert(repo: Repo, sha: str) -> str | None:
    """The commit after ``sha`` on HEAD that says it reverts ``sha``, if any."""
    out = repo.git.log("--format=%H", f"--grep=This reverts commit {sha}", f"{sha}..HEAD")
    return out.split()[0] if out.strip() else None


def _make_revert(repo: Repo, sha: str, config: RevertConfig) -> str:
    """Create the revert commit of ``sha`` on the current HEAD; return its sha."""
    summary = repo.commit(sha).summary
    subject = summary.decode("utf-8", "replace") if isinstance(summary, bytes) else summary
    message = f'Revert "{subject}"\n\nThis reverts commit {sha}.\n'
    if config.reason:
        reason = " ".join(config.reason.split())[:500]
        message += f"\nReason: {reason}\n"
    with repo.git.custom_environment(**_ident(config)):
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
    write = GitWriteConfig(
        branch=config.branch,
        depth=None,
        timeout_seconds=config.timeout_seconds,
        author_name=config.author_name,
        author_email=config.author_email,
    )
    with tempfile.TemporaryDirectory(prefix="shipyard-revert-", dir=workdir) as tmp:
        repo = clone(url, Path(tmp) / "checkout", write, env=env)
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
            delay = config.backoff_seconds
            for attempt in range(1, config.max_attempts + 1):
                try:
                    repo.git.push(
                        "--porcelain",
                        "origin",
                        f"HEAD:refs/heads/{config.branch}",
                        kill_after_timeout=config.timeout_seconds,
                    )
                    return RevertResult(reverted=sha, revert_commit=revert, attempts=attempt)
                except GitCommandError as exc:
                    error = _git_error(exc, "push")
                    if not isinstance(error, TransientError) or attempt == config.max_attempts:
                        raise error from None
                sleep(delay * (0.5 + rng.random()))
                delay = min(delay * 2, 5.0)
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
    try:
        repo.git.fetch(
            "origin",
            f"+refs/heads/{config.branch}:refs/remotes/origin/{config.branch}",
            kill_after_timeout=config.timeout_seconds,
        )
    except GitCommandError as exc:
        raise _git_error(exc, "fetch") from None
    upstream = f"origin/{config.branch}"
    if repo.git.log(
        "--format=%H", f"--grep=This reverts commit {sha}", f"{sha}..{upstream}"
    ).strip():
        repo.git.reset("-q", "--hard", upstream)
        return None
    with repo.git.custom_environment(**_ident(config)):
        try:
            repo.git.rebase(upstream)
            return str(repo.head.commit.hexsha)
        except GitCommandError:
            repo.git.rebase("--abort")
    repo.git.reset("-q", "--hard", upstream)
    return _make_revert(repo, sha, config)


@task(
    name="revert-manifest-commit",
    cache_policy=NO_CACHE,
    retries=3,
    retry_delay_seconds=[2, 10, 30],
    retry_condition_fn=retry_condition,
)
def revert_manifest_commit(
    repository: GitOpsRepository, commit: str, reason: str = "", branch: str | None = None
) -> RevertResult:
    """Revert ``commit`` on the GitOps repo with a new commit (never a force push)."""
    config = RevertConfig(
        commit=commit,
        branch=branch or repository.branch,
        reason=reason,
        author_name=repository.author_name,
        author_email=repository.author_email,
    )
    with repository.git_environment() as env:
        return revert_commit(repository.url, config, env=env)
