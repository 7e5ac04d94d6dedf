"""Commit image updates to a GitOps repo and push them without losing anyone's update.

Three layers, as every step: :class:`GitWriteConfig` (typed, validated), the git layer
(:func:`clone`, :func:`commit_files`, :func:`write_back`) built on gitpython and a real
``git`` binary, and the thin Prefect task :func:`commit_and_push` in
:mod:`tasks.commit_push`.

Pushing is optimistic and never forced. On a non-fast-forward (or a ref lock lost to
another writer) :func:`write_back` fetches the new tip, resets to it, *re-runs the pure
edit* on that tip (so a concurrent change to the same file merges naturally, and a
concurrent change of the very same image is reported as a conflict instead of being
overwritten), commits again and retries with jittered exponential backoff, up to
``max_attempts``. Several updates given together become one commit.
"""

from __future__ import annotations

import os
import random
import re
import string
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from git import Repo
from git.exc import GitCommandError
from pydantic import BaseModel, ConfigDict, Field, field_validator

from shipyard.core.errors import ConfigError, PermanentError, TransientError
from shipyard.core.redact import redact
from tasks.set_image import Change, SetImageConfig, set_image

__all__ = [
    "DEFAULT_MESSAGE",
    "GitWriteConfig",
    "ImageUpdate",
    "WriteBackResult",
    "WriteBatcher",
    "apply_updates",
    "clone",
    "commit_files",
    "push_updates",
    "render_message",
    "write_back",
]

DEFAULT_MESSAGE = (
    "{app}({environment}): {image} {old_version} -> {new_version}\n"
    "\n"
    "Digest: {digest}\n"
    "Source-Commit: {source_commit}\n"
    "Flow-Run: {flow_run_url}\n"
)
MESSAGE_FIELDS = frozenset(
    {
        "app",
        "environment",
        "image",
        "old",
        "new",
        "old_version",
        "new_version",
        "tag",
        "digest",
        "source_commit",
        "flow_run_url",
        "path",
    }
)
_BASE_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "LC_ALL": "C"}


