"""Commit image updates to a GitOps repo and push them without losing anyone's update.

Three layers, as every step: :class:`~shipyard.core.git.GitWriteConfig` (typed,
validated; in the foundation because blocks build it), this core (:func:`write_back`,
:func:`push_updates`) on the git primitives of :mod:`shipyard.core.git`, and the thin
Prefect task ``commit_and_push`` in :mod:`tasks.steps.gitops`.

Pushing is optimistic and never forced. On a non-fast-forward (or a ref lock lost to
another writer) :func:`write_back` fetches the new tip, resets to it, *re-runs the pure
edit* on that tip (so a concurrent change to the same file merges naturally, and a
concurrent change of the very same image is reported as a conflict instead of being
overwritten), commits again and retries with jittered exponential backoff, up to
``max_attempts``. Several updates given together become one commit.
"""

from __future__ import annotations

import random
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from git import Repo
from pydantic import BaseModel, ConfigDict, Field

from shipyard.core.errors import PermanentError, TransientError
from shipyard.core.git import (
    GitWriteConfig,
    Trailers,
    add_trailers,
    backoff_delay,
    clone,
    commit_files,
    fetch_branch,
    push_head,
    validate_trailers,
)
from shipyard.core.oci import ImageRef, split_reference
from tasks.set_image import Change, SetImageConfig, set_image

__all__ = [
    "ImageUpdate",
    "WriteBackResult",
    "WriteBatcher",
    "apply_updates",
    "push_updates",
    "render_message",
    "write_back",
]


class ImageUpdate(BaseModel):
    """One image to set, with the context that goes into the commit message."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    set_image: SetImageConfig = Field(description="What to set where (the pure core's config).")
    app: str = Field("", description="App name, for the message.")
    environment: str = Field("", description="Environment name, for the message.")
    source_commit: str = Field("", description="Source commit the image was built from.")
    trailers: Trailers = Field(
        default_factory=dict,
        description="Trailers the commit carrying this update ends with, e.g. a promotion's "
        "{'Approved-by': <who>, 'Reason': <why>} (shipyard.core.git.approval_trailers).",
    )

    def with_trailers(self, trailers: Mapping[str, str]) -> ImageUpdate:
        """This update with ``trailers`` added (e.g. once an approval has been given)."""
        return self.model_copy(
            update={"trailers": validate_trailers({**self.trailers, **trailers})}
        )


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
    """``ref`` for a commit message: its tag and a 12-digit digest (``1.2@0123456789ab``).

    A reference to another name (a kustomize ``newName``) keeps its name in front.
    """
    parts = split_reference(ref)
    head = (parts.tag or "") if parts.name == image else str(ImageRef(parts.name, parts.tag))
    if parts.digest:
        short = parts.digest.split(":", 1)[-1][:12]
        return f"{head}@{short}" if head else short
    return head


def render_message(
    updates: Sequence[tuple[ImageUpdate, list[Change]]], config: GitWriteConfig
) -> str:
    """The commit message for ``updates``: the template per update, batched under a summary.

    Trailer lines whose value is empty (``Digest: ``) are dropped. The write's
    ``config.trailers`` and every update's own ``trailers`` end the message as git
    trailers (``git interpret-trailers --parse`` lists them), once each.
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
    trailers = [*config.trailers.items()]
    for update, _ in updates:
        trailers.extend(update.trailers.items())
    if len(rendered) == 1:
        return add_trailers(rendered[0] + "\n", trailers)
    head = f"shipyard: update {len(rendered)} images\n\n"
    return add_trailers(head + "\n\n".join(f"* {r}" for r in rendered) + "\n", trailers)


# --- write-back ------------------------------------------------------------------------


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
            push_head(repo, config.branch, config.timeout_seconds)
        except TransientError as error:
            last_error = error
        else:
            changes = [c for _, cs in applied for c in cs]
            return WriteBackResult(sha, changes, attempt, config.branch)
        if attempt == config.max_attempts:
            break
        sleep(backoff_delay(attempt, config.backoff_seconds, config.backoff_max_seconds, rng))
        _refresh(repo, config)
    raise TransientError(
        f"push to {config.branch} still rejected after {config.max_attempts} attempts",
        hint=str(last_error) if last_error else None,
    )


def _refresh(repo: Repo, config: GitWriteConfig) -> None:
    """Move the working tree to the remote's new tip (drops our unpushed commit)."""
    ref = fetch_branch(repo, config.branch, config.timeout_seconds, depth=config.depth)
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
