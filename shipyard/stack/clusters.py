"""The stack's fleet: N labelled simulated clusters, each its own `sim-cluster` process.

``shipyard stack up --clusters N`` starts them beside the stack's services. Each has
its own port and kubeconfig under ``<state>/clusters/<name>/``, its pid and log as the
services' (``run/cluster-<name>.pid``, ``logs/cluster-<name>.log``). What was asked is
recorded in ``<state>/clusters.json`` (names, labels, ports), so a later ``up`` without
``--clusters`` keeps the same fleet and addresses, ``--clusters 0`` removes it, and
``down`` stops it. ``<state>/fleet.yaml`` is a fleet file over these clusters that
``shipyard fleet rollout --fleet`` takes as is (exported as ``SHIPYARD_FLEET``).

Names and labels: the first cluster is the canary; regions go round eu, us, ap:
``eu-1 {region: eu, tier: canary}``, ``us-1 {region: us, tier: main}``,
``ap-1 {region: ap, tier: main}``, ``eu-2 ...``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from shipyard.core.errors import ConfigError, TransientError
from shipyard.stack import process
from shipyard.stack.model import ServiceSpec, ServiceStatus, StackLayout
from shipyard.stack.probes import free_port, http_ok

__all__ = [
    "REGIONS",
    "StackCluster",
    "cluster_env",
    "clusters_down",
    "clusters_status",
    "clusters_up",
    "fleet_document",
    "kubeconfig_of",
    "plan_clusters",
    "stack_clusters",
]

REGIONS = ("eu", "us", "ap")
FLEET_NAME = "local"
READY_TIMEOUT = 60.0
# What the fleet file rolls out: the demo's prod environment (shipyard/demo/content.py).
DEFAULT_ROLLOUT: dict[str, Any] = {
    "path": "envs/prod/cart",
    "namespace": "shop-prod",
    "sync": {"driver": "apply"},
    "verify": {"workloads": ["deployment/cart"], "timeout_seconds": 120},
}

Progress = Callable[[str], None]


@dataclass(frozen=True)
class StackCluster:
    """One simulated cluster of the stack."""

    name: str
    labels: dict[str, str] = field(default_factory=dict)
    port: int = 0

    @property
    def process(self) -> str:
        """Its process name (pid and log files)."""
        return f"cluster-{self.name}"


def plan_clusters(count: int) -> list[StackCluster]:
    """The names and labels of ``count`` clusters: a canary first, regions in turn."""
    if count < 0:
        raise ConfigError(f"--clusters must be 0 or more, not {count}")
    return [
        StackCluster(
            name=f"{REGIONS[i % len(REGIONS)]}-{i // len(REGIONS) + 1}",
            labels={"region": REGIONS[i % len(REGIONS)], "tier": "canary" if i == 0 else "main"},
        )
        for i in range(count)
    ]


def fleet_document(
    layout: StackLayout, clusters: list[StackCluster], rollout: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A fleet file over ``clusters``: the canary first, then the rest in one wave."""
    waves: list[dict[str, Any]] = [
        {"name": "canary", "selector": {"matchLabels": {"tier": "canary"}}}
    ]
    if len(clusters) > 1:
        waves.append({"name": "rest"})
    return {
        "apiVersion": "shipyard.dev/v1",
        "kind": "Fleet",
        "metadata": {"name": FLEET_NAME},
        "clusters": [
            {"name": c.name, "kubeconfig": str(_kubeconfig(layout, c)), "labels": c.labels}
            for c in clusters
        ],
        "rollout": {**(rollout or DEFAULT_ROLLOUT), "waves": waves},
    }


def cluster_env(layout: StackLayout) -> dict[str, str]:
    """``SHIPYARD_FLEET`` (the fleet file) when the stack has clusters, else nothing."""
    return {"SHIPYARD_FLEET": str(_fleet_file(layout))} if _load(layout) else {}


def clusters_up(
    layout: StackLayout, count: int | None = None, progress: Progress | None = None
) -> list[ServiceStatus]:
    """Start the stack's clusters (``count``; None: as recorded) and wait until each answers.

    Idempotent: a running cluster is left alone and keeps its port; clusters beyond
    ``count`` are stopped and forgotten. On failure, the clusters started by this call
    are stopped again.
    """
    say = progress or (lambda _msg: None)
    recorded = _load(layout)
    wanted = (
        recorded
        if count is None
        else [
            StackCluster(c.name, c.labels, _port_of(recorded, c.name)) for c in plan_clusters(count)
        ]
    )
    for gone in recorded[len(wanted) :] if count is not None else []:
        if process.stop(layout, gone.process):
            say(f"stopped cluster {gone.name}")
    wanted = [
        c if c.port else StackCluster(c.name, c.labels, free_port(layout.host)) for c in wanted
    ]
    _save(layout, wanted)
    launched: list[StackCluster] = []
    started: dict[str, float] = {}
    try:
        for cluster in wanted:
            started[cluster.name] = time.monotonic()
            if process.read_pid(layout, cluster.process) is None:
                say(f"starting cluster {cluster.name}")
                process.spawn(layout, _spec(layout, cluster))
                launched.append(cluster)
        statuses = _wait(layout, wanted, started, say)
    except BaseException:
        for cluster in reversed(launched):
            process.stop(layout, cluster.process)
        raise
    return statuses


