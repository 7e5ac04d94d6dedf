"""Real services the bridge tests need: a private Prefect server they may stop and
restart (the session's shared one must not be disturbed), and a registry whose
notifications point at a bridge.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from shipyard.stack import process
from shipyard.stack.model import ServiceSpec, StackLayout
from shipyard.stack.probes import free_port, http_ok
from shipyard.stack.services import prefect_spec, registry_config, require


@dataclass
class PrivatePrefect:
    """A `prefect server start` of our own, on SQLite in a temp PREFECT_HOME."""

    layout: StackLayout
    port: int

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def up(self) -> bool:
        return http_ok(f"{self.api_url}/health")

    def start(self, timeout: float = 120.0) -> None:
        spec = prefect_spec(self.layout, self.port)
        if spec.prepare is not None:
            spec.prepare()
        process.spawn(self.layout, spec)
        deadline = time.monotonic() + timeout
        while not self.up:
            if process.read_pid(self.layout, "prefect") is None:
                log = process.tail(self.layout.log_file("prefect"), 20)
                raise RuntimeError(f"prefect server exited: {log}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"prefect server not healthy after {timeout}s")
            time.sleep(0.2)

    def stop(self) -> None:
        process.stop(self.layout, "prefect", grace=15.0)

    def events(
        self, name: str = "registry.image.pushed", resource_prefix: str = ""
    ) -> list[dict[str, Any]]:
        """Stored events with ``name`` (first page of 50, the API's maximum), oldest first."""
        query: dict[str, Any] = {"event": {"name": [name]}, "order": "ASC"}
        if resource_prefix:
            query["resource"] = {"id_prefix": [resource_prefix]}
        r = httpx.post(
            f"{self.api_url}/events/filter", json={"filter": query, "limit": 50}, timeout=10
        )
        r.raise_for_status()
        events: list[dict[str, Any]] = r.json()["events"]
        return events

    def wait_for_events(
        self, count: int, resource_prefix: str, timeout: float = 60.0
    ) -> list[dict[str, Any]]:
        """Poll until ``count`` events for the resource are stored (persisted in batches)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.events(resource_prefix=resource_prefix)
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.5)


@pytest.fixture(scope="session")
def private_prefect(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivatePrefect]:
    """A Prefect server only the bridge tests use; stopped at the end of the session."""
    server = PrivatePrefect(StackLayout(tmp_path_factory.mktemp("bridge-prefect")), free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class NotifyingRegistry:
    """A CNCF Distribution registry whose notifications go to a bridge."""

    layout: StackLayout
    port: int

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture
def notifying_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[Any]:
    """Factory: start `docker-registry serve` notifying ``bridge_url`` with ``secret``."""
    started: list[StackLayout] = []

    def start(bridge_url: str, secret: str) -> NotifyingRegistry:
        monkeypatch.setenv("SHIPYARD_BRIDGE_SECRET", secret)
        layout = StackLayout(tmp_path / f"registry-{len(started)}")
        port = free_port()
        config = layout.data_dir("registry") / "config.yml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(registry_config(layout, port, bridge_url))
        spec = ServiceSpec(
            name="registry",
            argv=[require("docker-registry"), "serve", str(config)],
            health=lambda: http_ok(f"http://127.0.0.1:{port}/v2/"),
        )
        process.spawn(layout, spec)
        started.append(layout)
        deadline = time.monotonic() + 30
        while not spec.health():
            if time.monotonic() > deadline:
                raise RuntimeError(process.tail(layout.log_file("registry"), 20))
            time.sleep(0.1)
        return NotifyingRegistry(layout, port)

    yield start
    for layout in started:
        process.stop(layout, "registry")
