"""Commit an image change in a local GitOps working tree (no clone, no push).

The commit half of ``shipyard set-image --commit``: after the set-image core
(:mod:`tasks.set_image`) edited the files, commit exactly the files it changed, with the
commit message the write-back step (:mod:`tasks.git_write`) gives a pushed update, as the
repository's own author, hooks included. The Prefect tasks are in
:mod:`tasks.steps.worktree`.
"""

from __future__ import annotations

from pathlib import Path

from shipyard.core.git import GitWriteConfig, commit_local
from tasks.git_write import ImageUpdate, render_message
from tasks.set_image import SetImageConfig, SetImageResult

__all__ = ["commit_image_change", "is_git_tree"]


def is_git_tree(path: str | Path) -> bool:
    """True when ``path`` is inside a git working tree (checked without running git), so
    a caller can refuse a commit request before it writes anything."""
    resolved = Path(path).resolve()
    return any((candidate / ".git").exists() for candidate in (resolved, *resolved.parents))


def commit_image_change(
    repo_dir: str | Path, config: SetImageConfig, result: SetImageResult
) -> str | None:
    """Commit the files ``result`` changed under ``repo_dir``; the new commit's sha, or
    None when nothing changed (nothing to commit)."""
    if not result.changed:
        return None
    message = render_message([(ImageUpdate(set_image=config), result.changes)], GitWriteConfig())
    return commit_local(repo_dir, result.changed_files, message)
