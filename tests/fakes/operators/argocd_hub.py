"""The simulated Argo CD run as a hub: Applications in one cluster, deploying to others.

Real Argo CD keeps its Applications in its own cluster and deploys each to the cluster
its ``spec.destination.name`` names (a registered cluster secret). :class:`HubArgoCD`
does the same over simulated clusters: it is the :class:`ArgoCDController` (same
operation/status semantics), whose Kubernetes calls go to the hub for the Application
(``argoproj.io`` paths) and to the destination member for everything else (render,
apply, prune, health). Members' workloads are not watched, so health is re-evaluated
by polling each Application every ``poll_seconds``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any

from shipyard.core.kube import KubeClient
from tests.fakes.operators.argocd import GROUP_PATH, ArgoCDController
from tests.fakes.operators.base import JSON, WatchSpec

__all__ = ["HubArgoCD"]


class _Router:
    """A KubeClient look-alike: Application paths to the hub, the rest to the member the
    worker thread is reconciling (set per reconcile; only the worker reaches members)."""

    def __init__(self, hub: KubeClient) -> None:
        self.hub = hub
        self.local = threading.local()

    def _target(self, args: tuple[Any, ...]) -> KubeClient:
        if args and isinstance(args[0], str) and args[0].startswith(GROUP_PATH):
            return self.hub
        member: KubeClient | None = getattr(self.local, "member", None)
        return member or self.hub

    def __getattr__(self, name: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            return getattr(self._target(args), name)(*args, **kwargs)

        return call


class HubArgoCD(ArgoCDController):
    """See module docstring. ``members`` maps destination names to their ApiClients."""

    name = "argocd-hub"

    def __init__(
        self,
        hub_api_client: Any,
        members: dict[str, Any],
        *,
        poll_seconds: float = 0.5,
        sync_delay: float = 0.0,
    ) -> None:
        super().__init__(hub_api_client, sync_delay=sync_delay)
        self.router = _Router(self.kube)
        self.members = {name: KubeClient(client) for name, client in members.items()}
        self.poll_seconds = poll_seconds
        self.kube = self.router  # type: ignore[assignment]

    def watches(self) -> list[WatchSpec]:
        return [WatchSpec(f"{GROUP_PATH}/applications", {}, self._app_key)]

    def reconcile(self, key: Hashable) -> float | None:
        assert isinstance(key, tuple)
        ns, name = str(key[0]), str(key[1])
        app: JSON | None = self.router.hub.get(f"{GROUP_PATH}/namespaces/{ns}/applications/{name}")
        if app is None:
            return None
        destination = str(((app.get("spec") or {}).get("destination") or {}).get("name") or "")
        member = self.members.get(destination)
        if member is None:
            return self.poll_seconds  # an unknown cluster: nothing to deploy to
        self.router.local.member = member
        try:
            super().reconcile(key)
        finally:
            self.router.local.member = None
        return self.poll_seconds
