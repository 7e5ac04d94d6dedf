"""The fleet rollout's steps as Prefect tasks: plan, one cluster, its rollback, a recheck.

Each wrapper names the task and calls the Prefect-free core in :mod:`tasks.fleet`. A
cluster's rollout is not retried by Prefect: its outcome (failed, unreachable) is a
report the wave decides on, and the Kubernetes client already retries single calls.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE as NO_CACHE

from tasks.fleet.cluster import ClusterReport, recheck_cluster, roll_back_cluster, roll_cluster
from tasks.fleet.config import FleetPlan, plan_rollout

__all__ = ["fleet_recheck", "fleet_roll_back", "fleet_roll_cluster", "plan_fleet"]


@task(name="plan-fleet-rollout", cache_policy=NO_CACHE)
def plan_fleet(fleet_file: str, repo_dir: str, revision: str) -> FleetPlan:
    """Load the fleet file and check everything (ConfigError: bad input)."""
    return plan_rollout(fleet_file, repo_dir, revision)


@task(name="roll-out-cluster", cache_policy=NO_CACHE, task_run_name="roll-out-{name}")
def fleet_roll_cluster(plan: FleetPlan, name: str) -> ClusterReport:
    """Take cluster ``name`` to the plan's revision and verify it there."""
    return roll_cluster(plan, name)


@task(name="roll-back-cluster", cache_policy=NO_CACHE, task_run_name="roll-back-{report.name}")
def fleet_roll_back(plan: FleetPlan, report: ClusterReport, why: str) -> ClusterReport:
    """Put a cluster back to the revision it ran before."""
    return roll_back_cluster(plan, report, why)


@task(name="recheck-cluster", cache_policy=NO_CACHE, task_run_name="recheck-{name}")
def fleet_recheck(plan: FleetPlan, name: str) -> str | None:
    """Why a baked cluster is no longer healthy at the revision (None when it is)."""
    return recheck_cluster(plan, name)
