"""The shared scenarios on the simulator, and on a real cluster when one is configured.

The real-cluster half is opt-in: set ``SHIPYARD_REAL_KUBECONFIG`` to a kubeconfig of a
disposable cluster (kind, k3d, ...) and run ``pytest -m realcluster tests/simcluster``.
Each scenario runs in its own fresh namespace, deleted afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client, config

from simcluster.testing import SimClusterHandle
from tests.simcluster.scenarios import SCENARIOS

Scenario = Callable[[Any, str], None]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_scenario_on_simulator(
    scenario: Scenario, sim_cluster: SimClusterHandle, sim_namespace: str
) -> None:
    scenario(sim_cluster.api_client(), sim_namespace)


@pytest.fixture(scope="module")
def real_api() -> Iterator[Any]:
    path = os.environ.get("SHIPYARD_REAL_KUBECONFIG")
    if not path:
        pytest.skip("set SHIPYARD_REAL_KUBECONFIG to run the real-cluster suite")
    api = config.new_client_from_config(config_file=path)
    yield api
    api.close()


@pytest.fixture
def real_namespace(real_api: Any) -> Iterator[str]:
    core = client.CoreV1Api(real_api)
    name = f"shipyard-it-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        core.delete_namespace(name)


@pytest.mark.realcluster
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_scenario_on_real_cluster(scenario: Scenario, real_api: Any, real_namespace: str) -> None:
    scenario(real_api, real_namespace)