class GitWriteConfig(BaseModel):
    """How to write to the GitOps repo: branch, author, message, retry bounds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    branch: str = Field("main", description="Branch to push to.")
    author_name: str = Field("Shipyard", description="Commit author and committer name.")
    author_email: str = Field(
        "shipyard@localhost", description="Commit author and committer email."
    )
    message_template: str = Field(
        DEFAULT_MESSAGE,
        description="Commit message; fields: " + ", ".join(sorted(MESSAGE_FIELDS)) + ".",
    )
    flow_run_url: str | None = Field(None, description="Link to the flow run, for the message.")
    max_attempts: int = Field(8, ge=1, le=100, description="Push attempts before giving up.")
    backoff_seconds: float = Field(0.2, ge=0, description="First retry delay; doubles, jittered.")
    backoff_max_seconds: float = Field(5.0, ge=0, description="Cap of one retry delay.")
    depth: int | None = Field(1, ge=1, description="Clone depth; None clones full history.")
    sparse: bool | None = Field(
        None,
        description="Check out only the paths being edited: True, False, or None = when the "
        "branch holds more than sparse_threshold_files files.",
    )
    sparse_threshold_files: int = Field(
        2000, ge=0, description="Automatic sparse checkout above this many files."
    )
    timeout_seconds: float = Field(120.0, gt=0, description="Deadline of one git network call.")

    @field_validator("branch")
    @classmethod
    def _branch(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9._/-]+", value) or ".." in value or value.startswith("-"):
            raise ValueError(f"invalid branch name {value!r}")
        return value

    @field_validator("message_template")
    @classmethod
    def _template(cls, value: str) -> str:
        try:
            names = {f for _, f, _, _ in string.Formatter().parse(value) if f}
        except ValueError as exc:
            raise ValueError(f"message template: {exc}") from None
        unknown = names - MESSAGE_FIELDS
        if unknown:
            raise ValueError(f"message template has unknown fields {sorted(unknown)}")
        return value


class ImageUpdate(BaseModel):
    """One image to set, with the context that goes into the commit message."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    set_image: SetImageConfig = Field(description="What to set where (the pure core's config).")
    app: str = Field("", description="App name, for the message.")
    environment: str = Field("", description="Environment name, for the message.")
    source_commit: str = Field("", description="Source commit the image was built from.")


@dataclass(frozen=True)
class WriteBackResult:
    """The outcome of a write-back: the commit pushed (None when nothing changed)."""

    commit: str | None
    changes: list[Change] = field(default_factory=list)
    attempts: int = 0
    branch: str = "main"

    @property
    def changed(self) -> bool:
        """True when a commit was made and pushed."""
        return self.commit is not None


# --- message ---------------------------------------------------------------------------


def _version(ref: str, image: str) -> str:
    rest = ref[len(image) :] if ref.startswith(image) else ref
    rest = rest.lstrip(":")
    tag, _, digest = rest.partition("@")
    if digest:
        short = digest.split(":", 1)[-1][:12]
        return f"{tag}@{short}" if tag else short
    return tag or rest


def render_message(
    updates: Sequence[tuple[ImageUpdate, list[Change]]], config: GitWriteConfig
) -> str:
    """The commit message for ``updates``: the template per update, batched under a summary.

    Trailer lines whose value is empty (``Digest: ``) are dropped.
    """
    rendered = []
    for update, changes in updates:
        sic = update.set_image
        olds = sorted({c.old for c in changes})
        news = sorted({c.new for c in changes})
        values = {
            "app": update.app or sic.image.rsplit("/", 1)[-1],
            "environment": update.environment or sic.path,
            "image": sic.image,
            "old": ", ".join(olds),
            "new": ", ".join(news),
            "old_version": ", ".join(_version(o, sic.image) for o in olds),
            "new_version": ", ".join(_version(n, sic.image) for n in news),
            "tag": sic.tag or "",
            "digest": sic.digest or "",
            "source_commit": update.source_commit,
            "flow_run_url": config.flow_run_url or "",
            "path": sic.path,
        }
        text = config.message_template.format(**values)
        lines = [ln for ln in text.splitlines() if not re.fullmatch(r"[A-Za-z-]+:\s*", ln)]
        rendered.append("\n".join(lines).strip())
    if len(rendered) == 1:
        return rendered[0] + "\n"
    head = f"shipyard: update {len(rendered)} images\n\n"
    return head + "\n\n".join(f"* {r}" for r in rendered) + "\n"


# --- git layer -------------------------------------------------------------------------


def _env(extra: Mapping[str, str] | None) -> dict[str, str]:
    return {**_BASE_ENV, **(extra or {})}


def _git_error(exc: GitCommandError, action: str) -> Exception:
    """Translate a failed git call into the error split (once, here)."""
    text = redact(f"{exc.stderr or ''} {exc.stdout or ''}".strip())
    low = text.lower()
    transient_race = (
        "non-fast-forward",
        "fetch first",
        "[rejected]",
        "stale info",
        "cannot lock ref",
        "failed to update ref",
        "incorrect old value",
        "failed to lock",
    )
    permanent = (
        "authentication failed",
        "permission denied",
        "could not read username",
        "403",
        "401",
        "protected branch",
        "pre-receive hook declined",
        "repository not found",
        "does not appear to be a git repository",
        "couldn't find remote ref",
        "remote branch",
    )
    network = (
        "could not resolve host",
        "connection refused",
        "connection reset",
        "timed out",
        "early eof",
        "the remote end hung up",
        "503",
        "502",
        "429",
    )
    line = " ".join(text.split())[:300]
    if any(p in low for p in transient_race):
        return _NonFastForward(f"git {action} rejected: {line}")
    if any(p in low for p in permanent):
        return PermanentError(f"git {action} failed: {line}")
    if any(p in low for p in network) or exc.status in (-9, -15):
        return TransientError(f"git {action} failed: {line}")
    return PermanentError(f"git {action} failed: {line}")


class _NonFastForward(TransientError):
    """The branch moved under us; fetch, re-apply and push again."""


def _sparse_dirs(paths: Sequence[str]) -> list[str]:
    out = set()
    for p in paths:
        pp = PurePosixPath(p)
        if pp.suffix in {".yaml", ".yml"} or pp.name == "Kustomization":
            pp = pp.parent
        out.add(pp.as_posix())
    return sorted(out)


def clone(
    url: str,
    dest: str | Path,
    config: GitWriteConfig,
    *,
    paths: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> Repo:
    """Clone ``config.branch`` of ``url`` into ``dest``: shallow, and sparse for large repos.

    When ``paths`` are given and sparse checkout is possible, the clone is blob-less and
    without checkout; then either only the directories of ``paths`` are checked out
    (``sparse=True``, or ``None`` and the branch is large) or everything is. A local path
    is turned into a ``file://`` URL so that ``--depth`` and ``--filter`` are honoured.
    """
    if "://" not in url and not re.match(r"^[\w.-]+@[\w.-]+:", url):
        url = Path(url).resolve().as_uri()
    options = ["--single-branch", f"--branch={config.branch}", "--no-tags"]
    if config.depth is not None:
        options.append(f"--depth={config.depth}")
    sparse_dirs = _sparse_dirs(paths) if config.sparse is not False and paths else []
    if "." in sparse_dirs:
        sparse_dirs = []
    if sparse_dirs:
        options += ["--filter=blob:none", "--no-checkout"]
    timeout = config.timeout_seconds
    try:
        repo = Repo.clone_from(
            url, str(dest), multi_options=options, env=_env(env), kill_after_timeout=timeout
        )
    except GitCommandError as exc:
        raise _git_error(exc, "clone") from None
    repo.git.update_environment(**_env(env))
    if not sparse_dirs:
        return repo
    try:
        sparse = config.sparse
        if sparse is None:
            files = repo.git.ls_tree("-r", "--name-only", "HEAD").count("\n") + 1
            sparse = files > config.sparse_threshold_files
        if sparse:
            repo.git.sparse_checkout("set", "--cone", *sparse_dirs, kill_after_timeout=timeout)
        repo.git.checkout("-q", config.branch, kill_after_timeout=timeout)
    except GitCommandError as exc:
        raise _git_error(exc, "checkout") from None
    return repo


def commit_files(
    repo: Repo,
    files: Sequence[str],
    message: str,
    *,
    author_name: str,
    author_email: str,
    verify: bool = False,
) -> str:
    """Stage exactly ``files`` and commit them; returns the new commit's sha.

    Uses the ``git`` binary so the repo's own configuration (e.g. ``commit.gpgsign``)
    applies; ``verify`` runs the repo's commit hooks (a fresh clone has none).
    """
    ident = {
        "GIT_AUTHOR_NAME": author_name,
        "GIT_AUTHOR_EMAIL": author_email,
        "GIT_COMMITTER_NAME": author_name,
        "GIT_COMMITTER_EMAIL": author_email,
    }
    with repo.git.custom_environment(**ident):
        repo.git.add("--", *files)
        repo.git.commit("-q", *([] if verify else ["--no-verify"]), "-m", message)
    return str(repo.head.commit.hexsha)


def apply_updates(
    workdir: str | Path, updates: Sequence[ImageUpdate]
) -> list[tuple[ImageUpdate, list[Change]]]:
    """Run the pure core for every update in ``workdir``; the ones that changed something.

    Every update is planned first so one bad update writes nothing at all.
    """
    for update in updates:  # validate all before writing any
        set_image(workdir, update.set_image, write=False)
    out = []
    for update in updates:
        result = set_image(workdir, update.set_image)
        if result.changed:
            out.append((update, result.changes))
    return out


def write_back(
    url: str,
    updates: Sequence[ImageUpdate],
    config: GitWriteConfig,
    *,
    env: Mapping[str, str] | None = None,
    workdir: str | Path | None = None,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> WriteBackResult:
    """Apply ``updates`` to ``config.branch`` of ``url`` as one commit and push it.

    Nothing to change -> ``commit=None`` and no push. Never force-pushes: a rejected push
    is retried on the new tip (fetch, reset, re-apply, commit) with jittered backoff, up
    to ``config.max_attempts``; then TransientError. A concurrent change of the very image
    being set is a PermanentError (conflict) rather than a silent overwrite.
    """
    if not updates:
        return WriteBackResult(None, [], 0, config.branch)
    paths = [u.set_image.path for u in updates]
    with _workspace(workdir) as dest:
        repo = clone(url, dest, config, paths=paths, env=env)
        try:
            return push_updates(repo, updates, config, sleep=sleep, rng=rng)
        finally:
            repo.close()


def push_updates(
    repo: Repo,
    updates: Sequence[ImageUpdate],
    config: GitWriteConfig,
    *,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> WriteBackResult:
    """Apply, commit and push ``updates`` in an existing clone ``repo`` (see write_back)."""
    rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
    first_seen: dict[int, set[tuple[str, str]]] = {}
    ref = f"refs/remotes/origin/{config.branch}"
    last_error: Exception | None = None
    for attempt in range(1, config.max_attempts + 1):
        applied = apply_updates(str(repo.working_tree_dir or "."), updates)
        _check_conflicts(updates, applied, first_seen)
        if not applied:
            return WriteBackResult(None, [], attempt, config.branch)
        files = sorted({c.file for _, changes in applied for c in changes})
        message = render_message(applied, config)
        sha = commit_files(
            repo, files, message, author_name=config.author_name, author_email=config.author_email
        )
        try:
            repo.git.push(
                "--porcelain",
                "origin",
                f"HEAD:refs/heads/{config.branch}",
                kill_after_timeout=config.timeout_seconds,
            )
        except GitCommandError as exc:
            error = _git_error(exc, "push")
            if not isinstance(error, TransientError):
                raise error from None
            last_error = error
        else:
            changes = [c for _, cs in applied for c in cs]
            return WriteBackResult(sha, changes, attempt, config.branch)
        if attempt == config.max_attempts:
            break
        cap = min(config.backoff_max_seconds, config.backoff_seconds * 2 ** (attempt - 1))
        sleep(cap * (0.5 + rng.random()))
        _refresh(repo, config, ref)
    raise TransientError(
        f"push to {config.branch} still rejected after {config.max_attempts} attempts",
        hint=str(last_error) if last_error else None,
    )


def _refresh(repo: Repo, config: GitWriteConfig, ref: str) -> None:
    """Move the working tree to the remote's new tip (drops our unpushed commit)."""
    depth = [f"--depth={config.depth}"] if config.depth is not None else []
    try:
        repo.git.fetch(
            *depth,
            "origin",
            f"+refs/heads/{config.branch}:{ref}",
            kill_after_timeout=config.timeout_seconds,
        )
    except GitCommandError as exc:
        raise _git_error(exc, "fetch") from None
    repo.git.reset("-q", "--hard", ref)


def _check_conflicts(
    updates: Sequence[ImageUpdate],
    applied: list[tuple[ImageUpdate, list[Change]]],
    first_seen: dict[int, set[tuple[str, str]]],
) -> None:
    """Refuse to overwrite a value someone else changed between our attempts."""
    for update, changes in applied:
        key = next(i for i, u in enumerate(updates) if u is update)
        seen = {(c.file, c.old) for c in changes}
        if key not in first_seen:
            first_seen[key] = seen
            continue
        moved = sorted(seen - first_seen[key])
        if moved:
            file, old = moved[0]
            raise PermanentError(
                f"conflict: {update.set_image.image} in {file} was changed concurrently "
                f"to {old}; refusing to overwrite it with {update.set_image.target}"
            )
    for i, _ in enumerate(updates):
        first_seen.setdefault(i, set())


@contextmanager
def _workspace(workdir: str | Path | None) -> Iterator[Path]:
    if workdir is not None:
        path = Path(workdir)
        path.mkdir(parents=True, exist_ok=True)
        yield path / "checkout"
        return
    with tempfile.TemporaryDirectory(prefix="shipyard-gitops-") as tmp:
        yield Path(tmp) / "checkout"


def commit_local(
    repo_dir: str | Path,
    files: Sequence[str],
    message: str,
    *,
    author_name: str | None = None,
    author_email: str | None = None,
) -> str:
    """Commit ``files`` in an existing working tree (the CLI's ``--commit``).

    Author defaults to the repo's own ``user.name``/``user.email``, then to Shipyard.
    """
    try:
        repo = Repo(str(repo_dir), search_parent_directories=True)
    except Exception as exc:  # noqa: BLE001 - gitpython raises several kinds here
        raise ConfigError(f"{repo_dir} is not a git working tree ({type(exc).__name__})") from None
    try:
        reader = repo.config_reader()
        name = author_name or str(reader.get_value("user", "name", "Shipyard"))
        email = author_email or str(reader.get_value("user", "email", "shipyard@localhost"))
        root = Path(repo.working_tree_dir or repo_dir).resolve()
        rels = [os.path.relpath(Path(repo_dir).resolve() / f, root) for f in files]
        with repo.git.custom_environment(**_BASE_ENV):
            return commit_files(
                repo, rels, message, author_name=name, author_email=email, verify=True
            )
    except GitCommandError as exc:
        raise _git_error(exc, "commit") from None
    finally:
        repo.close()


class WriteBatcher:
    """Coalesce updates that arrive together (from threads of one process) into one commit.

    The first caller becomes the leader: it waits ``window_seconds`` for more updates, then
    writes them all with one call of ``write`` (e.g. ``partial(write_back, url,
    config=...)``) while the others wait for that result. If a batch fails permanently
    (one bad update), each of its updates is retried alone, so one bad update cannot sink
    the rest. Every caller gets the result of the commit that carried its update.
    """

    def __init__(
        self,
        write: Callable[[list[ImageUpdate]], WriteBackResult],
        *,
        window_seconds: float = 0.05,
        max_batch: int = 100,
    ) -> None:
        self._write = write
        self._window = window_seconds
        self._max = max_batch
        self._lock = threading.Lock()
        self._pending: list[tuple[ImageUpdate, Future[WriteBackResult]]] = []
        self._leading = False
        self.commits = 0

    def submit(self, update: ImageUpdate) -> WriteBackResult:
        """Queue ``update`` and block until the commit carrying it was pushed (or failed)."""
        future: Future[WriteBackResult] = Future()
        with self._lock:
            self._pending.append((update, future))
            lead = not self._leading
            self._leading = True
        if lead:
            self._lead()
        return future.result()

    def _lead(self) -> None:
        while True:
            time.sleep(self._window)
            with self._lock:
                batch, self._pending = self._pending[: self._max], self._pending[self._max :]
                if not batch:
                    self._leading = False
                    return
            self._run(batch)

    def _run(self, batch: list[tuple[ImageUpdate, Future[WriteBackResult]]]) -> None:
        try:
            result = self._write([u for u, _ in batch])
        except PermanentError as exc:
            if len(batch) == 1:
                batch[0][1].set_exception(exc)
                return
            for update, future in batch:
                self._run([(update, future)])
            return
        except BaseException as exc:  # noqa: BLE001 - handed to every waiting caller
            for _, future in batch:
                future.set_exception(exc)
            return
        with self._lock:
            self.commits += 1 if result.commit else 0
        for _, future in batch:
            future.set_result(result)
