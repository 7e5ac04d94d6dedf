"""Docker Engine API block: which engine builds and pushes images.

prefect-docker is not a dependency here, so Shipyard keeps its own small ``DockerHost``
in the same shape (settings + ``get_client()``). It talks to any Docker Engine API:
Docker itself, or podman's compatible service (``shipyard stack up`` runs one). The
connection itself is :mod:`shipyard.core.engine`'s; the block keeps the settings.
"""

from __future__ import annotations

from typing import Any

from prefect.blocks.core import Block
from pydantic import Field

from shipyard.core.engine import DockerEngine


class DockerHost(Block):
    """Where the Docker Engine API listens."""

    _block_type_name = "Shipyard Docker Host"
    _description = "A Docker Engine API (Docker or podman's compatible service)."

    base_url: str | None = Field(
        None,
        description="unix:///path/docker.sock or tcp://host:2375; default $DOCKER_HOST.",
    )
    timeout: float = Field(300.0, gt=0, description="Seconds per API call (builds stream).")

    def engine(self) -> DockerEngine:
        """The engine these settings name."""
        return DockerEngine(self.base_url, self.timeout)

    def resolved_url(self) -> str:
        """The URL used: the block's, else $DOCKER_HOST, else the default Docker socket."""
        return self.engine().resolved_url()

    def get_client(self) -> Any:
        """A ``docker.DockerClient``: a missing socket is permanent, a silent engine transient."""
        return self.engine().get_client()
