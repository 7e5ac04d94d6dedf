"""The GitOps steps as Prefect tasks: read the catalog, write back, promote, open a PR, revert.

Each wrapper takes the :class:`~blocks.gitops.GitOpsRepository` block, hands the core
plain values (URL, git credentials as environment, a write config) and returns what the
core returns. Retries are decided by :func:`shipyard.core.errors.retry_condition`: a lost
push race or a network failure is transient, a conflict or bad input is not.

Writers of one repo and branch queue on the global concurrency limit
:func:`shipyard.core.limits.git_writers_limit` (``strict=False``: serialize when the
limit exists, which the flows ensure; proceed otherwise). The push loop is safe without
it, the limit only saves wasted attempts.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

from prefect import task
from prefect.cache_policies import NONE as NO_CACHE
from prefect.concurrency.sync import concurrency

from blocks.gitops import GitOpsRepository
from shipyard.core.errors import retry_condition
from shipyard.core.git import GitWriteConfig
from shipyard.core.limits import git_writers_limit
from tasks.git_write import ImageUpdate, WriteBackResult, write_back
from tasks.promote_image import PromoteImageConfig, Promotion, plan_promotion_in, promote_image
from tasks.pull_request import PullRequestConfig, PullRequestResult, run_pull_request
from tasks.read_catalog import CatalogAt, read_catalog_at
from tasks.read_pinned import PinnedImage, read_pinned_at
from tasks.revert_commit import RevertConfig, RevertResult, revert_commit

__all__ = [
    "commit_and_push",
    "plan_promote",
    "promote",
    "pull_request",
    "read_catalog",
    "read_pinned",
    "revert_manifest_commit",
]


def _flow_run_url() -> str | None:
    """The UI link of the current flow run, for the commit message (None outside a run)."""
    try:
        from prefect.runtime import flow_run

        url = flow_run.ui_url
    except Exception:  # noqa: BLE001 - outside a run there is simply no link
        return None
    return str(url) if url else None


def _writer_slot(url: str, branch: str) -> AbstractContextManager[object]:
    """A slot of the writers' limit of ``url``'s ``branch`` (no limit: no wait)."""
    return concurrency(git_writers_limit(url, branch), occupy=1, strict=False)


@task(
    name="read-catalog",
    cache_policy=NO_CACHE,
    retries=3,
    retry_delay_seconds=[2, 10, 30],
    retry_condition_fn=retry_condition,
)
def read_catalog(repository: GitOpsRepository, branch: str | None = None) -> CatalogAt:
    """Read the app catalog at the tip of ``branch`` (default the block's)."""
    config = repository.write_config(branch=branch or repository.branch)
    with repository.git_environment() as env:
        return read_catalog_at(repository.url, config, env=env)


@task(
    name="read-pinned",
    cache_policy=NO_CACHE,
    retries=3,
    retry_delay_seconds=[2, 10, 30],
    retry_condition_fn=retry_condition,
)
def read_pinned(repository: GitOpsRepository, branch: str, path: str, image: str) -> PinnedImage:
    """What ``path`` on ``branch`` pins for ``image`` (:mod:`tasks.read_pinned`), read-only."""
    with repository.git_environment() as env:
        return read_pinned_at(
            repository.url, repository.write_config(branch=branch), path, image, env=env
        )


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
    repo and branch queue on :func:`~shipyard.core.limits.git_writers_limit`, if it exists.
    """
    config = config or repository.write_config(flow_run_url=_flow_run_url())
    with _writer_slot(repository.url, config.branch), repository.git_environment() as env:
        return write_back(repository.url, updates, config, env=env)


@task(
    name="open-pull-request",
    retries=3,
    retry_delay_seconds=[5, 30, 120],
    retry_condition_fn=retry_condition,
)
def pull_request(
    repository: GitOpsRepository,
    updates: list[ImageUpdate],
    config: PullRequestConfig | None = None,
    write: GitWriteConfig | None = None,
) -> PullRequestResult:
    """PR mode: push a branch with ``updates`` and open (and maybe await) a request."""
    write, api = write or repository.write_config(), repository.hosting_api()
    with repository.git_environment() as env:
        return run_pull_request(repository.url, updates, write, api, config, env=env)


@task(name="plan-promotion", retries=2, retry_delay_seconds=5, retry_condition_fn=retry_condition)
def plan_promote(
    repository: GitOpsRepository, config: PromoteImageConfig, write: GitWriteConfig | None = None
) -> Promotion:
    """Read the catalog and the source environment from the repo; return the plan.

    The flow then sends ``plan.update`` to :func:`commit_and_push` or, when
    ``plan.target.pull_request``, to :func:`pull_request`, on ``plan.target.branch``.
    """
    base = write or repository.write_config()
    with repository.git_environment() as env:
        return plan_promotion_in(repository.url, config, base, env=env)


@task(
    name="promote-image",
    retries=3,
    retry_delay_seconds=[2, 10, 30],
    retry_condition_fn=retry_condition,
)
def promote(
    repository: GitOpsRepository, config: PromoteImageConfig, write: GitWriteConfig | None = None
) -> WriteBackResult:
    """Promote ``config.app`` by digest and push to the target environment's branch.

    Targets with ``pull_request: true`` are refused with a PolicyError: use
    :func:`plan_promote` and :func:`pull_request` for those.
    """
    base = write or repository.write_config()
    with repository.git_environment() as env:
        return promote_image(repository.url, config, base, env=env)


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
    write = repository.write_config(branch=branch or repository.branch)
    with repository.git_environment() as env:
        return revert_commit(repository.url, RevertConfig.on(write, commit, reason), env=env)
