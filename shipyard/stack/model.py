"""Plain data describing the stack: where its state lives and what each service is."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_STATE_DIR = ".shipyard"

# Default loopback ports; 0 means "pick a free port at first `up` and remember it".
DEFAULT_PORTS: dict[str, int] = {
    "prefect": 4200,
    "registry": 5000,
    "s3": 5002,
    "git": 9418,
    "kube": 6443,
    "bridge": 8787,
    "postgres": 0,  # the production profile's (shipyard.stack.database)
    "redis": 0,
    "exporter": 9464,
    "prometheus": 9090,
    "alertmanager": 9093,
}


def find_state_dir(start: str | os.PathLike[str] | None = None) -> Path:
    """The stack's state directory for commands run in ``start`` (default: the cwd).

    Found the way git finds ``.git``: the nearest ``.shipyard/`` in ``start`` or one of
    its parents, so every command works from any subdirectory of the project. With none
    yet (before the first ``stack up``) it is ``.shipyard/`` at the top of the enclosing
    git work tree, else in ``start`` itself, so ``stack up`` from a subdirectory of a
    fresh checkout still puts the state where the next command will look for it.
    """
    here = Path(start or Path.cwd()).resolve()
    lineage = (here, *here.parents)
    for directory in lineage:
        if (directory / DEFAULT_STATE_DIR).is_dir():
            return directory / DEFAULT_STATE_DIR
    for directory in lineage:
        if (directory / ".git").exists():
            return directory / DEFAULT_STATE_DIR
    return here / DEFAULT_STATE_DIR


@dataclass(frozen=True)
class StackLayout:
    """Where one stack keeps its state: pids, logs, data, config and the env file."""

    root: Path
    host: str = "127.0.0.1"

    @classmethod
    def from_env(cls, state_dir: str | os.PathLike[str] | None = None) -> StackLayout:
        """The layout for ``state_dir``, else $SHIPYARD_STATE_DIR, else the ``.shipyard/``
        found by walking up from the working directory (:func:`find_state_dir`)."""
        root = state_dir or os.environ.get("SHIPYARD_STATE_DIR") or find_state_dir()
        return cls(Path(root).resolve())

    @property
    def env_file(self) -> Path:
        return self.root / "env"

    @property
    def ports_file(self) -> Path:
        return self.root / "ports.json"

    def pid_file(self, service: str) -> Path:
        return self.root / "run" / f"{service}.pid"

    def log_file(self, service: str) -> Path:
        return self.root / "logs" / f"{service}.log"

    def data_dir(self, service: str) -> Path:
        return self.root / "data" / service

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def podman_socket(self) -> Path:
        return self.root / "run" / "podman.sock"

    def load_ports(self) -> dict[str, int]:
        """Ports chosen by an earlier `up`, so a warm `up` keeps every address."""
        try:
            data = json.loads(self.ports_file.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return {k: int(v) for k, v in data.items()}

    def save_ports(self, ports: dict[str, int]) -> None:
        self.ports_file.parent.mkdir(parents=True, exist_ok=True)
        self.ports_file.write_text(json.dumps(ports, indent=2, sort_keys=True) + "\n")


@dataclass
class ServiceSpec:
    """How to start one service and how to tell that it is ready."""

    name: str
    argv: list[str]
    health: Callable[[], bool]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    ready_timeout: float = 60.0
    # External services (e.g. the user's DOCKER_HOST) are checked but never started.
    external: bool = False
    prepare: Callable[[], None] | None = None


@dataclass
class ServiceStatus:
    """One service's state as `stack status` reports it."""

    name: str
    running: bool
    healthy: bool
    pid: int | None
    address: str
    seconds: float | None = None
    note: str = ""
    # Started on demand (the bridge and the worker, by `shipyard demo`), not by `up`:
    # one that is not running is reported, but does not make the stack unhealthy.
    optional: bool = False

    @property
    def ok(self) -> bool:
        """Healthy, or an optional service that simply is not running."""
        return self.healthy or (self.optional and not self.running)


@dataclass
class StackReport:
    """What `up`, `down` or `status` did, service by service, and how long it took."""

    services: list[ServiceStatus]
    seconds: float
    env_file: Path
    # The Prefect server's database and messaging, e.g. "postgresql + redis messaging".
    profile: str = ""

    @property
    def healthy(self) -> bool:
        """Every service is healthy (optional ones only if they run)."""
        return all(s.ok for s in self.services)

    def to_dict(self) -> dict[str, object]:
        return {
            "healthy": self.healthy,
            "seconds": round(self.seconds, 3),
            "env_file": str(self.env_file),
            "profile": self.profile,
            "services": [
                {
                    "name": s.name,
                    "running": s.running,
                    "healthy": s.healthy,
                    "pid": s.pid,
                    "address": s.address,
                    "seconds": None if s.seconds is None else round(s.seconds, 3),
                    "note": s.note,
                    "optional": s.optional,
                }
                for s in self.services
            ],
        }
