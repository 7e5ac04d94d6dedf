"""Fault injection: switchable at run time via the fixture handle and over HTTP."""

from __future__ import annotations

import time

import httpx
import pytest
import urllib3
from kubernetes import client
from kubernetes.client.rest import ApiException
from simcluster.faults import FaultRule

from tests.fixtures.simcluster import SimClusterHandle


@pytest.fixture
def core(sim_cluster: SimClusterHandle) -> client.CoreV1Api:
    return client.CoreV1Api(sim_cluster.api_client())


def test_429_with_retry_after_for_a_count(
    sim_cluster: SimClusterHandle, core: client.CoreV1Api, sim_namespace: str
) -> None:
    sim_cluster.faults.add(kind="429", verb="list", resource="configmaps", count=2, retry_after=3)
    for _ in range(2):
        with pytest.raises(ApiException) as err:
            core.list_namespaced_config_map(sim_namespace)
        assert err.value.status == 429
        assert err.value.headers["Retry-After"] == "3"
    core.list_namespaced_config_map(sim_namespace)  # the count is used up
    core.list_namespaced_pod(sim_namespace)  # other resources were never affected


def test_500_and_503_only_for_the_chosen_verb(
    sim_cluster: SimClusterHandle, core: client.CoreV1Api, sim_namespace: str
) -> None:
    sim_cluster.faults.add(kind="503", verb="create", resource="configmaps")
    sim_cluster.faults.add(kind="500", verb="get", resource="secrets", count=1)
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map(
            sim_namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="x"))
        )
    assert err.value.status == 503
    with pytest.raises(ApiException) as err:
        core.read_namespaced_secret("any", sim_namespace)
    assert err.value.status == 500
    core.list_namespaced_config_map(sim_namespace)
    sim_cluster.faults.clear()
    core.create_namespaced_config_map(
        sim_namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="x"))
    )


def test_dropped_connection(
    sim_cluster: SimClusterHandle, core: client.CoreV1Api, sim_namespace: str
) -> None:
    sim_cluster.faults.add(kind="drop", resource="configmaps", count=1)
    with pytest.raises((urllib3.exceptions.HTTPError, ApiException, ConnectionError)):
        core.list_namespaced_config_map(sim_namespace)
    core.list_namespaced_config_map(sim_namespace)


def test_slow_responses(
    sim_cluster: SimClusterHandle, core: client.CoreV1Api, sim_namespace: str
) -> None:
    sim_cluster.faults.add(kind="slow", resource="configmaps", delay=0.4, count=1)
    start = time.monotonic()
    core.list_namespaced_config_map(sim_namespace)
    assert time.monotonic() - start >= 0.4


def test_probability_is_seeded_and_partial(sim_cluster: SimClusterHandle) -> None:
    from simcluster.faults import FaultInjector

    injector = FaultInjector(seed=7)
    injector.add(FaultRule(kind="500", probability=0.5))
    hits = sum(injector.pick("get", "pods", "ns") is not None for _ in range(200))
    assert 60 < hits < 140


def test_http_endpoint_switches_faults(sim_cluster: SimClusterHandle, sim_namespace: str) -> None:
    url = f"{sim_cluster.url}/_sim/faults"
    resp = httpx.post(
        url, json={"rules": [{"kind": "503", "verb": "get", "resource": "configmaps", "count": 1}]}
    )
    assert resp.status_code == 200 and resp.json()["rules"][0]["kind"] == "503"
    got = httpx.get(f"{sim_cluster.url}/api/v1/namespaces/{sim_namespace}/configmaps/x")
    assert got.status_code == 503 and got.json()["reason"] == "ServiceUnavailable"
    assert httpx.get(url).json()["rules"][0]["count"] == 0
    bad = httpx.post(url, json={"rules": [{"kind": "teapot"}]})
    assert bad.status_code == 400
    assert httpx.delete(url).json() == {"rules": []}
