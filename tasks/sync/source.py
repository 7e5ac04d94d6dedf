"""Read a GitOps repo at one commit: a local working tree or a remote (file://, git://, ...).

Only committed content counts: rendering "the path at the commit" means uncommitted
edits in a working tree are ignored, exactly what an operator reading the remote sees.
Files come out of git's object database through gitpython, with no checkout.
"""

from __future__ import annotations

import re
import tempfile
import threading
from pathlib import Path

from git import Repo
from git.exc import BadName, GitCommandError, InvalidGitRepositoryError, NoSuchPathError

from shipyard.core.errors import ConfigError, PermanentError, TransientError
from shipyard.core.git import GIT_ENV, clone_url

__all__ = ["SourceCache", "read_commit_tree", "read_local"]

MAX_FILE_BYTES = 4 * 1024 * 1024


def read_commit_tree(repo: Repo, revision: str, path: str) -> tuple[str, dict[str, str]]:
    """(commit sha, {repo-relative path: text}) of every file under ``path`` at ``revision``."""
    try:
        commit = repo.commit(revision)
    except (BadName, ValueError):
        raise ConfigError(f"revision {revision!r} does not exist in the repository") from None
    files: dict[str, str] = {}
    tree = commit.tree
    prefix = path.strip("/").strip(".").strip("/")
    try:
        node = tree / prefix if prefix else tree
    except KeyError:
        raise ConfigError(f"path {path!r} does not exist at {commit.hexsha[:12]}") from None
    if node.type == "blob":
        files[prefix] = node.data_stream.read().decode("utf-8", "replace")
        return str(commit.hexsha), files
    for item in node.traverse():
        if item.type != "blob" or item.size > MAX_FILE_BYTES:  # type: ignore[union-attr]
            continue
        files[str(item.path)] = item.data_stream.read().decode("utf-8", "replace")  # type: ignore[union-attr]
    return str(commit.hexsha), files


def read_local(repo_dir: str | Path, revision: str | None, path: str) -> tuple[str, dict[str, str]]:
    """Read ``path`` at ``revision`` (default HEAD) of the working tree ``repo_dir``."""
    try:
        repo = Repo(str(repo_dir), search_parent_directories=False)
    except (InvalidGitRepositoryError, NoSuchPathError):
        raise ConfigError(f"{repo_dir} is not a git repository") from None
    try:
        return read_commit_tree(repo, revision or "HEAD", path)
    finally:
        repo.close()


class SourceCache:
    """Bare mirrors of remote repos, fetched on demand (what an operator's source cache is)."""

    def __init__(self, root: str | Path | None = None, timeout: float = 60.0) -> None:
        self._tmp = (
            None if root is not None else tempfile.TemporaryDirectory(prefix="shipyard-src-")
        )
        self.root = Path(root) if root is not None else Path(self._tmp.name)  # type: ignore[union-attr]
        self.timeout = timeout
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def close(self) -> None:
        """Remove the temporary mirrors (when the cache made its own directory)."""
        if self._tmp is not None:
            self._tmp.cleanup()

    def _mirror(self, url: str) -> Repo:
        key = re.sub(r"[^A-Za-z0-9]+", "-", url)[-80:]
        path = self.root / key
        if not path.exists():
            repo = Repo.init(str(path), bare=True)
            repo.git.update_environment(**GIT_ENV)
            repo.create_remote("origin", clone_url(url))
            return repo
        repo = Repo(str(path))
        repo.git.update_environment(**GIT_ENV)
        return repo

    def fetch(
        self, url: str, branch: str, revision: str | None, path: str
    ) -> tuple[str, dict[str, str]]:
        """Fetch ``branch`` of ``url`` and read ``path`` at ``revision`` (default its tip)."""
        with self._guard:
            lock = self._locks.setdefault(url, threading.Lock())
        with lock:
            repo = self._mirror(url)
            try:
                try:
                    repo.git.fetch(
                        "--no-tags",
                        "--prune",
                        "origin",
                        f"+refs/heads/{branch}:refs/heads/{branch}",
                        kill_after_timeout=self.timeout,
                    )
                except GitCommandError as exc:
                    text = " ".join(f"{exc.stderr or ''}".split())[:300]
                    if "couldn't find remote ref" in text or "not appear to be a git" in text:
                        raise PermanentError(f"git fetch {branch} failed: {text}") from None
                    raise TransientError(f"git fetch {branch} failed: {text}") from None
                return read_commit_tree(repo, revision or f"refs/heads/{branch}", path)
            finally:
                repo.close()
