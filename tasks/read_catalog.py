"""Read the app catalog from the GitOps repo at the tip of its branch.

A shallow, sparse clone of just the catalog file: cheap even for a repo of thousands of
apps. Returns the parsed catalog and the commit it was read at, so a run records which
version of the delivery policy it followed. The task ``read_catalog`` is in
:mod:`tasks.steps.gitops`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from shipyard.core.catalog import CATALOG_FILE, Catalog, load_catalog
from shipyard.core.git import CloneConfig, clone

__all__ = ["CatalogAt", "read_catalog_at"]


@dataclass(frozen=True)
class CatalogAt:
    """The catalog and the GitOps commit it was read from."""

    catalog: Catalog
    commit: str


def read_catalog_at(
    url: str, config: CloneConfig, *, env: Mapping[str, str] | None = None
) -> CatalogAt:
    """Clone ``config.branch`` of ``url`` shallowly and parse its catalog."""
    with tempfile.TemporaryDirectory(prefix="shipyard-catalog-") as tmp:
        repo = clone(url, Path(tmp) / "r", config, paths=[CATALOG_FILE], env=env)
        try:
            catalog = load_catalog(Path(tmp) / "r")
            return CatalogAt(catalog, repo.head.commit.hexsha)
        finally:
            repo.close()
