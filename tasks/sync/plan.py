"""Turn a sync request as a user states it into the :class:`SyncConfig` the sync step runs.

A user names a driver (``apply``, ``argocd`` or ``flux``) and the options of that driver;
the step needs the concrete driver (Argo CD through its REST API when a server URL is
given, through the cluster's Application otherwise) and an app name for the ownership
label (the last directory of ``path`` unless given). Pure: no I/O, so the CLI can check
a request before anything runs and every caller derives the same names.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from pydantic import SecretStr, ValidationError

from shipyard.core.errors import ConfigError
from tasks.sync.config import SyncConfig

__all__ = ["DRIVERS", "needs_cluster", "plan_sync"]

DRIVERS = ("apply", "argocd", "flux")


def plan_sync(
    driver: str = "apply",
    *,
    revision: str | None = None,
    timeout_seconds: float = 300.0,
    repo: str | None = None,
    path: str | None = None,
    namespace: str | None = None,
    app: str | None = None,
    prune: bool = True,
    application: str | None = None,
    application_namespace: str = "argocd",
    argocd_url: str | None = None,
    argocd_token: str | None = None,
    kustomization: str | None = None,
    source: str | None = None,
    flux_namespace: str = "flux-system",
) -> SyncConfig:
    """The validated SyncConfig of a request; ConfigError (naming the field) when unusable.

    ``driver`` is one of :data:`DRIVERS`; ``argocd`` with ``argocd_url`` becomes the
    ``argocd-rest`` driver. ``app`` defaults to the last part of ``path`` (else ``app``).
    """
    if driver not in DRIVERS:
        raise ConfigError(f"--driver must be apply, argocd or flux, not {driver!r}")
    try:
        return SyncConfig(
            driver="argocd-rest" if driver == "argocd" and argocd_url else driver,
            revision=revision,
            timeout_seconds=timeout_seconds,
            repo=repo,
            path=path,
            namespace=namespace,
            app=app or (PurePosixPath(path).name if path else "app") or "app",
            prune=prune,
            application=application,
            application_namespace=application_namespace,
            argocd_url=argocd_url,
            argocd_token=SecretStr(argocd_token) if argocd_token else None,
            kustomization=kustomization,
            source=source,
            flux_namespace=flux_namespace,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        msg = str(first.get("msg", "")).removeprefix("Value error, ")
        raise ConfigError(f"{where}: {msg}" if where else msg) from None


def needs_cluster(config: SyncConfig) -> bool:
    """False for the REST driver, which talks to the Argo CD server instead of the cluster."""
    return config.driver != "argocd-rest"
