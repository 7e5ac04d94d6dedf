"""Make the cluster converge to a GitOps commit: one interface over three drivers.

``sync(config, api_client) -> SyncResult`` dispatches on ``config.driver``:

- ``apply`` (:mod:`tasks.sync.apply`): render + server-side apply + prune, no operator;
- ``argocd`` (:mod:`tasks.sync.argocd`): set the Application's ``operation.sync`` through
  the Kubernetes API, as ``argocd app sync`` does, and wait for it;
- ``argocd-rest`` (:mod:`tasks.sync.argocd_rest`): the same through Argo CD's REST API;
- ``flux`` (:mod:`tasks.sync.flux`): annotate ``reconcile.fluxcd.io/requestedAt`` and wait
  for Ready with the commit applied.

The thin task ``sync_app`` in :mod:`tasks.steps.rollout` takes a cluster block and
retries only transient failures (an operation already in progress, a throttled API
server).
"""

from __future__ import annotations

from typing import Any

from shipyard.core.kube import KubeClient
from tasks.sync.config import SyncConfig, SyncResult
from tasks.sync.source import SourceCache

__all__ = ["SyncConfig", "SyncResult", "sync"]


def sync(
    config: SyncConfig,
    api_client: Any = None,
    *,
    kube: KubeClient | None = None,
    cache: SourceCache | None = None,
) -> SyncResult:
    """Converge the cluster to ``config.revision`` with ``config.driver``."""
    if config.driver == "argocd-rest":
        from tasks.sync.argocd_rest import sync_argocd_rest

        return sync_argocd_rest(config)
    kube = kube or KubeClient(api_client)
    if config.driver == "apply":
        from tasks.sync.apply import sync_apply

        return sync_apply(kube, config, cache)
    if config.driver == "argocd":
        from tasks.sync.argocd import sync_argocd

        return sync_argocd(kube, config)
    from tasks.sync.flux import sync_flux

    return sync_flux(kube, config)
