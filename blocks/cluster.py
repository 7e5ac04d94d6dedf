"""Cluster connection block: which Kubernetes API a step talks to.

Reuses prefect-kubernetes' ``KubernetesClusterConfig`` (a kubeconfig held in a block)
when given, and otherwise reads a kubeconfig file or the in-cluster service account,
so the same flow runs on a laptop, in CI against the simulator, and inside a worker pod.
"""

from __future__ import annotations

import os

from kubernetes import client, config
from prefect.blocks.core import Block
from prefect_kubernetes.credentials import KubernetesClusterConfig
from pydantic import Field

from shipyard.core.errors import ConfigError


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

    def get_api_client(self) -> client.ApiClient:
        """Build an ApiClient; a ConfigError says what is missing when nothing is usable."""
        return api_client(
            self.kubeconfig_path, self.context, self.cluster_config, in_cluster=self.in_cluster
        )


def api_client(
    kubeconfig_path: str | None = None,
    context: str | None = None,
    cluster_config: KubernetesClusterConfig | None = None,
    *,
    in_cluster: bool = False,
) -> client.ApiClient:
    """An ApiClient from a cluster-config block, a kubeconfig file, or in-cluster config."""
    if cluster_config is not None:
        return cluster_config.get_api_client()
    configuration = client.Configuration()
    if in_cluster:
        config.load_incluster_config(client_configuration=configuration)
        return client.ApiClient(configuration)
    path = kubeconfig_path or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    if not os.path.exists(path):
        raise ConfigError(
            f"no kubeconfig at {path}: pass --kubeconfig, set KUBECONFIG, "
            "or run 'shipyard stack up'"
        )
    try:
        config.load_kube_config(
            config_file=path, context=context, client_configuration=configuration
        )
    except (config.ConfigException, ValueError, KeyError) as exc:
        raise ConfigError(f"kubeconfig {path} is unusable: {exc}") from None
    return client.ApiClient(configuration)
