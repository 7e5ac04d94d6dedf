"""Prefect tasks of write-back: set images, commit and push (or open a PR), promote.

Thin wrappers: they take the :class:`~blocks.gitops.GitOpsRepository` block, add the
flow-run link to the commit message, serialize writers of one repo+branch with a Prefect
global concurrency limit, and call the git layer in :mod:`tasks.git_write`. Retries are
decided by :func:`shipyard.core.errors.retry_condition`: a lost push race is transient, a
conflict or bad input is not.

The concurrency limit is optional: ``strict=False`` means "serialize when an operator
created the limit (``prefect gcl create <name> --limit 1``), proceed otherwise"; the
push loop is safe without it, the limit only saves wasted attempts.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext

from prefect import task
from prefect.concurrency.sync import concurrency

from blocks.gitops import GitOpsRepository
from shipyard.core.errors import retry_condition
from tasks.git_write import GitWriteConfig, ImageUpdate, WriteBackResult, write_back

__all__ = ["commit_and_push", "limit_name", "run_commit_and_push"]


def limit_name(url: str, branch: str) -> str:
    """The global concurrency limit name for writers of ``url``'s ``branch``.

    Prefect limit names allow no ``/``, ``%``, ``&``, ``<``, ``>``; a short hash keeps
    names of different repos with the same slug apart.
    """
    digest = hashlib.sha256(f"{url}#{branch}".encode()).hexdigest()[:8]
    slug = re.sub(r"[^a-z0-9]+", "-", f"{url.rsplit('/', 1)[-1]}-{branch}".lower()).strip("-")
    return f"gitops-write-{slug[:60]}-{digest}"


def _flow_run_url() -> str | None:
    try:
        from prefect.runtime import flow_run

        url = flow_run.ui_url
    except Exception:  # noqa: BLE001 - outside a run there is simply no link
        return None
    return str(url) if url else None


def run_commit_and_push(
    repository: GitOpsRepository,
    updates: Sequence[ImageUpdate],
    config: GitWriteConfig | None = None,
    *,
    lock: AbstractContextManager[object] | None = None,
) -> WriteBackResult:
    """Commit ``updates`` as one commit and push, holding ``lock`` (default: none)."""
    if config is None:
        config = repository.write_config(flow_run_url=_flow_run_url())
    with lock or nullcontext(), repository.git_environment() as env:
        return write_back(repository.url, updates, config, env=env)


@task(
    name="commit-and-push",
    retries=3,
    retry_delay_seconds=[2, 10, 30],
    retry_condition_fn=retry_condition,
)
def commit_and_push(
    repository: GitOpsRepository,
    updates: list[ImageUpdate],
    config: GitWriteConfig | None = None,
) -> WriteBackResult:
    """Set every image in ``updates`` in one commit and push it to the GitOps repo.

    Returns the pushed commit (None when everything was already set). Writers of the same
    repo and branch queue on the concurrency limit :func:`limit_name`, if it exists.
    """
    branch = config.branch if config else repository.branch
    lock = concurrency(limit_name(repository.url, branch), occupy=1, strict=False)
    return run_commit_and_push(repository, updates, config, lock=lock)
