"""Read which image an environment of the GitOps repo pins, at the tip of its branch.

A delivery asks this before it writes: when the environment already pins the digest it
was asked to deliver (under whatever tag), there is nothing to commit, so a second tag
of the same digest, a replayed event or a re-run never makes a commit that only flips
the tag. Read-only: a shallow clone of the environment's directory. The task
``read_pinned`` is in :mod:`tasks.steps.gitops`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from shipyard.core.git import CloneConfig, clone
from tasks.set_image import find_images

__all__ = ["PinnedImage", "read_pinned_at"]


@dataclass(frozen=True)
class PinnedImage:
    """What one environment's files pin for one image, read at one GitOps commit."""

    commit: str
    references: tuple[str, ...]
    digests: frozenset[str]
    unpinned: int = 0

    @property
    def digest(self) -> str | None:
        """The one digest the environment runs; None when it pins none or several.

        References without a digest do not count, as in promotion planning: next to a
        kustomize ``images:`` entry the base manifest keeps its plain tag, and the
        entry's digest is what runs.
        """
        return next(iter(self.digests)) if len(self.digests) == 1 else None


def read_pinned_at(
    url: str,
    config: CloneConfig,
    path: str,
    image: str,
    *,
    env: Mapping[str, str] | None = None,
) -> PinnedImage:
    """Clone ``config.branch`` of ``url`` and list every reference of ``image`` under
    ``path`` (kustomize ``images:``, Helm values, manifests), with the digests pinned."""
    with tempfile.TemporaryDirectory(prefix="shipyard-pinned-") as tmp:
        repo = clone(url, Path(tmp) / "r", config, env=env)
        try:
            refs = [ref for _, ref in find_images(Path(tmp) / "r", path, image)]
            return PinnedImage(
                commit=repo.head.commit.hexsha,
                references=tuple(str(ref) for ref in refs),
                digests=frozenset(ref.digest for ref in refs if ref.digest),
                unpinned=sum(1 for ref in refs if not ref.digest),
            )
        finally:
            repo.close()
