"""The Docker Engine API connection the build, push and scan steps use.

Any Docker Engine API will do: Docker itself, or podman's compatible service
(``shipyard stack up`` runs one). A step takes anything shaped like
:class:`DockerEngineAccess` (the ``DockerHost`` block, or :class:`DockerEngine` here) so
it never needs a block to reach the engine; without one it uses ``$DOCKER_HOST``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from shipyard.core.errors import PermanentError, TransientError

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
        """A ``docker.DockerClient``; see :func:`docker_client` for the error split."""
        return docker_client(self.resolved_url(), self.timeout)


def missing_socket(base_url: str) -> str | None:
    """The socket path of a ``unix://`` URL when no such file exists, else None.

    A socket that is not there is a wrong address, not a busy engine: no retry makes it
    appear, so the caller fails at once and says what to set.
    """
    if not base_url.startswith("unix://"):
        return None
    path = Path(base_url.removeprefix("unix://"))
    return None if path.exists() else str(path)


def docker_client(base_url: str, timeout: float = 300.0) -> Any:
    """Connect to the engine at ``base_url`` (API version negotiated with the server).

    A ``unix://`` socket that does not exist is a PermanentError naming what to set; an
    engine that exists but does not answer (refused, reset, timed out) is transient.
    """
    import docker
    from docker.errors import DockerException

    if (path := missing_socket(base_url)) is not None:
        raise PermanentError(
            f"Docker Engine API at {base_url} is unreachable: the socket {path} does not exist",
            hint="set DOCKER_HOST, or the DockerHost block's base_url, to a running engine "
            "(`shipyard stack up` writes the stack's DOCKER_HOST to .shipyard/env)",
        )
    try:
        client = docker.DockerClient(base_url=base_url, timeout=int(timeout), version="auto")
        client.ping()
    except DockerException as exc:
        raise TransientError(f"Docker Engine API at {base_url} is unreachable: {exc}") from exc
    except OSError as exc:
        raise TransientError(f"Docker Engine API at {base_url} is unreachable: {exc}") from exc
    return client
