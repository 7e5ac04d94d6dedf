"""Kubernetes manifests used by sync/verify tests."""

from __future__ import annotations

from typing import Any


def deployment(
    name: str,
    namespace: str | None,
    image: str,
    *,
    replicas: int = 1,
    crash: bool = False,
    ready: bool = True,
    startup: float | None = None,
) -> dict[str, Any]:
    """A Deployment whose pods the simulated kubelet runs (crash/ready/startup knobs)."""
    annotations: dict[str, str] = {}
    if crash:
        annotations["sim.shipyard.dev/crash"] = "true"
    if not ready:
        annotations["sim.shipyard.dev/ready"] = "false"
    if startup is not None:
        annotations["sim.shipyard.dev/startup-seconds"] = str(startup)
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}, "annotations": annotations},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    }
