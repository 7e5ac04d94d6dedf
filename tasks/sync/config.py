"""Typed configuration and result of a sync, shared by every driver.

One :class:`SyncConfig` for the three drivers (direct apply, Argo CD, Flux) so a flow
switches drivers per environment by data, not code. Invalid combinations are rejected
at construction with a message a user can act on (a :class:`ConfigError` at the CLI).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from shipyard.core.catalog import App, Environment

__all__ = ["SyncConfig", "SyncResult"]

_SHA = re.compile(r"^[0-9a-f]{7,40}$")


class SyncConfig(BaseModel):
    """What to sync, and with which driver."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    driver: Literal["apply", "argocd", "argocd-rest", "flux"] = Field(
        "apply", description="apply: server-side apply; argocd/argocd-rest/flux: ask the operator."
    )
    revision: str | None = Field(
        None, description="Commit to converge to (the pushed sha); default the branch tip."
    )
    timeout_seconds: float = Field(300.0, gt=0, description="Deadline of the whole sync.")
    # apply
    repo: str | None = Field(None, description="apply: GitOps repo (working tree dir or URL).")
    branch: str = Field("main", description="apply: branch of a remote repo.")
    path: str | None = Field(None, description="apply: directory (or file) inside the repo.")
    namespace: str | None = Field(None, description="apply: the namespace everything goes to.")
    app: str = Field("app", description="apply: app name, the value of the ownership label.")
    prune: bool = Field(True, description="apply: delete what the app no longer declares.")
    field_manager: str = Field("shipyard", description="apply: server-side apply field manager.")
    # argocd
    application: str | None = Field(None, description="argocd: Application name.")
    application_namespace: str = Field("argocd", description="argocd: its namespace.")
    argocd_url: str | None = Field(None, description="argocd-rest: API server base URL.")
    argocd_token: SecretStr | None = Field(None, description="argocd-rest: bearer token.")
    wait_healthy: bool = Field(
        True, description="argocd: also wait for health Healthy (off when verify follows)."
    )
    # flux
    kustomization: str | None = Field(None, description="flux: Kustomization name.")
    source: str | None = Field(None, description="flux: GitRepository name (annotated too).")
    flux_namespace: str = Field("flux-system", description="flux: namespace of both objects.")

    @model_validator(mode="after")
    def _driver_fields(self) -> SyncConfig:
        if self.revision is not None and not _SHA.match(self.revision) and self.driver != "apply":
            raise ValueError(f"revision {self.revision!r} must be a commit sha")
        if self.driver == "apply":
            missing = [n for n in ("repo", "path", "namespace") if not getattr(self, n)]
            if missing:
                raise ValueError(f"driver apply needs {', '.join(missing)}")
        if self.driver in ("argocd", "argocd-rest") and not self.application:
            raise ValueError(f"driver {self.driver} needs 'application'")
        if self.driver == "argocd-rest" and not self.argocd_url:
            raise ValueError("driver argocd-rest needs 'argocd_url'")
        if self.driver == "flux" and not self.kustomization:
            raise ValueError("driver flux needs 'kustomization'")
        return self

    @classmethod
    def for_environment(
        cls,
        app: App,
        env: Environment,
        *,
        repo: str,
        revision: str | None,
        argocd_url: str | None = None,
        argocd_token: SecretStr | None = None,
        wait_healthy: bool = False,
    ) -> SyncConfig:
        """The sync of ``env`` of ``app`` (from the catalog) to ``revision`` of ``repo``."""
        spec = env.sync
        driver = spec.driver if not (spec.driver == "argocd" and argocd_url) else "argocd-rest"
        return cls(
            driver=driver,
            revision=revision,
            timeout_seconds=env.verify.timeout_seconds,
            repo=repo,
            branch=env.branch,
            path=env.path,
            namespace=env.namespace,
            app=app.name,
            prune=spec.prune,
            application=spec.application,
            application_namespace=spec.application_namespace,
            argocd_url=argocd_url,
            argocd_token=argocd_token,
            wait_healthy=wait_healthy,
            kustomization=spec.kustomization,
            source=spec.source,
            flux_namespace=spec.flux_namespace,
        )


class SyncResult(BaseModel):
    """What a sync did."""

    revision: str = Field(description="Commit the cluster now runs (full sha when known).")
    driver: str = Field(description="Driver used.")
    applied: list[str] = Field(default_factory=list, description="Kind/name applied.")
    pruned: list[str] = Field(default_factory=list, description="Kind/name deleted by prune.")
    seconds: float = Field(0.0, description="Time the sync took.")
    health: str | None = Field(None, description="Operator-reported health, when there is one.")
