"""The drift-check flow against the simulator: detect, heal, report."""

from __future__ import annotations

from pathlib import Path

import pytest

from blocks.cluster import KubernetesCluster
from flows.drift_check import drift_check
from shipyard.core.kube import KubeClient
from tasks.detect_drift import DriftConfig
from tasks.sync_app import SyncConfig, sync
from tests.fixtures.simcluster import SimClusterHandle
from tests.tasks.k8s_objects import GitOpsRepo, kustomize_env


@pytest.mark.usefixtures("prefect_api")
@pytest.mark.slow
def test_drift_flow_heals(
    sim_cluster: SimClusterHandle, sim_namespace: str, tmp_path: Path
) -> None:
    gitops = GitOpsRepo(tmp_path)
    gitops.commit(kustomize_env("shop/web", "1"), "v1")
    kube = KubeClient(sim_cluster.api_client())
    sync(
        SyncConfig(
            driver="apply", repo=gitops.url, path="envs/dev", namespace=sim_namespace, app="web"
        ),
        kube=kube,
    )
    kube.delete(f"/api/v1/namespaces/{sim_namespace}/configmaps/web-config")
    cfg = DriftConfig(repo=gitops.url, path="envs/dev", namespace=sim_namespace, app="web")
    report = drift_check(
        KubernetesCluster(kubeconfig_path=str(sim_cluster.kubeconfig)), cfg, heal=True
    )
    assert report.drifted and report.healed
    assert [(i.object, i.change) for i in report.items] == [("ConfigMap/web-config", "missing")]
    assert kube.get(f"/api/v1/namespaces/{sim_namespace}/configmaps/web-config") is not None
