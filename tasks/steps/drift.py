"""The drift step as a Prefect task: :func:`tasks.detect_drift.detect_drift`, retried
only on transient failures, with its Kubernetes client built from a cluster block."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NONE as NO_CACHE

from shipyard.core.errors import retry_condition
from shipyard.core.kube import KubeClient
from tasks.detect_drift import DriftConfig, DriftReport, detect_drift

__all__ = ["detect_drift_task"]


@task(
    name="detect-drift",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=retry_condition,
)
def detect_drift_task(cluster: Any, config: DriftConfig) -> DriftReport:
    """Compare the live app with git (a cluster block provides the client)."""
    return detect_drift(KubeClient(cluster.get_api_client()), config)
