"""A stateful fake of the GitHub and GitLab pull/merge request REST APIs, on loopback.

It speaks the endpoints Shipyard uses with their real paths, status codes and JSON
fields (GitHub ``/api/v3/repos/{owner}/{repo}/pulls``, GitLab
``/api/v4/projects/{id}/merge_requests``), checks the token the way each service does,
and is backed by real bare git repos: a request's head SHA is read from the repo and
:meth:`FakeGitHosting.merge` makes a real merge commit on the base branch.
"""

from __future__ import annotations

import json
import subprocess
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass
class FakeRequest:
    """One pull/merge request held by the fake."""

    number: int
    project: str
    api: str
    source: str
    target: str
    title: str
    body: str
    state: str = "open"  # open | merged | closed
    head_sha: str = ""
    merge_commit: str | None = None
    polls: int = 0


@dataclass
class FakeGitHosting:
    """GitHub + GitLab REST fake over bare repos; ``projects`` maps owner/repo -> bare dir."""

    projects: dict[str, Path]
    token: str = "test-token"
    auto_merge_after_polls: int | None = None
    auto_close_after_polls: int | None = None
    requests: dict[tuple[str, int], FakeRequest] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    fail_next: list[int] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> FakeGitHosting:
        """Serve on an ephemeral loopback port in a daemon thread."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake._handle(self, "GET")

            def do_POST(self) -> None:
                fake._handle(self, "POST")

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        """Shut the server down."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def base_url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def github_api(self) -> str:
        return f"{self.base_url}/api/v3"

    @property
    def gitlab_api(self) -> str:
        return f"{self.base_url}/api/v4"

    # --- operator actions (what a reviewer would do) -----------------------------------

    def merge(self, api: str, number: int) -> str:
        """Merge a request with a real merge commit on its base branch; returns its sha."""
        with self._lock:
            req = self.requests[(api, number)]
            return self._merge(req)

    def close(self, api: str, number: int) -> None:
        """Close a request without merging."""
        with self._lock:
            self.requests[(api, number)].state = "closed"

    def _merge(self, req: FakeRequest) -> str:
        bare = self.projects[req.project]
        base = _git(bare, "rev-parse", f"refs/heads/{req.target}")
        head = _git(bare, "rev-parse", f"refs/heads/{req.source}")
        tree = _git(bare, "merge-tree", "--write-tree", base, head)
        commit = _git(
            bare,
            "commit-tree",
            tree,
            "-p",
            base,
            "-p",
            head,
            "-m",
            f"Merge request #{req.number} from {req.source}",
        )
        _git(bare, "update-ref", f"refs/heads/{req.target}", commit, base)
        req.state, req.merge_commit = "merged", commit
        return commit

    # --- HTTP ----------------------------------------------------------------------------

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(h.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        segments = [unquote(s) for s in parts.path.strip("/").split("/")]
        self.calls.append((method, parts.path))
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        with self._lock:
            if self.fail_next:
                status = self.fail_next.pop(0)
                return _reply(h, status, {"message": "unavailable"}, {"Retry-After": "1"})
            if segments[:2] == ["api", "v3"] and len(segments) >= 6 and segments[2] == "repos":
                return self._github(h, method, segments[3:], query, raw)
            if segments[:3] == ["api", "v4", "projects"] and len(segments) >= 5:
                return self._gitlab(h, method, segments[3:], query, raw)
        _reply(h, 404, {"message": "Not Found"})

    def _github(
        self,
        h: BaseHTTPRequestHandler,
        method: str,
        seg: list[str],
        query: dict[str, str],
        raw: bytes,
    ) -> None:
        if h.headers.get("Authorization") != f"Bearer {self.token}":
            return _reply(h, 401, {"message": "Bad credentials"})
        project = f"{seg[0]}/{seg[1]}"
        if project not in self.projects or seg[2] != "pulls":
            return _reply(h, 404, {"message": "Not Found"})
        if method == "POST" and len(seg) == 3:
            body = json.loads(raw or b"{}")
            missing = [f for f in ("title", "head", "base") if not body.get(f)]
            if missing:
                return _reply(
                    h,
                    422,
                    {
                        "message": "Validation Failed",
                        "errors": [{"field": missing[0], "code": "missing_field"}],
                    },
                )
            head_sha = self._branch_sha(project, body["head"])
            if head_sha is None or self._branch_sha(project, body["base"]) is None:
                return _reply(
                    h,
                    422,
                    {
                        "message": "Validation Failed",
                        "errors": [{"resource": "PullRequest", "field": "head", "code": "invalid"}],
                    },
                )
            for req in self._open(project, "github"):
                if req.source == body["head"] and req.target == body["base"]:
                    owner = project.split("/")[0]
                    return _reply(
                        h,
                        422,
                        {
                            "message": "Validation Failed",
                            "errors": [
                                {
                                    "resource": "PullRequest",
                                    "code": "custom",
                                    "message": f"A pull request already exists for {owner}:{body['head']}.",  # noqa: E501
                                }
                            ],
                        },
                    )
            req = self._new(
                project,
                "github",
                body["head"],
                body["base"],
                body["title"],
                body.get("body") or "",
                head_sha,
            )
            return _reply(h, 201, self._github_json(req))
        if method == "GET" and len(seg) == 3:
            head = query.get("head", "")
            found = [
                r
                for r in self.requests.values()
                if r.api == "github"
                and r.project == project
                and (not head or f"{project.split('/')[0]}:{r.source}" == head)
                and (
                    query.get("state", "open") == "all"
                    or (r.state == "open") == (query.get("state", "open") == "open")
                )
                and (not query.get("base") or r.target == query["base"])
            ]
            return _reply(h, 200, [self._github_json(r) for r in found])
        if method == "GET" and len(seg) == 4 and seg[3].isdigit():
            req = self.requests.get(("github", int(seg[3])))
            if req is None or req.project != project:
                return _reply(h, 404, {"message": "Not Found"})
            self._poll(req)
            return _reply(h, 200, self._github_json(req))
        return _reply(h, 404, {"message": "Not Found"})

    def _gitlab(
        self,
        h: BaseHTTPRequestHandler,
        method: str,
        seg: list[str],
        query: dict[str, str],
        raw: bytes,
    ) -> None:
        if h.headers.get("PRIVATE-TOKEN") != self.token:
            return _reply(h, 401, {"message": "401 Unauthorized"})
        project = seg[0]  # the id is the url-encoded path, decoded above
        if project not in self.projects or seg[1] != "merge_requests":
            return _reply(h, 404, {"message": "404 Project Not Found"})
        if method == "POST" and len(seg) == 2:
            body = json.loads(raw or b"{}")
            for f in ("source_branch", "target_branch", "title"):
                if not body.get(f):
                    return _reply(h, 400, {"message": f"{f} is missing"})
            head_sha = self._branch_sha(project, body["source_branch"])
            if head_sha is None:
                return _reply(h, 422, {"message": ["Source branch does not exist"]})
            for req in self._open(project, "gitlab"):
                if req.source == body["source_branch"] and req.target == body["target_branch"]:
                    return _reply(
                        h,
                        409,
                        {
                            "message": [
                                "Another open merge request already exists for this source branch: "
                                f"!{req.number}"
                            ]
                        },
                    )
            req = self._new(
                project,
                "gitlab",
                body["source_branch"],
                body["target_branch"],
                body["title"],
                body.get("description") or "",
                head_sha,
            )
            return _reply(h, 201, self._gitlab_json(req))
        if method == "GET" and len(seg) == 2:
            state = {"opened": "open"}.get(query.get("state", "all"), query.get("state", "all"))
            found = [
                r
                for r in self.requests.values()
                if r.api == "gitlab"
                and r.project == project
                and (state == "all" or r.state == state)
                and (not query.get("source_branch") or r.source == query["source_branch"])
                and (not query.get("target_branch") or r.target == query["target_branch"])
            ]
            return _reply(h, 200, [self._gitlab_json(r) for r in found])
        if method == "GET" and len(seg) == 3 and seg[2].isdigit():
            req = self.requests.get(("gitlab", int(seg[2])))
            if req is None or req.project != project:
                return _reply(h, 404, {"message": "404 Not found"})
            self._poll(req)
            return _reply(h, 200, self._gitlab_json(req))
        return _reply(h, 404, {"message": "404 Not Found"})

    # --- state helpers -------------------------------------------------------------------

    def _branch_sha(self, project: str, branch: str) -> str | None:
        try:
            return _git(self.projects[project], "rev-parse", "--verify", f"refs/heads/{branch}")
        except subprocess.CalledProcessError:
            return None

    def _open(self, project: str, api: str) -> list[FakeRequest]:
        return [
            r
            for r in self.requests.values()
            if r.project == project and r.api == api and r.state == "open"
        ]

    def _new(
        self, project: str, api: str, source: str, target: str, title: str, body: str, head_sha: str
    ) -> FakeRequest:
        number = 1 + sum(1 for r in self.requests.values() if r.api == api)
        req = FakeRequest(number, project, api, source, target, title, body, head_sha=head_sha)
        self.requests[(api, number)] = req
        return req

    def _poll(self, req: FakeRequest) -> None:
        req.polls += 1
        if (
            self.auto_merge_after_polls is not None
            and req.state == "open"
            and req.polls >= self.auto_merge_after_polls
        ):
            self._merge(req)
        if (
            self.auto_close_after_polls is not None
            and req.state == "open"
            and req.polls >= self.auto_close_after_polls
        ):
            req.state = "closed"

    def _github_json(self, r: FakeRequest) -> dict[str, Any]:
        return {
            "url": f"{self.github_api}/repos/{r.project}/pulls/{r.number}",
            "html_url": f"{self.base_url}/{r.project}/pull/{r.number}",
            "number": r.number,
            "state": "open" if r.state == "open" else "closed",
            "title": r.title,
            "body": r.body,
            "merged": r.state == "merged",
            "merge_commit_sha": r.merge_commit,
            "head": {"ref": r.source, "sha": r.head_sha},
            "base": {"ref": r.target},
        }

    def _gitlab_json(self, r: FakeRequest) -> dict[str, Any]:
        return {
            "id": 1000 + r.number,
            "iid": r.number,
            "web_url": f"{self.base_url}/{r.project}/-/merge_requests/{r.number}",
            "state": {"open": "opened"}.get(r.state, r.state),
            "title": r.title,
            "description": r.body,
            "source_branch": r.source,
            "target_branch": r.target,
            "sha": r.head_sha,
            "merge_commit_sha": r.merge_commit,
            "squash_commit_sha": None,
        }


def _git(bare: Path, *args: str) -> str:
    env_args = ["-c", "user.name=Reviewer", "-c", "user.email=review@example.com"]
    return subprocess.run(
        ["git", *env_args, *args], cwd=bare, capture_output=True, text=True, check=True
    ).stdout.strip()


def _reply(
    h: BaseHTTPRequestHandler, status: int, body: Any, headers: dict[str, str] | None = None
) -> None:
    data = json.dumps(body).encode()
    h.send_response(status)
    h.send_header("Content-Type", "application/json; charset=utf-8")
    h.send_header("Content-Length", str(len(data)))
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    h.end_headers()
    h.wfile.write(data)
