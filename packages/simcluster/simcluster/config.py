"""Knobs of a simulated cluster (timings, nodes, image pulls), with test-friendly defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class SimConfig:
    """How the simulated cluster behaves.

    ``startup_delay``: seconds from a pod's image being available to Running/Ready.
    ``pull_images``: check images against real registries (False: every image exists).
    ``assume_present_without_registry``: images whose reference names no registry host
    (``nginx:1.27``, which would mean Docker Hub, unreachable here) count as present
    without any network call, so unit tests need no registry.
    ``pull_cache_seconds``: how long a successful manifest check is reused.
    ``pull_backoff``: first ImagePullBackOff / CrashLoopBackOff delay, doubled up to
    ``max_backoff``.
    ``job_run_seconds``: how long a simulated (non-process) Job pod runs before it
    succeeds.
    ``node_cpu`` / ``node_memory`` / ``node_pods``: each node's allocatable (and
    capacity), as Kubernetes quantities; ``node_labels``: labels every node gets besides
    ``kubernetes.io/hostname`` and the os/arch ones; ``node_overrides``: per node name
    (``sim-node-1``, ...), any of ``cpu``, ``memory``, ``pods``, ``labels`` (merged).
    ``schedule_retry``: seconds between the scheduler's retries of Pending pods (it also
    retries at once when a node or a bound pod changes).
    """

    nodes: int = 1
    startup_delay: float = 0.2
    pull_images: bool = True
    assume_present_without_registry: bool = True
    pull_cache_seconds: float = 30.0
    pull_timeout: float = 3.0
    pull_backoff: float = 0.5
    max_backoff: float = 5.0
    job_run_seconds: float = 0.3
    bookmark_interval: float = 5.0
    watch_timeout: float = 1800.0
    history: int = 20000
    node_cpu: str = "8"
    node_memory: str = "32Gi"
    node_pods: str = "110"
    node_labels: dict[str, str] = field(default_factory=dict)
    node_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    schedule_retry: float = 2.0
