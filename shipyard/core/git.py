"""Git primitives shared by every step that reads or writes a GitOps repo.

One copy of what each git-touching step needs: the settings of a clone and of a write
(:class:`CloneConfig`, :class:`GitWriteConfig`), a shallow (and, for large repos,
sparse) :func:`clone`, :func:`commit_files`, :func:`push_head` and :func:`fetch_branch`
with git's failures translated once, here, into the error split
(:func:`translate_error`: a lost push race is transient, a refused credential is not),
the jittered backoff of the never-force push loops, the settings of a hosting API
(:class:`HostingApi`) that blocks build and the pull-request step uses, and commit
message trailers (:func:`add_trailers`, :func:`approval_trailers`: ``Approved-by:``,
``Reason:``) placed where ``git interpret-trailers`` reads them.

Built on gitpython and the real ``git`` binary. No Prefect, no blocks, no steps.
"""

from __future__ import annotations

import os
import random
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Annotated, Literal

from git import Repo
from git.exc import GitCommandError
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from shipyard.core.errors import ConfigError, PermanentError, TransientError
from shipyard.core.redact import redact

__all__ = [
    "DEFAULT_MESSAGE",
    "GIT_ENV",
    "MESSAGE_FIELDS",
    "CloneConfig",
    "GitWriteConfig",
    "HostingApi",
    "NonFastForward",
    "Trailers",
    "add_trailers",
    "approval_trailers",
    "author_env",
    "backoff_delay",
    "clone",
    "clone_url",
    "commit_files",
    "commit_local",
    "fetch_branch",
    "git_env",
    "push_head",
    "translate_error",
    "validate_trailers",
]

GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "LC_ALL": "C"}
"""Environment every git call runs with: never prompt, stable (C locale) messages."""

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
TRAILER_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")
"""A trailer key git recognises (``Approved-by``, ``Reason``): letters, digits, dashes."""
TRAILER_VALUE_MAX = 500
_TRAILER_LINE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*:\s")


# --- message trailers ----------------------------------------------------------------------


def _fold(value: str) -> str:
    """One line of at most :data:`TRAILER_VALUE_MAX` characters: a trailer value must not
    start a new line, or git would read the rest as message text (or as another trailer)."""
    return " ".join(value.split())[:TRAILER_VALUE_MAX]


def validate_trailers(trailers: Mapping[str, str]) -> dict[str, str]:
    """``trailers`` with valid keys and values folded to one line; ConfigError otherwise.

    Empty values are dropped (an empty ``Reason:`` says nothing a reader can use).
    """
    out: dict[str, str] = {}
    for key, value in trailers.items():
        if not TRAILER_KEY.match(key):
            raise ConfigError(f"invalid commit trailer key {key!r}: letters, digits and dashes")
        folded = _fold(value)
        if folded:
            out[key] = folded
    return out


def _trailers_field(value: dict[str, str]) -> dict[str, str]:
    """:func:`validate_trailers` for a pydantic field (its errors become validation errors)."""
    try:
        return validate_trailers(value)
    except ConfigError as exc:
        raise ValueError(exc.message) from None


Trailers = Annotated[dict[str, str], AfterValidator(_trailers_field)]
"""A config field of commit trailers, checked and folded by :func:`validate_trailers`."""


def approval_trailers(approver: str, reason: str) -> dict[str, str]:
    """The trailers of an approved promotion: ``Approved-by: <who>`` and ``Reason: <why>``."""
    return validate_trailers({"Approved-by": approver, "Reason": reason})


def add_trailers(message: str, trailers: Mapping[str, str] | Sequence[tuple[str, str]]) -> str:
    """``message`` with ``trailers`` at its end, where ``git interpret-trailers`` finds them.

    When the message already ends in a block of ``Key: value`` lines (the default template's
    ``Digest:``/``Source-Commit:`` lines), the new ones join that block; otherwise they
    start one after a blank line. A pair already present is not repeated. Keys and values
    are validated and folded to one line (:func:`validate_trailers`).
    """
    pairs = list(trailers.items()) if isinstance(trailers, Mapping) else list(trailers)
    lines = message.rstrip("\n").split("\n") if message.strip() else []
    block_start = len(lines)
    while block_start > 0 and _TRAILER_LINE.match(lines[block_start - 1]):
        block_start -= 1
    in_block = block_start < len(lines) and block_start > 0 and not lines[block_start - 1]
    existing = set(lines[block_start:]) if in_block else set()
    new = []
    for key, value in pairs:
        for k, v in validate_trailers({key: value}).items():
            line = f"{k}: {v}"
            if line not in existing:
                existing.add(line)
                new.append(line)
    if not new:
        return message
    if not in_block:
        lines.append("")
    return "\n".join([*lines, *new]) + "\n"


# --- settings ------------------------------------------------------------------------------


