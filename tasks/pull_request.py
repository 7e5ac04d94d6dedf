"""PR mode of write-back: push a branch, open a pull/merge request, optionally await it.

For protected branches. The edit is the same pure core; the branch is pushed with the
same never-force loop (an existing PR branch from an earlier attempt is reused when it
already holds the change); the request is opened through the GitHub or GitLab REST API
with httpx (an existing open request for the branch is reused, so a retried task never
opens a second one); with ``wait_for_merge`` the task polls until the request is merged
and returns the merge commit, so the flow continues from exactly what landed.

HTTP failures are translated once, here: 401/403/404/422 are permanent, 429/5xx and
network errors transient (with the server's Retry-After when given).

The core takes plain values (the clone URL, git credentials as environment, a
:class:`~shipyard.core.git.HostingApi`); the task ``pull_request`` in
:mod:`tasks.steps.gitops` takes them from the GitOps repository block.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field

from shipyard.core.errors import PermanentError, TransientError, classify_http_status
from shipyard.core.git import GitWriteConfig, HostingApi, clone
from shipyard.core.redact import redact
from tasks.git_write import ImageUpdate, push_updates, render_message
from tasks.set_image import Change, set_image

__all__ = [
    "GitHubPulls",
    "GitLabMergeRequests",
    "PullRequest",
    "PullRequestConfig",
    "PullRequestResult",
    "hosting_for",
    "open_pull_request",
    "run_pull_request",
]


class PullRequestConfig(BaseModel):
    """How to open and follow the pull/merge request."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    branch_prefix: str = Field("shipyard/", description="Prefix of the pushed head branch.")
    title: str | None = Field(None, description="Title; default the commit subject.")
    wait_for_merge: bool = Field(False, description="Poll until merged; return the merge commit.")
    merge_timeout_seconds: float = Field(3600.0, gt=0, description="Deadline of the wait.")
    poll_seconds: float = Field(15.0, gt=0, description="Seconds between polls.")
    http_timeout_seconds: float = Field(30.0, gt=0, description="Timeout of one API call.")


@dataclass(frozen=True)
class PullRequest:
    """A request as the hosting API reports it."""

    number: int
    url: str
    state: str  # open | merged | closed
    head_sha: str | None = None
    merge_commit: str | None = None


@dataclass(frozen=True)
class PullRequestResult:
    """Outcome of PR mode; ``request`` is None when nothing needed changing."""

    request: PullRequest | None
    head_branch: str | None
    changes: list[Change]

    @property
    def merged_commit(self) -> str | None:
        """The commit the base branch got, once merged."""
        return self.request.merge_commit if self.request else None


class Hosting(Protocol):
    """The port PR mode needs from a hosting API."""

    def open(self, base: str, head: str, title: str, body: str) -> PullRequest:
        """Open a request from ``head`` into ``base`` (or return the open one)."""
        ...

    def get(self, number: int) -> PullRequest:
        """The request's current state."""
        ...


def _check(response: httpx.Response, action: str) -> Any:
    """Raise the error split for a failed response; return its JSON otherwise."""
    kind = classify_http_status(response.status_code)
    if kind is None:
        return response.json()
    detail = redact(response.text[:300].replace("\n", " "))
    message = f"{action}: HTTP {response.status_code}: {detail}"
    if kind is TransientError:
        retry_after = response.headers.get("Retry-After")
        after = float(retry_after) if retry_after and retry_after.isdigit() else None
        raise TransientError(message, retry_after=after)
    raise PermanentError(message)


def _send(client: httpx.Client, method: str, url: str, action: str, **kw: Any) -> httpx.Response:
    """One API call; network failures become TransientError."""
    try:
        return client.request(method, url, **kw)
    except httpx.TransportError as exc:
        raise TransientError(f"{action}: {type(exc).__name__}: {redact(str(exc))}") from None


class GitHubPulls:
    """GitHub REST: ``/repos/{owner}/{repo}/pulls``."""

    def __init__(self, client: httpx.Client, project: str) -> None:
        self.client = client
        self.base = f"/repos/{project}/pulls"
        self.owner = project.split("/", 1)[0]

    def open(self, base: str, head: str, title: str, body: str) -> PullRequest:
        """Create the pull request; on 422 "already exists" return the open one."""
        payload = {"title": title, "head": head, "base": base, "body": body}
        response = _send(self.client, "POST", self.base, "open pull request", json=payload)
        if response.status_code == 422 and "already exists" in response.text:
            params = {"head": f"{self.owner}:{head}", "base": base, "state": "open"}
            found = _check(
                _send(self.client, "GET", self.base, "find pull request", params=params),
                "find pull request",
            )
            if found:
                return self._parse(found[0])
        return self._parse(_check(response, "open pull request"))

    def get(self, number: int) -> PullRequest:
        """The pull request's state."""
        url = f"{self.base}/{number}"
        return self._parse(_check(_send(self.client, "GET", url, "get"), "get pull request"))

    @staticmethod
    def _parse(data: Mapping[str, Any]) -> PullRequest:
        state = "merged" if data.get("merged") else str(data.get("state", "open"))
        return PullRequest(
            number=int(data["number"]),
            url=str(data.get("html_url", "")),
            state=state,
            head_sha=(data.get("head") or {}).get("sha"),
            merge_commit=data.get("merge_commit_sha") if state == "merged" else None,
        )


