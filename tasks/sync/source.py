"""Read a GitOps repo at one commit: a local working tree or a remote (file://, git://, ...).

Only committed content counts: rendering "the path at the commit" means uncommitted
edits in a working tree are ignored, exactly what an operator reading the remote sees.
:func:`checkout_local` and :meth:`SourceCache.checkout` write the WHOLE tree of the
commit into a scratch directory (from git's object database, through a private index,
never the working tree), so a kustomization may reach ``../base``; symbolic links that
leave the tree are refused. :func:`read_commit_tree` reads the files under one path as
text, for callers that want contents rather than a directory.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from git import Repo
from git.exc import BadName, GitCommandError, InvalidGitRepositoryError, NoSuchPathError

from shipyard.core.errors import ConfigError, PermanentError, TransientError
from shipyard.core.git import GIT_ENV, clone_url

__all__ = [
    "Checkout",
    "SourceCache",
    "checkout_local",
    "checkout_tree",
    "read_commit_tree",
    "read_local",
]

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


@dataclass(frozen=True)
class Checkout:
    """A commit written out to a directory: what a render reads."""

    sha: str
    subject: str
    root: Path


def checkout_tree(repo: Repo, revision: str, dest: Path) -> Checkout:
    """Write the whole tree of ``revision`` of ``repo`` into the empty directory ``dest``.

    Uses a private index (``read-tree`` + ``checkout-index``) so the repository's own
    index and working tree are never touched and a bare mirror works the same. A
    symbolic link pointing outside ``dest`` is a ConfigError: nothing outside the
    commit may reach a render.
    """
    try:
        commit = repo.commit(revision)
    except (BadName, ValueError):
        raise ConfigError(f"revision {revision!r} does not exist in the repository") from None
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="shipyard-index-") as scratch:
        env = {**os.environ, **GIT_ENV, "GIT_INDEX_FILE": str(Path(scratch) / "index")}
        base = ["git", f"--git-dir={repo.git_dir}", f"--work-tree={dest}"]
        for args in (["read-tree", commit.hexsha], ["checkout-index", "--all", "--force"]):
            proc = subprocess.run(
                [*base, *args], capture_output=True, text=True, env=env, check=False
            )
            if proc.returncode != 0:
                text = " ".join(proc.stderr.split())[:300]
                raise PermanentError(f"checkout of {commit.hexsha[:12]} failed: {text}")
    inside = dest.resolve()
    for current, dirs, names in os.walk(dest):
        for name in [*dirs, *names]:
            entry = Path(current) / name
            if entry.is_symlink():
                real = entry.resolve()
                if real != inside and inside not in real.parents:
                    rel = entry.relative_to(dest).as_posix()
                    raise ConfigError(f"{rel} links outside the repository")
    subject = str(commit.message).strip().splitlines()[0] if str(commit.message).strip() else ""
    return Checkout(sha=str(commit.hexsha), subject=subject, root=dest)


def checkout_local(repo_dir: str | Path, revision: str | None, dest: Path) -> Checkout:
    """:func:`checkout_tree` of ``revision`` (default HEAD) of the working tree ``repo_dir``."""
    try:
        repo = Repo(str(repo_dir), search_parent_directories=False)
    except (InvalidGitRepositoryError, NoSuchPathError):
        raise ConfigError(f"{repo_dir} is not a git repository") from None
    try:
        return checkout_tree(repo, revision or "HEAD", dest)
    finally:
        repo.close()


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
        with self._fetched(url, branch) as repo:
            return read_commit_tree(repo, revision or f"refs/heads/{branch}", path)

    def checkout(self, url: str, branch: str, revision: str | None, dest: Path) -> Checkout:
        """Fetch ``branch`` of ``url`` and write the whole tree at ``revision`` into ``dest``."""
        with self._fetched(url, branch) as repo:
            return checkout_tree(repo, revision or f"refs/heads/{branch}", dest)

    @contextmanager
    def _fetched(self, url: str, branch: str) -> Iterator[Repo]:
        """The mirror of ``url`` with ``branch`` just fetched, locked while in use."""
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
                yield repo
            finally:
                repo.close()