class CloneConfig(BaseModel):
    """Which branch to clone and how: depth, sparse checkout, network deadline."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    branch: str = Field("main", description="Branch to push to.")
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


class GitWriteConfig(CloneConfig):
    """How to write to the GitOps repo: branch, author, message, retry bounds.

    Lives in the foundation because blocks build it from their settings
    (``GitOpsRepository.write_config()``) and the write steps consume it.
    """

    author_name: str = Field("Shipyard", description="Commit author and committer name.")
    author_email: str = Field(
        "shipyard@localhost", description="Commit author and committer email."
    )
    message_template: str = Field(
        DEFAULT_MESSAGE,
        description="Commit message; fields: " + ", ".join(sorted(MESSAGE_FIELDS)) + ".",
    )
    flow_run_url: str | None = Field(None, description="Link to the flow run, for the message.")
    trailers: Trailers = Field(
        default_factory=dict,
        description="Trailers every commit of this write ends with, e.g. "
        "{'Approved-by': 'ana', 'Reason': 'release 2.1'} (see approval_trailers).",
    )
    max_attempts: int = Field(8, ge=1, le=100, description="Push attempts before giving up.")
    backoff_seconds: float = Field(0.2, ge=0, description="First retry delay; doubles, jittered.")
    backoff_max_seconds: float = Field(5.0, ge=0, description="Cap of one retry delay.")

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


@dataclass(frozen=True)
class HostingApi:
    """Where the pull/merge request API of a repo is and how to authenticate to it."""

    kind: Literal["github", "gitlab"]
    base_url: str
    project: str
    headers: dict[str, str] = field(default_factory=dict)


# --- environment and errors ------------------------------------------------------------------


def git_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """:data:`GIT_ENV` plus ``extra`` (e.g. the credentials a block provides)."""
    return {**GIT_ENV, **(extra or {})}


def author_env(name: str, email: str) -> dict[str, str]:
    """Environment that makes ``name <email>`` the author and committer of a commit."""
    return {
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_COMMITTER_NAME": name,
        "GIT_COMMITTER_EMAIL": email,
    }


def clone_url(url: str) -> str:
    """``url`` as git should fetch it: a local path becomes a ``file://`` URL.

    Through ``file://`` git honours ``--depth`` and ``--filter`` (a plain path is cloned
    by hard links, whole).
    """
    if "://" not in url and not re.match(r"^[\w.-]+@[\w.-]+:", url):
        return Path(url).resolve().as_uri()
    return url


class NonFastForward(TransientError):
    """The branch moved under us; fetch, re-apply and push again."""


_RACE = (
    "non-fast-forward",
    "fetch first",
    "[rejected]",
    "stale info",
    "cannot lock ref",
    "failed to update ref",
    "incorrect old value",
    "failed to lock",
)
_PERMANENT = (
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
_NETWORK = (
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


def translate_error(exc: GitCommandError, action: str) -> Exception:
    """Translate a failed git call into the error split (once, here).

    A lost race is :class:`NonFastForward` (transient), refused credentials or a missing
    repo/branch are permanent, network trouble is transient; the rest is permanent. The
    message is redacted.
    """
    text = redact(f"{exc.stderr or ''} {exc.stdout or ''}".strip())
    low = text.lower()
    line = " ".join(text.split())[:300]
    if any(p in low for p in _RACE):
        return NonFastForward(f"git {action} rejected: {line}")
    if any(p in low for p in _PERMANENT):
        return PermanentError(f"git {action} failed: {line}")
    if any(p in low for p in _NETWORK) or exc.status in (-9, -15):
        return TransientError(f"git {action} failed: {line}")
    return PermanentError(f"git {action} failed: {line}")


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait before push attempt ``attempt + 1``: doubling from ``base``, capped
    at ``cap``, jittered to 50-150% so racing writers spread out."""
    rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
    return min(cap, base * 2 ** (attempt - 1)) * (0.5 + rng.random())


# --- clone, commit, push, fetch ----------------------------------------------------------------


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
    config: CloneConfig,
    *,
    paths: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> Repo:
    """Clone ``config.branch`` of ``url`` into ``dest``: shallow, and sparse for large repos.

    When ``paths`` are given and sparse checkout is possible, the clone is blob-less and
    without checkout; then either only the directories of ``paths`` are checked out
    (``sparse=True``, or ``None`` and the branch is large) or everything is. Every later
    git call on the returned repo runs with ``env`` (credentials) too.
    """
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
            clone_url(url),
            str(dest),
            multi_options=options,
            env=git_env(env),
            kill_after_timeout=timeout,
        )
    except GitCommandError as exc:
        raise translate_error(exc, "clone") from None
    repo.git.update_environment(**git_env(env))
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
        raise translate_error(exc, "checkout") from None
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
    with repo.git.custom_environment(**author_env(author_name, author_email)):
        repo.git.add("--", *files)
        repo.git.commit("-q", *([] if verify else ["--no-verify"]), "-m", message)
    return str(repo.head.commit.hexsha)


def push_head(repo: Repo, branch: str, timeout_seconds: float) -> None:
    """Push HEAD to ``branch`` of origin, never forced; a lost race is NonFastForward."""
    try:
        repo.git.push(
            "--porcelain", "origin", f"HEAD:refs/heads/{branch}", kill_after_timeout=timeout_seconds
        )
    except GitCommandError as exc:
        raise translate_error(exc, "push") from None


def fetch_branch(
    repo: Repo, branch: str, timeout_seconds: float, *, depth: int | None = None
) -> str:
    """Fetch ``branch`` of origin into its remote-tracking ref; returns that ref's name."""
    ref = f"refs/remotes/origin/{branch}"
    shallow = [f"--depth={depth}"] if depth is not None else []
    try:
        repo.git.fetch(
            *shallow, "origin", f"+refs/heads/{branch}:{ref}", kill_after_timeout=timeout_seconds
        )
    except GitCommandError as exc:
        raise translate_error(exc, "fetch") from None
    return ref


def commit_local(
    repo_dir: str | Path,
    files: Sequence[str],
    message: str,
    *,
    author_name: str | None = None,
    author_email: str | None = None,
) -> str:
    """Commit ``files`` (relative to ``repo_dir``) in an existing working tree.

    Author defaults to the repo's own ``user.name``/``user.email``, then to Shipyard; the
    repo's commit hooks run.
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
        with repo.git.custom_environment(**GIT_ENV):
            return commit_files(
                repo, rels, message, author_name=name, author_email=email, verify=True
            )
    except GitCommandError as exc:
        raise translate_error(exc, "commit") from None
    finally:
        repo.close()