class GitLabMergeRequests:
    """GitLab REST: ``/projects/{id}/merge_requests``."""

    def __init__(self, client: httpx.Client, project: str) -> None:
        self.client = client
        self.base = f"/projects/{quote(project, safe='')}/merge_requests"

    def open(self, base: str, head: str, title: str, body: str) -> PullRequest:
        """Create the merge request; on 409 (one is open for the branch) return it."""
        payload = {
            "source_branch": head,
            "target_branch": base,
            "title": title,
            "description": body,
            "remove_source_branch": True,
        }
        response = _send(self.client, "POST", self.base, "open merge request", json=payload)
        if response.status_code == 409:
            params = {"source_branch": head, "target_branch": base, "state": "opened"}
            found = _check(
                _send(self.client, "GET", self.base, "find merge request", params=params),
                "find merge request",
            )
            if found:
                return self._parse(found[0])
        return self._parse(_check(response, "open merge request"))

    def get(self, number: int) -> PullRequest:
        """The merge request's state."""
        url = f"{self.base}/{number}"
        return self._parse(_check(_send(self.client, "GET", url, "get"), "get merge request"))

    @staticmethod
    def _parse(data: Mapping[str, Any]) -> PullRequest:
        raw = str(data.get("state", "opened"))
        state = {"opened": "open", "merged": "merged", "closed": "closed", "locked": "open"}.get(
            raw, raw
        )
        merge = data.get("merge_commit_sha") or data.get("squash_commit_sha")
        return PullRequest(
            number=int(data["iid"]),
            url=str(data.get("web_url", "")),
            state=state,
            head_sha=data.get("sha"),
            merge_commit=merge if state == "merged" else None,
        )


def hosting_for(api: HostingApi, client: httpx.Client) -> Hosting:
    """The hosting adapter for ``api.kind``, calling through ``client``."""
    if api.kind == "github":
        return GitHubPulls(client, api.project)
    return GitLabMergeRequests(client, api.project)


def head_branch(updates: Sequence[ImageUpdate], base: str, prefix: str) -> str:
    """A deterministic branch name per (base, target state): retries reuse it."""
    key = "|".join(
        f"{u.set_image.path}={u.set_image.image}:{u.set_image.tag}@{u.set_image.digest}"
        for u in updates
    )
    digest = hashlib.sha256(f"{base}|{key}".encode()).hexdigest()[:10]
    first = updates[0]
    name = "-".join(p for p in (first.app, first.environment) if p) or "update"
    return f"{prefix}{re.sub(r'[^A-Za-z0-9._-]+', '-', name)}-{digest}"


def open_pull_request(
    url: str,
    updates: Sequence[ImageUpdate],
    write: GitWriteConfig,
    config: PullRequestConfig,
    hosting: Hosting,
    *,
    env: Mapping[str, str] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> PullRequestResult:
    """Apply ``updates`` on ``write.branch``, push them to a head branch, open a request.

    Nothing to change on the base -> no branch, no request. With ``wait_for_merge``,
    returns once merged (PermanentError if closed unmerged, TransientError at the
    deadline, so a retry resumes waiting on the same request).
    """
    head = head_branch(updates, write.branch, config.branch_prefix)
    with tempfile.TemporaryDirectory(prefix="shipyard-pr-") as tmp:
        repo = clone(url, Path(tmp) / "checkout", write, env=env)
        try:
            workdir = str(repo.working_tree_dir)
            planned = [(u, set_image(workdir, u.set_image, write=False)) for u in updates]
            applied = [(u, r.changes) for u, r in planned if r.changed]
            if not applied:
                return PullRequestResult(None, None, [])
            message = render_message(applied, write)
            push_updates(repo, updates, write.model_copy(update={"branch": head}))
        finally:
            repo.close()
    changes = [c for _, cs in applied for c in cs]
    subject, _, body = message.partition("\n")
    request = hosting.open(write.branch, head, config.title or subject, body.strip())
    if not config.wait_for_merge:
        return PullRequestResult(request, head, changes)
    deadline = clock() + config.merge_timeout_seconds
    while request.state != "merged":
        if request.state == "closed":
            raise PermanentError(f"request #{request.number} was closed without merging")
        if clock() >= deadline:
            raise TransientError(f"request #{request.number} not merged yet: {request.url}")
        sleep(config.poll_seconds)
        request = hosting.get(request.number)
    return PullRequestResult(request, head, changes)


def run_pull_request(
    url: str,
    updates: Sequence[ImageUpdate],
    write: GitWriteConfig,
    api: HostingApi,
    config: PullRequestConfig | None = None,
    *,
    env: Mapping[str, str] | None = None,
) -> PullRequestResult:
    """:func:`open_pull_request` through an HTTP client for ``api`` (GitHub or GitLab)."""
    config = config or PullRequestConfig()
    headers = {"Accept": "application/json", **api.headers}
    if api.kind == "github":
        headers.update(
            {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
        )
    with httpx.Client(
        base_url=api.base_url, headers=headers, timeout=config.http_timeout_seconds
    ) as client:
        return open_pull_request(url, updates, write, config, hosting_for(api, client), env=env)
