"""An alert, end to end, on real services:

an Argo CD Application of the demo app goes OutOfSync in the cluster simulator (and the
app's live Deployment drifts from git) -> the simulator's ``argocd_app_info`` -> the
stack's real Prometheus, with a test-only copy of the ArgoSyncFailed rule (``for: 0s``)
-> the stack's real Alertmanager -> the bridge's ``POST /hooks/alertmanager`` -> a
``shipyard.alert.firing`` Prefect event -> the drift-check deployment's automation ->
a flow run on the Kubernetes worker that heals the app (and the alert resolves once the
Application is gone).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from shipyard.core.kube import KubeClient
from shipyard.demo import content
from shipyard.demo.seed import DemoSeed
from shipyard.stack import monitoring
from tasks.detect_drift import DriftConfig, detect_drift
from tests.fakes.operators.crds import install_crds
from tests.fixtures.services import Stack

APPLICATION = "cart-dev"
NAMESPACE = content.NAMESPACES["dev"]
RULES_NAME = "test-e2e-argo"


def _test_rules() -> str:
    """Only the OutOfSync ArgoSyncFailed rule of Shipyard's rules, with ``for: 0s``."""
    from shipyard.stack.monitoring_rules import load_rule_groups, render_rules_file, with_for

    groups = with_for(load_rule_groups(), {"ArgoSyncFailed": "0s"})
    rules = [
        rule
        for group in groups
        for rule in group["rules"]
        if rule.get("alert") == "ArgoSyncFailed" and "argocd_app_info" in str(rule["expr"])
    ]
    assert rules, "ArgoSyncFailed on argocd_app_info is not in the rules"
    return render_rules_file([{"name": "e2e-test.argo", "rules": rules}])


def _query(stack: Stack, promql: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{stack.prometheus_url}/api/v1/query", params={"query": promql})
    answer.raise_for_status()
    result: list[dict[str, Any]] = answer.json()["data"]["result"]
    return result


def _wait(what: str, check: Any, timeout: float, interval: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout:.0f}s")


def _application(seed: DemoSeed) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": APPLICATION, "namespace": "argocd"},
        "spec": {
            "project": "default",
            "source": {"repoURL": seed.gitops_url, "path": f"envs/dev/{content.APP}"},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": NAMESPACE},
        },
        "status": {"sync": {"status": "OutOfSync"}, "health": {"status": "Healthy"}},
    }


def _alert_events(stack: Stack) -> list[dict[str, Any]]:
    query = {
        "event": {"name": ["shipyard.alert.firing"]},
        "resource": {"id_prefix": ["shipyard.alert.ArgoSyncFailed."]},
        "order": "ASC",
    }
    answer = httpx.post(
        f"{stack.prefect_api_url}/events/filter", json={"filter": query, "limit": 50}, timeout=10
    )
    answer.raise_for_status()
    events: list[dict[str, Any]] = answer.json()["events"]
    return events


def _drift_runs(since: datetime) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["drift-check"]))
        )
    return [
        r
        for r in runs
        if r.created is not None and r.created >= since and r.parameters.get("apps") == ["cart"]
    ]


@pytest.fixture
def argo_rule(stack: Stack) -> Iterator[None]:
    """The test-only rule in the stack's Prometheus, for this test only."""
    path = monitoring.add_rules(stack.layout, RULES_NAME, _test_rules())
    monitoring.reload_prometheus(stack.prometheus_url)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        monitoring.reload_prometheus(stack.prometheus_url)


@pytest.mark.slow
@pytest.mark.usefixtures("argo_rule")
def test_argo_out_of_sync_alert_heals_the_app_through_the_automation(
    stack: Stack, platform: DemoSeed
) -> None:
    kube = KubeClient.from_kubeconfig(stack.env["KUBECONFIG"])
    drift = DriftConfig(
        repo=platform.gitops_url,
        path=f"envs/dev/{content.APP}",
        namespace=NAMESPACE,
        app=content.APP,
        managed_by="shipyard",
    )
    install_crds(kube)
    namespaces = kube.resource("v1", "Namespace")
    kube.apply(
        namespaces, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "argocd"}}, "e2e"
    )
    deployment = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{content.APP}"
    if kube.get(deployment) is not None:  # the app runs (a delivery came first): drift it
        kube.merge_patch(deployment, {"spec": {"replicas": 3}})
    assert detect_drift(kube, drift).drifted

    since = datetime.now(UTC)
    applications = kube.resource("argoproj.io/v1alpha1", "Application")
    kube.apply(applications, _application(platform), "e2e")
    try:
        # The simulator reports it, the real Prometheus fires the test copy of the rule...
        _wait(
            "argocd_app_info OutOfSync in Prometheus",
            lambda: _query(
                stack, f'argocd_app_info{{name="{APPLICATION}",sync_status="OutOfSync"}}'
            ),
            60,
        )
        firing = _wait(
            "ArgoSyncFailed firing in Prometheus",
            lambda: _query(
                stack,
                f'ALERTS{{alertname="ArgoSyncFailed",name="{APPLICATION}",alertstate="firing"}}',
            ),
            60,
        )
        assert firing[0]["metric"]["cluster"] == monitoring.MAIN_CLUSTER
        # ... Alertmanager holds it and sends it to the bridge, which makes it an event ...
        _wait(
            "the alert in Alertmanager",
            lambda: httpx.get(
                f"{stack.alertmanager_url}/api/v2/alerts",
                params={"filter": "alertname=ArgoSyncFailed"},
            ).json(),
            60,
        )
        (event, *_) = _wait(
            "a shipyard.alert.firing event in Prefect", lambda: _alert_events(stack), 90
        )
        assert event["resource"]["shipyard.alert.label.name"] == APPLICATION
        assert event["payload"]["app"] == content.APP and event["payload"]["environment"] == "dev"
        # ... whose automation starts drift-check for the app, on the worker, which heals it.
        runs = _wait("a drift-check run for cart", lambda: _drift_runs(since), 120)
        done = _wait(
            "the drift-check run finished",
            lambda: [r for r in _drift_runs(since) if r.state is not None and r.state.is_final()],
            300,
            interval=2.0,
        )
        assert done[0].id == runs[0].id or len(runs) > 1
        assert done[0].state.is_completed(), done[0].state
        assert done[0].parameters["heal"] is True
        assert not detect_drift(kube, drift).drifted
    finally:
        kube.delete(applications.path("argocd", APPLICATION))
    # Without the Application the series ends and the alert is resolved.
    _wait(
        "ArgoSyncFailed resolved",
        lambda: not _query(stack, f'ALERTS{{alertname="ArgoSyncFailed",name="{APPLICATION}"}}'),
        90,
    )
