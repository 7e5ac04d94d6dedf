"""Make the cluster converge to a GitOps commit: one interface over three drivers.

``sync(config, api_client) -> SyncResult`` dispatches on ``config.driver``:

- ``apply`` (:mod:`tasks.sync.apply`): render + server-side apply + prune, no operator;
- ``argocd`` (:mod:`tasks.sync.argocd`): set the Application's ``operation.sync`` through
  the Kubernetes API, as ``argocd app sync`` does, and wait for it;
- ``argocd-rest`` (:mod:`tasks.sync.argocd_rest`): the same through Argo CD's REST API;
- ``flux`` (:mod:`tasks.sync.flux`): annotate ``reconcile.fluxcd.io/requestedAt`` and wait
  for Ready with the commit applied.

The thin :func:`sync_app` task takes a cluster block and retries only transient failures
(an operation already in progress, a throttled API server).
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NONE as NO_CACHE

from shipyard.core.errors import retry_condition
from tasks.sync.config import SyncConfig, SyncResult
from tasks.sync.kube import KubeClient
from tasks.sync.source import SourceCache

__all__ = ["SyncConfig", "SyncResult", "sync", "sync_app"]


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


@task(
    name="sync-app",
    cache_policy=NO_CACHE,
    retries=3,
    retry_delay_seconds=[2, 5, 15],
    retry_condition_fn=retry_condition,
)
def sync_app(cluster: Any, config: SyncConfig) -> SyncResult:
    """Sync ``config`` on ``cluster`` (a KubernetesCluster block, or anything with
    ``get_api_client()``; unused by the REST driver)."""
    client = None if config.driver == "argocd-rest" else cluster.get_api_client()
    return sync(config, client)
