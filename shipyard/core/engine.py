"""The Docker Engine API connection the build, push and scan steps use.

Any Docker Engine API will do: Docker itself, or podman's compatible service
(``shipyard stack up`` runs one). A step takes anything shaped like
:class:`DockerEngineAccess` (the ``DockerHost`` block, or :class:`DockerEngine` here) so
it never needs a block to reach the engine; without one it uses ``$DOCKER_HOST``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Protocol

from shipyard.core.errors import TransientError

__all__ = ["DEFAULT_DOCKER_URL", "DockerEngine", "DockerEngineAccess", "docker_client"]

DEFAULT_DOCKER_URL = "unix:///var/run/docker.sock"


class DockerEngineAccess(Protocol):
    """Where the engine listens, and a connected ``docker.DockerClient`` for it."""

    def resolved_url(self) -> str:
        """The engine's URL (``unix://...`` or ``tcp://...``)."""
        ...

    def get_client(self) -> Any:
        """A connected ``docker.DockerClient``."""
        ...


@dataclass(frozen=True)
class DockerEngine:
    """An engine by URL: ``base_url``, else ``$DOCKER_HOST``, else the default socket."""

    base_url: str | None = None
    timeout: float = 300.0

    def resolved_url(self) -> str:
        """The URL used: the given one, else $DOCKER_HOST, else the default Docker socket."""
        return self.base_url or os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_URL

    def get_client(self) -> Any:
        """A ``docker.DockerClient``; an unreachable engine is transient (it may come back)."""
        return docker_client(self.resolved_url(), self.timeout)


def docker_client(base_url: str, timeout: float = 300.0) -> Any:
    """Connect to the engine at ``base_url`` (API version negotiated with the server)."""
    import docker
    from docker.errors import DockerException

    try:
        client = docker.DockerClient(base_url=base_url, timeout=int(timeout), version="auto")
        client.ping()
    except DockerException as exc:
        raise TransientError(f"Docker Engine API at {base_url} is unreachable: {exc}") from exc
    except OSError as exc:
        raise TransientError(f"Docker Engine API at {base_url} is unreachable: {exc}") from exc
    return client
