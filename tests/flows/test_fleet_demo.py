"""The demo's prod as a fleet of three: with the stack's clusters up (``stack up
--clusters 3``), seeding the demo saves one labelled KubernetesCluster block per
cluster, creates the app's namespaces in each, and turns prod in the catalog into a
fleet (canary, then the rest) that plans onto exactly those clusters. Without clusters,
prod stays one cluster (the catalog the other demo tests use)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard.core.catalog import parse_catalog
from shipyard.core.kube import KubeClient, api_client
from shipyard.demo import content
from shipyard.demo.seed import seed_fleet
from shipyard.stack.clusters import clusters_down, clusters_up, kubeconfig_of, stack_clusters
from shipyard.stack.model import StackLayout
from tasks.fleet.config import plan_environment
from tests.fixtures.services import Stack

pytestmark = [pytest.mark.usefixtures("prefect_api"), pytest.mark.slow]


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackLayout]:
    """A stack state of its own with three clusters (the session stack keeps none)."""
    layout = StackLayout(tmp_path_factory.mktemp("demo-fleet"))
    clusters_up(layout, 3)
    try:
        yield layout
    finally:
        clusters_down(layout)


def test_seeding_with_three_clusters_makes_prod_a_fleet_of_three(
    layout: StackLayout, stack: Stack
) -> None:
    from blocks.cluster import KubernetesCluster
    from flows.common import load_block
    from flows.fleet_deliver import cluster_inventory

    env = {"SHIPYARD_REGISTRY": stack.registry, "SHIPYARD_GIT_URL": stack.git_url}
    names = seed_fleet(layout, env)
    try:
        assert names == ["eu-1", "us-1", "ap-1"]
        catalog_text = subprocess.run(
            [
                "git",
                "--git-dir",
                str(Path(layout.data_dir("git")) / "gitops.git"),
                "show",
                "main:shipyard-catalog.yaml",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert catalog_text == content.catalog(stack.registry, stack.git_url, fleet="local")
        prod = parse_catalog(catalog_text).app("cart").environment("prod")
        plan = plan_environment("cart", prod, cluster_inventory(), "repo", "abc")
        assert [(w.name, w.clusters) for w in plan.waves] == [
            ("canary", ["eu-1"]),
            ("rest", ["ap-1", "us-1"]),  # block names in order
        ]
        for cluster in stack_clusters(layout):
            block = load_block(KubernetesCluster, cluster.name)
            assert block.kubeconfig_path == str(kubeconfig_of(layout, cluster))
            assert block.labels == {**cluster.labels, "fleet": "local"}
            kube = KubeClient(api_client(block.kubeconfig_path))
            assert kube.get("/api/v1/namespaces/shop-prod") is not None
        assert seed_fleet(layout, env) == names  # again: same blocks, catalog unchanged
    finally:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:  # leave the session's blocks as found
            for name in names:
                doc = client.read_block_document_by_name(name, "shipyard-kubernetes-cluster")
                client.delete_block_document(doc.id)


def test_without_clusters_prod_stays_one_cluster(tmp_path: Path) -> None:
    empty = StackLayout(tmp_path)
    assert seed_fleet(empty, {"SHIPYARD_REGISTRY": "r", "SHIPYARD_GIT_URL": "g"}) == []
    prod = parse_catalog(content.catalog("r:5000", "git://g")).app("cart").environment("prod")
    assert prod.fleet is None and prod.protected
