"""The whole platform, end to end, on real services:

a push to the real registry -> its notification -> the bridge -> a Prefect event ->
the deliver deployment's trigger -> a flow run picked up by the Prefect Kubernetes
worker -> a Job in the cluster simulator whose process-backed pod runs `deliver` ->
digest pinned in the GitOps repo, applied and verified in the cluster.
"""

from __future__ import annotations

from typing import Any

import pytest

from shipyard.demo import run as demo
from tests.fixtures.services import Stack


def _image_in(stack: Stack, namespace: str) -> Any:
    from kubernetes import client

    from shipyard.core.kube import api_client

    with api_client(stack.env["KUBECONFIG"]) as api:
        deployment = client.AppsV1Api(api).read_namespaced_deployment("cart", namespace)
    return deployment.spec.template.spec.containers[0].image, deployment.status.ready_replicas


@pytest.mark.slow
@pytest.mark.usefixtures("platform")
def test_registry_push_is_delivered_through_the_kubernetes_worker(stack: Stack) -> None:
    change = demo.push_change(stack.env, stack.layout, version="2")
    run = demo.wait_for_delivery(change.commit, timeout=300, say=print)

    assert run.state.is_completed(), run.state
    assert run.parameters["digest"] == change.digest
    assert run.parameters["trigger"].startswith("registry-push:distribution:")
    image, ready = _image_in(stack, "shop-dev")
    assert image.endswith(f"@{change.digest}")
    assert ready == 1
