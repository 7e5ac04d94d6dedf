"""The shared scenarios on the simulator, and on a real cluster when one is configured.

The real-cluster half is opt-in: set ``SHIPYARD_REAL_KUBECONFIG`` to a kubeconfig of a
disposable cluster (kind, k3d, ...) and run ``pytest -m realcluster tests/simcluster``.
Each scenario runs in its own fresh namespace, deleted afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.fixtures.simcluster import SimClusterHandle
from tests.simcluster.scenarios import SCENARIOS as _BASE
from tests.simcluster.scenarios_needs2 import SCENARIOS_NEEDS2
from tests.simcluster.scenarios_start import START_SCENARIOS

SCENARIOS = [*_BASE, *START_SCENARIOS, *SCENARIOS_NEEDS2]

Scenario = Callable[[Any, str], None]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_scenario_on_simulator(
    scenario: Scenario, sim_cluster: SimClusterHandle, sim_namespace: str
) -> None:
    scenario(sim_cluster.api_client(), sim_namespace)


@pytest.mark.realcluster
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_scenario_on_real_cluster(scenario: Scenario, real_api: Any, real_namespace: str) -> None:
    scenario(real_api, real_namespace)
