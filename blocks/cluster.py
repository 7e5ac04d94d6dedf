"""Cluster connection block: which Kubernetes API a step talks to.

Reuses prefect-kubernetes' ``KubernetesClusterConfig`` (a kubeconfig held in a block)
when given, and otherwise reads a kubeconfig file or the in-cluster service account,
so the same flow runs on a laptop, in CI against the simulator, and inside a worker pod.
The block holds settings only: the client comes from the foundation
(:mod:`shipyard.core.kube`).
"""

from __future__ import annotations

from kubernetes import client
from prefect.blocks.core import Block
from prefect_kubernetes.credentials import KubernetesClusterConfig
from pydantic import Field

from shipyard.core.kube import KubeClient, Retry, api_client


class KubernetesCluster(Block):
    """Connection settings for one Kubernetes cluster."""

    _block_type_name = "Shipyard Kubernetes Cluster"
    _description = "Which Kubernetes API Shipyard syncs, verifies and backs up."

    name: str = Field("default", description="Cluster name used by the app catalog.")
    kubeconfig_path: str | None = Field(
        None, description="Path to a kubeconfig file; default $KUBECONFIG or ~/.kube/config."
    )
    context: str | None = Field(None, description="kubeconfig context; default the current one.")
    cluster_config: KubernetesClusterConfig | None = Field(
        None, description="A prefect-kubernetes cluster config block (takes precedence)."
    )
    in_cluster: bool = Field(False, description="Use the pod's service account.")
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Labels a catalog fleet selects on (region: eu, tier: canary).",
    )

    def get_api_client(self) -> client.ApiClient:
        """Build an ApiClient; a ConfigError says what is missing when nothing is usable."""
        if self.cluster_config is not None:
            return self.cluster_config.get_api_client()
        built: client.ApiClient = api_client(
            self.kubeconfig_path, self.context, in_cluster=self.in_cluster
        )
        return built

    def get_kube_client(
        self, *, retry: Retry | None = None, request_timeout: float = 30.0
    ) -> KubeClient:
        """Shipyard's Kubernetes client for this cluster (see :class:`KubeClient`)."""
        return KubeClient(self.get_api_client(), retry=retry, request_timeout=request_timeout)
