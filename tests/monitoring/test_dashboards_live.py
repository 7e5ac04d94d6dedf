"""Every dashboard query returns data from the stack's live Prometheus.

On the deployed demo platform (the same fixture as the end-to-end tests: seeded demo,
flows deployed, bridge and Kubernetes worker running), the test does what a demo day
does: a change pushed as CI would and delivered by the automation through the worker,
a backup and a restore drill, a drift check, and an Argo CD Application that synced.
Then every PromQL query of ``deployments/monitoring/dashboards/*.json`` (Grafana's
variables filled in as "All", see :mod:`tests.monitoring.dashboards`) runs against the
stack's real Prometheus, which scrapes the real exporter, bridge, simulator and Prefect;
each must return at least one series. Queries are retried until a deadline (the
exporter refreshes and Prometheus scrapes every 5 s, and ``increase`` needs two
samples), and the failure lists every query that stayed empty.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from shipyard.core.kube import KubeClient
from shipyard.demo import content
from shipyard.demo import run as demo
from shipyard.demo.seed import DemoSeed
from tests.fakes.operators.crds import install_crds
from tests.fixtures.services import Stack
from tests.flows.conftest import platform  # noqa: F401 - the deployed demo platform
from tests.monitoring.dashboards import DashboardQuery, dashboard_queries

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

DEADLINE_SECONDS = 180.0


def _query(prometheus: str, promql: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": promql}, timeout=10)
    assert answer.status_code == 200, f"{promql}: {answer.text}"
    data = answer.json()["data"]
    if data["resultType"] in ("scalar", "string"):
        return [{"value": data["result"]}]
    result: list[dict[str, Any]] = data["result"]
    return result


def _synced_application(kube: KubeClient, seed: DemoSeed) -> None:
    """An Argo CD Application of the demo app whose last sync succeeded (the simulator
    reports it as argocd_app_info and counts the operation in argocd_app_sync_total)."""
    install_crds(kube)
    kube.apply(
        kube.resource("v1", "Namespace"),
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "argocd"}},
        "dashboards-test",
    )
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    kube.apply(
        kube.resource("argoproj.io/v1alpha1", "Application"),
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {"name": "cart-dashboards", "namespace": "argocd"},
            "spec": {
                "project": "default",
                "source": {"repoURL": seed.gitops_url, "path": f"envs/dev/{content.APP}"},
                "destination": {
                    "server": "https://kubernetes.default.svc",
                    "namespace": content.NAMESPACES["dev"],
                },
            },
            "status": {
                "sync": {"status": "Synced"},
                "health": {"status": "Healthy"},
                "operationState": {"phase": "Succeeded", "startedAt": now, "finishedAt": now},
            },
        },
        "dashboards-test",
    )


def _demo_day(stack: Stack, seed: DemoSeed) -> None:
    """A delivery through the automation, a backup and a drill, a drift check, Argo CD."""
    from flows.backup import backup
    from flows.drift_watch import drift_watch
    from flows.restore_drill import restore_drill

    change = demo.push_change(stack.env, stack.layout, version=f"dash-{uuid.uuid4().hex[:6]}")
    run = demo.wait_for_delivery(change.commit, timeout=600)
    assert run.state is not None and run.state.is_completed(), run.state
    backup(
        namespaces=[content.NAMESPACES["dev"]],
        storage_block="shipyard-backups",
        cluster_block="default",
    )
    restore_drill(
        storage_block="shipyard-backups",
        cluster_block="default",
        rto_target_seconds=900,
        rpo_target_seconds=90000,
    )
    drift_watch(apps=[content.APP])
    _synced_application(KubeClient.from_kubeconfig(stack.env["KUBECONFIG"]), seed)


def test_every_dashboard_query_returns_data_after_a_demo_day(
    stack: Stack,
    prefect_api: str,
    platform: DemoSeed,  # noqa: F811 - the fixture imported above
) -> None:
    queries = dashboard_queries()
    assert queries, "no dashboard queries found"
    _demo_day(stack, platform)

    pending: list[DashboardQuery] = list(queries)
    deadline = time.monotonic() + DEADLINE_SECONDS
    while pending and time.monotonic() < deadline:
        pending = [q for q in pending if not _query(stack.prometheus_url, q.promql)]
        if pending:
            time.sleep(5)
    empty = "\n".join(f"  {q}: {q.promql}" for q in pending)
    assert not pending, (
        f"{len(pending)} of {len(queries)} dashboard queries returned no data:\n{empty}"
    )

    # What the demo prints: both URLs, and the delivery counted in Prometheus.
    lines = demo.monitoring_lines(stack.env, content.APP)
    assert lines[0].strip().startswith(f"Prometheus:       {stack.prometheus_url}/graph?g0.expr=")
    assert f"of {content.APP} counted" in lines[1], lines
    assert stack.alertmanager_url in lines[2]