def clusters_down(layout: StackLayout, progress: Progress | None = None) -> list[ServiceStatus]:
    """Stop every cluster of the stack (the record stays, so the next ``up`` restarts them)."""
    say = progress or (lambda _msg: None)
    statuses = []
    for cluster in _load(layout):
        was_running = process.stop(layout, cluster.process)
        if was_running:
            say(f"stopped cluster {cluster.name}")
        statuses.append(
            ServiceStatus(
                cluster.process, False, False, None, "", note="stopped" if was_running else ""
            )
        )
    return statuses


def stack_clusters(layout: StackLayout) -> list[StackCluster]:
    """The clusters the stack records (what the last ``up --clusters N`` asked for)."""
    return _load(layout)


def kubeconfig_of(layout: StackLayout, cluster: StackCluster) -> Path:
    """The kubeconfig file of ``cluster`` (written by its simulator once it serves)."""
    return _kubeconfig(layout, cluster)


def clusters_status(layout: StackLayout) -> list[ServiceStatus]:
    """Each recorded cluster's pid and health (its labels as the note)."""
    return [_status(layout, c) for c in _load(layout)]


def _status(
    layout: StackLayout, cluster: StackCluster, seconds: float | None = None
) -> ServiceStatus:
    pid = process.read_pid(layout, cluster.process)
    healthy = pid is not None and _healthy(layout, cluster)
    labels = ",".join(f"{k}={v}" for k, v in cluster.labels.items())
    return ServiceStatus(
        cluster.process,
        pid is not None,
        healthy,
        pid,
        _address(layout, cluster),
        seconds=seconds,
        note=f"{labels} kubeconfig={_kubeconfig(layout, cluster)}",
    )


def _wait(
    layout: StackLayout, clusters: list[StackCluster], started: dict[str, float], say: Progress
) -> list[ServiceStatus]:
    ready: dict[str, float] = {}
    while len(ready) < len(clusters):
        for cluster in clusters:
            if cluster.name in ready:
                continue
            if _healthy(layout, cluster):
                ready[cluster.name] = time.monotonic() - started[cluster.name]
                say(f"cluster {cluster.name} ready in {ready[cluster.name]:.1f}s")
                continue
            log = layout.log_file(cluster.process)
            if process.read_pid(layout, cluster.process) is None:
                raise TransientError(
                    f"cluster {cluster.name} exited during start; last log lines: "
                    f"{process.tail(log) or '(none)'} (full log: {log})"
                )
            if time.monotonic() - started[cluster.name] > READY_TIMEOUT:
                raise TransientError(
                    f"cluster {cluster.name} not healthy after {READY_TIMEOUT:.0f}s; see {log}"
                )
        if len(ready) < len(clusters):
            time.sleep(0.1)
    return [_status(layout, c, ready[c.name]) for c in clusters]


def _spec(layout: StackLayout, cluster: StackCluster) -> ServiceSpec:
    kubeconfig = _kubeconfig(layout, cluster)
    kubeconfig.parent.mkdir(parents=True, exist_ok=True)
    kubeconfig.unlink(missing_ok=True)  # written again by the simulator once it serves
    argv = [
        sys.executable,
        "-m",
        "shipyard.cli.main",
        "sim-cluster",
        "--kubeconfig",
        str(kubeconfig),
        "--host",
        layout.host,
        "--port",
        str(cluster.port),
    ]
    return ServiceSpec(cluster.process, argv, health=lambda: _healthy(layout, cluster))


def _healthy(layout: StackLayout, cluster: StackCluster) -> bool:
    return _kubeconfig(layout, cluster).exists() and http_ok(f"{_address(layout, cluster)}/version")


def _address(layout: StackLayout, cluster: StackCluster) -> str:
    return f"http://{layout.host}:{cluster.port}"


def _kubeconfig(layout: StackLayout, cluster: StackCluster) -> Path:
    return layout.root / "clusters" / cluster.name / "kubeconfig"


def _record_file(layout: StackLayout) -> Path:
    return layout.root / "clusters.json"


def _fleet_file(layout: StackLayout) -> Path:
    return layout.root / "fleet.yaml"


def _port_of(recorded: list[StackCluster], name: str) -> int:
    return next((c.port for c in recorded if c.name == name), 0)


def _load(layout: StackLayout) -> list[StackCluster]:
    try:
        data = json.loads(_record_file(layout).read_text())
    except (FileNotFoundError, ValueError):
        return []
    return [StackCluster(str(c["name"]), dict(c["labels"]), int(c["port"])) for c in data]


def _save(layout: StackLayout, clusters: list[StackCluster]) -> None:
    """Record the clusters and write the fleet file over them (both gone with none)."""
    layout.root.mkdir(parents=True, exist_ok=True)
    if not clusters:
        _record_file(layout).unlink(missing_ok=True)
        _fleet_file(layout).unlink(missing_ok=True)
        return
    record = [{"name": c.name, "labels": c.labels, "port": c.port} for c in clusters]
    _record_file(layout).write_text(json.dumps(record, indent=2) + "\n")
    header = "# Written by `shipyard stack up --clusters N`: the stack's simulated clusters.\n"
    body = yaml.safe_dump(fleet_document(layout, clusters), sort_keys=False)
    _fleet_file(layout).write_text(header + body)
