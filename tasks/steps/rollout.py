"""The rollout steps as Prefect tasks: sync, verify, smoke checks, metric and anomaly gates.

Each wrapper takes its Kubernetes client from a cluster block (a
:class:`~blocks.cluster.KubernetesCluster`, or anything with ``get_api_client()``) and
calls the Prefect-free core. Sync and verify retry only transient failures; a failed
verification, smoke check or metric gate is a :class:`PolicyError` and is not retried.
Verify mirrors the rollout's progress into a Prefect progress artifact.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from prefect import task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NONE as NO_CACHE

from shipyard.core.catalog import AnomalyGate, MetricGate, SmokeCheck
from shipyard.core.errors import retry_condition
from tasks.anomaly_gate import AnomalyResult, gate_on_anomaly
from tasks.metric_gate import AnalysisResult, gate_on_metrics
from tasks.smoke_check import SmokeResult, check_smoke
from tasks.sync_app import SyncConfig, SyncResult, sync
from tasks.verify_rollout import RolloutStatus, VerifyConfig, VerifyResult, run_verify

__all__ = [
    "RolloutProgress",
    "anomaly_gate",
    "metric_gate",
    "smoke_check",
    "sync_app",
    "verify_rollout",
]


class RolloutProgress:
    """A ``progress`` callback of :func:`tasks.verify_rollout.watch_rollout` that mirrors
    the ready/desired ratio into a Prefect progress artifact (updated only on change)."""

    def __init__(self, config: VerifyConfig) -> None:
        self.config = config
        self.last = -1.0
        created = create_progress_artifact(
            0.0, description=f"rollout of {config.workload} in {config.namespace}"
        )
        assert isinstance(created, UUID)  # the sync API returns the id itself
        self.id: UUID = created

    def __call__(self, status: RolloutStatus) -> None:
        """Report one judgement of the rollout."""
        value = (
            100.0
            if status.state == "healthy"
            else (100.0 * status.ready / status.desired if status.desired else 0.0)
        )
        if value != self.last:
            self.last = value
            update_progress_artifact(
                self.id,
                value,
                description=f"{self.config.workload}: {status.ready}/{status.desired} ready "
                f"({status.state}{': ' + status.message if status.message else ''})"[:500],
            )


@task(
    name="sync-app",
    cache_policy=NO_CACHE,
    retries=3,
    retry_delay_seconds=[2, 5, 15],
    retry_condition_fn=retry_condition,
)
def sync_app(cluster: Any, config: SyncConfig) -> SyncResult:
    """Sync ``config`` on ``cluster`` (a KubernetesCluster block, or anything with
    ``get_api_client()``; unused by the REST driver)."""
    client = None if config.driver == "argocd-rest" else cluster.get_api_client()
    return sync(config, client)


@task(
    name="verify-rollout",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=[1, 5],
    retry_condition_fn=retry_condition,
)
def verify_rollout(cluster: Any, config: VerifyConfig, fail: bool = True) -> VerifyResult:
    """Wait for ``config.workload`` to be healthy; PolicyError (not retried) when not, or,
    with ``fail=False``, the unhealthy result (``shipyard verify`` reports it).

    ``cluster`` is a :class:`~blocks.cluster.KubernetesCluster` block (or anything with
    ``get_api_client()``).
    """
    progress = RolloutProgress(config)
    return run_verify(cluster.get_api_client(), config, progress=progress, fail=fail)


@task(name="smoke-check", cache_policy=NO_CACHE)
def smoke_check(check: SmokeCheck, interval_seconds: float = 1.0) -> SmokeResult:
    """Run one HTTP smoke check (:mod:`tasks.smoke_check`); PolicyError when it fails."""
    return check_smoke(check, interval_seconds)


@task(name="metric-gate", cache_policy=NO_CACHE)
def metric_gate(gate: MetricGate) -> AnalysisResult:
    """Run the analysis; PolicyError (not retried) unless it is Successful."""
    return gate_on_metrics(gate)


@task(name="anomaly-gate", cache_policy=NO_CACHE)
def anomaly_gate(gate: AnomalyGate) -> AnomalyResult:
    """Compare the new version with the baseline (Mann-Whitney U); PolicyError when worse."""
    return gate_on_anomaly(gate)
