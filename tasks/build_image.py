"""Build step: an image from an app repo at one exact commit, through any Docker Engine API.

Three layers: :class:`BuildImageConfig` (validated input), a pure core (tags, OCI
labels, the build-input fingerprint, the build-log reader that finds the failing step),
and I/O at the edges (:func:`fetch_commit`, :func:`run_build`). No Prefect here: the
task is :func:`tasks.steps.image.build_image`, which hands its run logger to
:func:`run_build` so the build output reaches the Prefect UI.

Re-delivering a commit must be cheap: the image carries a fingerprint of its build
inputs as a label, so when the registry already holds ``<repo>:<commit>`` with the same
fingerprint the build and the push are skipped (two small registry requests: manifest,
then config). The fingerprint covers the commit and every build setting; it does not
cover a mutable base-image tag, so pin bases by digest when that matters.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import tempfile
import time
from collections import deque
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from git import GitCommandError, Repo
from pydantic import BaseModel, ConfigDict, Field, field_validator

from shipyard.core.engine import DockerEngine, DockerEngineAccess
from shipyard.core.errors import ConfigError, PermanentError, TransientError
from shipyard.core.oci import NAME_RE, TAG_RE, split_reference, split_repository
from shipyard.core.redact import redact
from shipyard.core.registry import RegistryAccess, RegistryAuth, open_client

Logger = logging.Logger | logging.LoggerAdapter[Any]

FINGERPRINT_LABEL = "dev.shipyard.build-fingerprint"
# The source commit's committer time (ISO 8601): a delivery's change time, for lead time.
# Not part of the fingerprint: it follows from the commit.
COMMITTED_LABEL = "dev.shipyard.source.committed-at"
FINGERPRINT_VERSION = "1"
LOG_TAIL = 20
_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
_STEP = re.compile(r"^(STEP \d+/\d+: .*|Step \d+/\d+ : .*)$")
_TRANSIENT_GIT = (
    "connection refused",
    "timed out",
    "could not resolve",
    "connection reset",
    "unable to access",
    "early eof",
    "the remote end hung up",
)


class BuildImageConfig(BaseModel):
    """What to build: source repo and commit, Dockerfile settings, and the image name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    repo_url: str = Field(description="Git URL of the application source repository.")
    commit: str = Field(description="Full commit SHA to build (an exact commit, never a branch).")
    repository: str = Field(
        description="Image repository without tag, e.g. 127.0.0.1:5000/shop/cart."
    )
    dockerfile: str = Field("Dockerfile", description="Dockerfile path inside the repo.")
    context: str = Field(".", description="Build context directory inside the repo.")
    target: str | None = Field(None, description="Multi-stage build target.")
    build_args: dict[str, str] = Field(default_factory=dict, description="Docker build args.")
    platform: str | None = Field(None, description="Target platform, e.g. linux/amd64.")
    extra_tags: list[str] = Field(default_factory=list, description="Tags besides the commit SHA.")
    cache_from: list[str] = Field(
        default_factory=list, description="Images whose layers the engine may reuse."
    )
    skip_if_present: bool = Field(
        True, description="Skip build and push when the registry has this commit's image."
    )

    @field_validator("commit")
    @classmethod
    def _full_sha(cls, value: str) -> str:
        value = value.strip().lower()
        if not _SHA.match(value):
            raise ValueError(f"commit {value!r} must be a full 40-character SHA")
        return value

    @field_validator("repository")
    @classmethod
    def _repository(cls, value: str) -> str:
        ref = split_reference(value)
        if ref.tag is not None or ref.digest is not None or not NAME_RE.match(value):
            raise ValueError(f"image repository {value!r} must be lower-case and have no tag")
        return value

    @field_validator("dockerfile", "context")
    @classmethod
    def _inside_repo(cls, value: str) -> str:
        p = PurePosixPath(value)
        if p.is_absolute() or ".." in p.parts:
            raise ValueError(f"path {value!r} must be relative and stay inside the repo")
        return value

    @field_validator("extra_tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        for tag in value:
            if not TAG_RE.match(tag):
                raise ValueError(f"tag {tag!r} is not a valid image tag")
        return value

    @property
    def registry(self) -> str:
        """The registry host[:port] of :attr:`repository`."""
        return split_repository(self.repository)[0]

    @property
    def path(self) -> str:
        """The repository path inside the registry (``shop/cart``)."""
        return split_repository(self.repository)[1]


class BuildImageResult(BaseModel):
    """What was built (or found already built) and how to refer to it."""

    repository: str
    commit: str
    tags: list[str] = Field(description="Tags the image carries locally (commit SHA first).")
    local_reference: str = Field(description="repository:commit")
    image_id: str | None = Field(None, description="Engine image ID (None when reused).")
    fingerprint: str = Field(description="Digest of the build inputs, kept as a label.")
    labels: dict[str, str] = Field(default_factory=dict)
    reused: bool = Field(False, description="The registry already had it: nothing was built.")
    digest: str | None = Field(None, description="Registry digest (set when reused).")
    reference: str | None = Field(None, description="repository@digest (set when reused).")
    duration_seconds: float = 0.0
    log_tail: list[str] = Field(default_factory=list)


# --- pure core ---------------------------------------------------------------------------


def image_tags(config: BuildImageConfig) -> list[str]:
    """The commit SHA first, then the extra tags, without duplicates."""
    return list(dict.fromkeys([config.commit, *config.extra_tags]))


def build_fingerprint(config: BuildImageConfig) -> str:
    """A stable digest of everything that determines the image's content.

    Extra tags and cache sources change nothing in the image, so they are left out.
    """
    body = {
        "v": FINGERPRINT_VERSION,
        "repo": public_url(config.repo_url),
        "commit": config.commit,
        "dockerfile": config.dockerfile,
        "context": config.context,
        "target": config.target,
        "build_args": dict(sorted(config.build_args.items())),
        "platform": config.platform,
    }
    return "sha256:" + hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def public_url(url: str) -> str:
    """``url`` without user:password@ (labels are public; credentials are not)."""
    return re.sub(r"(?<=://)[^/@\s]+@", "", url)


def oci_labels(config: BuildImageConfig, created: datetime) -> dict[str, str]:
    """OCI annotations (revision, source, created) plus the build fingerprint."""
    return {
        "org.opencontainers.image.revision": config.commit,
        "org.opencontainers.image.source": public_url(config.repo_url),
        "org.opencontainers.image.created": created.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        FINGERPRINT_LABEL: build_fingerprint(config),
    }


def labels_of(image_config: Mapping[str, Any]) -> dict[str, str]:
    """Labels from an image config blob (``config.Labels``; absent means none)."""
    inner = image_config.get("config") or image_config.get("container_config") or {}
    labels = inner.get("Labels") or {}
    return {str(k): str(v) for k, v in labels.items()}


def is_reusable(image_config: Mapping[str, Any], fingerprint: str) -> bool:
    """True when an existing image was built from exactly these inputs."""
    return labels_of(image_config).get(FINGERPRINT_LABEL) == fingerprint


class BuildLog:
    """Reads the engine's build stream: lines to log, the current step, the error.

    Engines send ``{"stream": ...}`` chunks (not always whole lines), ``{"aux": {"ID"}}``
    with the image ID, and ``{"error"/"errorDetail"}`` when a step fails.
    """

    def __init__(self, keep: int = LOG_TAIL) -> None:
        self.step: str | None = None
        self.tail: deque[str] = deque(maxlen=keep)
        self.error: str | None = None
        self.image_id: str | None = None
        self._partial = ""

    def feed(self, event: Mapping[str, Any]) -> list[str]:
        """Consume one decoded event; return the complete log lines it finished."""
        lines: list[str] = []
        if "stream" in event:
            text = self._partial + str(event["stream"])
            *complete, self._partial = text.split("\n")
            for line in complete:
                lines.append(self._line(line))
        if isinstance(event.get("aux"), Mapping) and event["aux"].get("ID"):
            self.image_id = str(event["aux"]["ID"])
        if event.get("error") or event.get("errorDetail"):
            detail = event.get("errorDetail") or {}
            self.error = str(detail.get("message") or event.get("error")).strip()
        return lines

    def _line(self, line: str) -> str:
        line = line.rstrip("\r")
        if _STEP.match(line.strip()):
            self.step = line.strip()
        if line.strip():
            self.tail.append(line)
        return line

    def finish(self) -> list[str]:
        """Flush a last line that had no newline."""
        if self._partial:
            line, self._partial = self._line(self._partial), ""
            return [line]
        return []

    def failure(self) -> str:
        """A message quoting the failing step and the last lines before it failed."""
        step = self.step or "unknown step"
        last = " | ".join(list(self.tail)[-5:])
        return f"build failed at {step}: {self.error}; last output: {last}"


# --- I/O edges -----------------------------------------------------------------------------


def fetch_commit(repo_url: str, commit: str, dest: Path) -> Path:
    """Check out exactly ``commit`` of ``repo_url`` into ``dest`` (shallow when possible).

    Fetching one commit by SHA needs a server allowing it (protocol v2 servers do); a
    full fetch is the fallback. Unreachable remotes are transient; a commit the remote
    does not have is permanent.
    """
    dest.mkdir(parents=True, exist_ok=True)
    repo = Repo.init(dest)
    try:
        remote = repo.create_remote("origin", repo_url)
        try:
            repo.git.fetch("--depth", "1", "origin", commit)
        except GitCommandError:
            remote.fetch()
        repo.git.checkout("--detach", commit)
    except GitCommandError as exc:
        message = redact(" ".join(str(exc.stderr or exc).split()))
        if any(marker in message.lower() for marker in _TRANSIENT_GIT):
            raise TransientError(f"cannot fetch {public_url(repo_url)}: {message}") from None
        raise PermanentError(
            f"cannot check out commit {commit} of {public_url(repo_url)}: {message}"
        ) from None
    finally:
        repo.close()
    return dest


def committed_at(checkout: Path) -> str:
    """The committer time of the checked-out commit, ISO 8601 in UTC."""
    with Repo(checkout) as repo:
        moment = repo.head.commit.committed_datetime
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def find_existing(
    config: BuildImageConfig, registry: RegistryAccess
) -> tuple[str, dict[str, str]] | None:
    """``(digest, labels)`` of the registry's ``<repo>:<commit>`` if it has these inputs."""
    with open_client(registry) as client:
        found = client.image_config(config.path, config.commit, config.platform)
    if found is None:
        return None
    digest, image_config = found
    if not is_reusable(image_config, build_fingerprint(config)):
        return None
    return digest, labels_of(image_config)


def run_build(
    config: BuildImageConfig,
    docker_host: DockerEngineAccess | None = None,
    registry: RegistryAccess | None = None,
    *,
    log: Logger | None = None,
) -> BuildImageResult:
    """Build (or reuse) the image for ``config``; see the module docstring.

    ``docker_host`` defaults to ``$DOCKER_HOST``, ``registry`` to anonymous access (plain
    HTTP on loopback); build output and progress go to ``log`` (a run logger, say).
    """
    log = log or logging.getLogger("shipyard.build")
    started = time.monotonic()
    fingerprint = build_fingerprint(config)
    tags = image_tags(config)
    local_ref = f"{config.repository}:{config.commit}"
    if registry is None:
        registry = RegistryAuth.for_registry(config.registry)
    if config.skip_if_present:
        existing = find_existing(config, registry)
        if existing is not None:
            digest, labels = existing
            log.info("%s already in the registry as %s: build skipped", local_ref, digest)
            return BuildImageResult(
                repository=config.repository,
                commit=config.commit,
                tags=tags,
                local_reference=local_ref,
                fingerprint=fingerprint,
                labels=labels,
                reused=True,
                digest=digest,
                reference=f"{config.repository}@{digest}",
                duration_seconds=time.monotonic() - started,
            )
    client = (docker_host or DockerEngine()).get_client()
    labels = oci_labels(config, datetime.now(UTC))
    with tempfile.TemporaryDirectory(prefix="shipyard-build-") as tmp:
        checkout = fetch_commit(config.repo_url, config.commit, Path(tmp) / "src")
        labels[COMMITTED_LABEL] = committed_at(checkout)
        context = (checkout / config.context).resolve()
        dockerfile = (checkout / config.dockerfile).resolve()
        if not context.is_dir():
            raise PermanentError(f"build context {config.context!r} not found at {config.commit}")
        if not dockerfile.is_file():
            raise PermanentError(f"Dockerfile {config.dockerfile!r} not found at {config.commit}")
        if not dockerfile.is_relative_to(context):
            raise ConfigError(
                f"Dockerfile {config.dockerfile!r} must be inside the context {config.context!r}"
            )
        build_log = _stream_build(
            client,
            log,
            path=str(context),
            dockerfile=str(dockerfile.relative_to(context)),
            tag=local_ref,
            labels=labels,
            buildargs=config.build_args or None,
            target=config.target,
            platform=config.platform,
            cache_from=config.cache_from or None,
            rm=True,
            forcerm=True,
            decode=True,
        )
    image_id = build_log.image_id or _image_id(client, local_ref)
    for tag in tags[1:]:
        client.api.tag(image_id, config.repository, tag)
    log.info("built %s (%s) in %.1fs", local_ref, image_id, time.monotonic() - started)
    return BuildImageResult(
        repository=config.repository,
        commit=config.commit,
        tags=tags,
        local_reference=local_ref,
        image_id=image_id,
        fingerprint=fingerprint,
        labels=labels,
        duration_seconds=time.monotonic() - started,
        log_tail=list(build_log.tail),
    )


def _stream_build(client: Any, log: Any, **kwargs: Any) -> BuildLog:
    import requests
    from docker.errors import APIError, BuildError, DockerException

    build_log = BuildLog()
    try:
        events: Iterable[Mapping[str, Any]] = client.api.build(**kwargs)
        for event in events:
            for line in build_log.feed(event):
                log.info("%s", line)
        for line in build_log.finish():
            log.info("%s", line)
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise TransientError(f"Docker Engine API failed during the build: {exc}") from exc
    except (APIError, BuildError) as exc:
        status = getattr(exc, "status_code", None)
        if isinstance(status, int) and status >= 500 and build_log.step is None:
            build_log.error = str(getattr(exc, "explanation", None) or exc)
        else:
            build_log.error = str(exc)
    except DockerException as exc:
        raise TransientError(f"Docker Engine API failed during the build: {exc}") from exc
    if build_log.error:
        raise PermanentError(redact(build_log.failure()))
    return build_log


def _image_id(client: Any, reference: str) -> str:
    return str(client.images.get(reference).id)
