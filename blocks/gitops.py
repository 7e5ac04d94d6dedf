"""GitOps repository block: where write-back pushes, as whom, and how to open PRs.

Credentials stay out of URLs, ``.git/config``, process arguments and logs: an HTTPS
token travels as an ``http.extraHeader`` set through git's ``GIT_CONFIG_*`` environment
variables, an SSH key through a private temporary file named in ``GIT_SSH_COMMAND``.
Every unwrapped secret (and its base64 form) is registered for redaction.
"""

from __future__ import annotations

import base64
import os
import re
import shlex
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal
from urllib.parse import urlsplit

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from shipyard.core.errors import ConfigError
from shipyard.core.git import GitWriteConfig, HostingApi
from shipyard.core.redact import register_secret

DEFAULT_API_URLS = {"github": "https://api.github.com", "gitlab": "https://gitlab.com/api/v4"}
TOKEN_USERS = {"github": "x-access-token", "gitlab": "oauth2", "none": "git"}


class GitOpsRepository(Block):
    """The GitOps configuration repo Shipyard writes image updates to."""

    _block_type_name = "Shipyard GitOps Repository"
    _description = "Git URL, branch, commit author and credentials of the GitOps repo."

    url: str = Field(description="Clone URL (https://, ssh://, git@host:path, file:// or a path).")
    branch: str = Field("main", description="Default branch written to.")
    author_name: str = Field("Shipyard", description="Commit author name.")
    author_email: str = Field("shipyard@localhost", description="Commit author email.")
    token: SecretStr | None = Field(None, description="HTTPS token (also used for the REST API).")
    token_username: str | None = Field(
        None, description="User name sent with the token; default per api kind."
    )
    ssh_key: SecretStr | None = Field(None, description="Private SSH key (PEM/OpenSSH text).")
    api: Literal["github", "gitlab", "none"] = Field(
        "none", description="Hosting API used for pull/merge requests."
    )
    api_url: str | None = Field(None, description="REST API base URL; default the public one.")
    project: str | None = Field(
        None, description="owner/repo (GitHub) or group/project (GitLab); default from url."
    )
    web_url: str | None = Field(
        None,
        description="The repo's web page (https://host/owner/repo), for commit links in "
        "provenance; default derived for GitHub and GitLab.",
    )

    def commit_url(self, sha: str) -> str | None:
        """A browser link to ``sha`` where the repo's web page is known, else None."""
        base = self.web_url
        if base is None and self.api in ("github", "gitlab"):
            api = self.api_base_url()
            host = {
                "https://api.github.com": "https://github.com",
                "https://gitlab.com/api/v4": "https://gitlab.com",
            }.get(api) or re.sub(r"/api(/v\d+)?$", "", api)
            base = f"{host}/{self.project_path()}"
        return f"{base.rstrip('/')}/commit/{sha}" if base else None

    def api_base_url(self) -> str:
        """The REST API base URL for PR mode; ConfigError when no API is configured."""
        if self.api == "none":
            raise ConfigError(f"repository {self.safe_url()} has no hosting api configured")
        return (self.api_url or DEFAULT_API_URLS[self.api]).rstrip("/")

    def project_path(self) -> str:
        """``owner/repo`` taken from ``project`` or from the clone URL."""
        if self.project:
            return self.project.strip("/")
        path = urlsplit(self.url).path if "://" in self.url else self.url.split(":", 1)[-1]
        path = re.sub(r"\.git$", "", path.strip("/"))
        if "/" not in path:
            raise ConfigError(f"cannot derive owner/repo from {self.safe_url()}; set 'project'")
        return path

    def hosting_api(self) -> HostingApi:
        """Where and how PR mode calls the hosting API; ConfigError when none is configured."""
        base_url = self.api_base_url()
        kind: Literal["github", "gitlab"] = "github" if self.api == "github" else "gitlab"
        return HostingApi(kind, base_url, self.project_path(), self.api_headers())

    def safe_url(self) -> str:
        """The URL without any user-info, for messages."""
        if "://" not in self.url:
            return self.url
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return parts._replace(netloc=f"{host}{port}").geturl()

    def api_headers(self) -> dict[str, str]:
        """Authorization headers for the hosting API (token registered for redaction)."""
        if self.token is None:
            return {}
        token = register_secret(self.token)
        if self.api == "gitlab":
            return {"PRIVATE-TOKEN": token}
        return {"Authorization": f"Bearer {token}"}

    @contextmanager
    def git_environment(self) -> Iterator[dict[str, str]]:
        """Environment variables that authenticate git for the block's credentials.

        Yields a dict to merge into git's environment; a temporary SSH key file lives only
        for the duration of the ``with`` block.
        """
        env: dict[str, str] = {}
        if self.token is not None:
            token = register_secret(self.token)
            user = self.token_username or TOKEN_USERS[self.api]
            basic = base64.b64encode(f"{user}:{token}".encode()).decode()
            register_secret(basic)
            env.update(
                {
                    "GIT_CONFIG_COUNT": "1",
                    "GIT_CONFIG_KEY_0": "http.extraHeader",
                    "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}",
                }
            )
        if self.ssh_key is None:
            yield env
            return
        key = register_secret(self.ssh_key)
        with tempfile.TemporaryDirectory(prefix="shipyard-ssh-") as tmp:
            path = os.path.join(tmp, "id")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(key if key.endswith("\n") else key + "\n")
            env["GIT_SSH_COMMAND"] = (
                f"ssh -i {shlex.quote(path)} -o IdentitiesOnly=yes "
                "-o StrictHostKeyChecking=accept-new -o BatchMode=yes"
            )
            yield env

    def write_config(self, **overrides: Any) -> GitWriteConfig:
        """A :class:`shipyard.core.git.GitWriteConfig` for this repo (branch, author)."""
        values: dict[str, Any] = {
            "branch": self.branch,
            "author_name": self.author_name,
            "author_email": self.author_email,
        }
        values.update(overrides)
        return GitWriteConfig(**values)
