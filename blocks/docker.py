"""Docker Engine API block: which engine builds and pushes images.

prefect-docker is not a dependency here, so Shipyard keeps its own small ``DockerHost``
in the same shape (settings + ``get_client()``). It talks to any Docker Engine API:
Docker itself, or podman's compatible service (``shipyard stack up`` runs one).
"""

from __future__ import annotations

import os
from typing import Any

import docker
from docker.errors import DockerException
from prefect.blocks.core import Block
from pydantic import Field

from shipyard.core.errors import TransientError


class DockerHost(Block):
    """Where the Docker Engine API listens."""

    _block_type_name = "Shipyard Docker Host"
    _description = "A Docker Engine API (Docker or podman's compatible service)."

    base_url: str | None = Field(
        None,
        description="unix:///path/docker.sock or tcp://host:2375; default $DOCKER_HOST.",
    )
    timeout: float = Field(300.0, gt=0, description="Seconds per API call (builds stream).")

    def resolved_url(self) -> str:
        """The URL used: the block's, else $DOCKER_HOST, else the default Docker socket."""
        return self.base_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"

    def get_client(self) -> Any:
        """A ``docker.DockerClient``; an unreachable engine is transient (it may come back)."""
        return docker_client(self.resolved_url(), self.timeout)


def docker_client(base_url: str, timeout: float = 300.0) -> Any:
    """Connect to the engine at ``base_url`` (API version negotiated with the server)."""
    try:
        client = docker.DockerClient(base_url=base_url, timeout=int(timeout), version="auto")
        client.ping()
    except DockerException as exc:
        raise TransientError(f"Docker Engine API at {base_url} is unreachable: {exc}") from exc
    except OSError as exc:
        raise TransientError(f"Docker Engine API at {base_url} is unreachable: {exc}") from exc
    return client
