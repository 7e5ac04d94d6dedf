"""verify_rollout: a namespace that does not exist is a permanent error at once, named;
a workload still missing in a namespace that exists is waited for (a sync may create it)."""

from __future__ import annotations

import time

import pytest

from shipyard.core.errors import ConfigError, is_transient
from shipyard.core.kube import KubeClient
from tasks.verify_rollout import VerifyConfig, watch_rollout
from tests.fixtures.simcluster import SimClusterHandle


def test_missing_namespace_fails_at_once(sim_cluster: SimClusterHandle) -> None:
    config = VerifyConfig(namespace="no-such-ns", workload="deployment/web", timeout_seconds=60)
    started = time.monotonic()
    with pytest.raises(ConfigError, match="namespace 'no-such-ns' does not exist") as caught:
        watch_rollout(KubeClient(sim_cluster.api_client()), config)
    assert time.monotonic() - started < 5
    assert not is_transient(caught.value)  # never retried


def test_missing_workload_in_an_existing_namespace_is_waited_for(
    sim_cluster: SimClusterHandle, sim_namespace: str
) -> None:
    config = VerifyConfig(namespace=sim_namespace, workload="deployment/web", timeout_seconds=2)
    result = watch_rollout(KubeClient(sim_cluster.api_client()), config)
    assert not result.healthy and result.seconds >= 2
