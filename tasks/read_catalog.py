"""Read the app catalog from the GitOps repo at the tip of its branch.

A shallow, sparse clone of just the catalog file: cheap even for a repo of thousands of
apps. Returns the parsed catalog and the commit it was read at, so a run records which
version of the delivery policy it followed.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from prefect import task
from prefect.cache_policies import NONE as NO_CACHE

from blocks.gitops import GitOpsRepository
from shipyard.core.catalog import CATALOG_FILE, Catalog, load_catalog
from shipyard.core.errors import retry_condition
from tasks.git_write import clone


@dataclass(frozen=True)
class CatalogAt:
    """The catalog and the GitOps commit it was read from."""

    catalog: Catalog
    commit: str


def read_catalog_at(repository: GitOpsRepository, branch: str | None = None) -> CatalogAt:
    """Clone ``branch`` (default the block's) shallowly and parse its catalog."""
    config = repository.write_config(**({"branch": branch} if branch else {}))
    with (
        tempfile.TemporaryDirectory(prefix="shipyard-catalog-") as tmp,
        repository.git_environment() as env,
    ):
        repo = clone(repository.url, Path(tmp) / "r", config, paths=[CATALOG_FILE], env=env)
        try:
            catalog = load_catalog(Path(tmp) / "r")
            return CatalogAt(catalog, repo.head.commit.hexsha)
        finally:
            repo.close()


@task(
    name="read-catalog",
    cache_policy=NO_CACHE,
    retries=3,
    retry_delay_seconds=[2, 10, 30],
    retry_condition_fn=retry_condition,
)
def read_catalog(repository: GitOpsRepository, branch: str | None = None) -> CatalogAt:
    """Prefect task around :func:`read_catalog_at`; network errors are retried."""
    return read_catalog_at(repository, branch)
