"""Knobs of a simulated cluster (timings, nodes, image pulls), with test-friendly defaults."""

from __future__ import annotations

from dataclasses import dataclass


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
