"""The local working-tree steps as Prefect tasks: set an image in a GitOps checkout,
commit the change there.

What ``shipyard set-image`` runs: no clone and no push (the user pushes), so no retries
and no writers' limit; both are plain calls of their Prefect-free cores.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE as NO_CACHE

from tasks.commit_local import commit_image_change
from tasks.set_image import SetImageConfig, SetImageResult, set_image

__all__ = ["commit_local_change", "set_image_in_tree"]


@task(name="set-image-in-tree", cache_policy=NO_CACHE)
def set_image_in_tree(repo_dir: str, config: SetImageConfig) -> SetImageResult:
    """Set ``config``'s image in the files under ``repo_dir`` (see :func:`set_image`)."""
    return set_image(repo_dir, config)


@task(name="commit-local", cache_policy=NO_CACHE)
def commit_local_change(
    repo_dir: str, config: SetImageConfig, result: SetImageResult
) -> str | None:
    """Commit what ``result`` changed in ``repo_dir``; the sha, or None when nothing did."""
    return commit_image_change(repo_dir, config, result)
