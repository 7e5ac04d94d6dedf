"""Pytest plugin: the Argo CD-like and Flux-like operators running against ``sim_cluster``.

Fixture ``gitops_operators`` (session): installs the CRDs, starts both controllers and
yields a :class:`GitOpsOperators` with helpers that create an Application or a
GitRepository + Kustomization pointing at a git repo (file:// or git://).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from shipyard.core.kube import KubeClient
from tests.fakes.operators.argocd import ArgoCDController
from tests.fakes.operators.crds import install_crds
from tests.fakes.operators.flux import FluxController


@dataclass
class GitOpsOperators:
    """Running operators and helpers to declare what they manage."""

    kube: KubeClient
    argocd: ArgoCDController
    flux: FluxController

    def application(
        self,
        namespace: str,
        name: str,
        repo_url: str,
        path: str,
        destination: str,
        target_revision: str = "main",
    ) -> dict[str, Any]:
        """Create an Argo CD Application (manual sync) in ``namespace``."""
        app = {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "project": "default",
                "source": {"repoURL": repo_url, "path": path, "targetRevision": target_revision},
                "destination": {
                    "server": "https://kubernetes.default.svc",
                    "namespace": destination,
                },
            },
        }
        return self.kube.apply(
            self.kube.resource("argoproj.io/v1alpha1", "Application"), app, "test"
        )

    def kustomization(
        self,
        namespace: str,
        name: str,
        repo_url: str,
        path: str,
        destination: str,
        branch: str = "main",
        interval: str = "10m",
    ) -> None:
        """Create a GitRepository and a Kustomization (prune on) named ``name``."""
        repo = {
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "GitRepository",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"url": repo_url, "ref": {"branch": branch}, "interval": interval},
        }
        ks = {
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "sourceRef": {"kind": "GitRepository", "name": name},
                "path": path,
                "prune": True,
                "targetNamespace": destination,
                "interval": interval,
            },
        }
        self.kube.apply(
            self.kube.resource("source.toolkit.fluxcd.io/v1", "GitRepository"), repo, "test"
        )
        self.kube.apply(
            self.kube.resource("kustomize.toolkit.fluxcd.io/v1", "Kustomization"), ks, "test"
        )


def start_operators(api_client_factory: Any) -> GitOpsOperators:
    """Install CRDs and start both controllers (each with its own ApiClient)."""
    kube = KubeClient(api_client_factory())
    install_crds(kube)
    argocd = ArgoCDController(api_client_factory()).start()
    flux = FluxController(api_client_factory()).start()
    return GitOpsOperators(kube, argocd, flux)


@pytest.fixture(scope="session")
def gitops_operators(sim_cluster: Any) -> Iterator[GitOpsOperators]:
    """Argo CD-like and Flux-like controllers for the session's simulated cluster."""
    ops = start_operators(sim_cluster.api_client)
    try:
        yield ops
    finally:
        ops.argocd.stop()
        ops.flux.stop()
