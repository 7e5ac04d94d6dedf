"""The fleet rollout's steps as Prefect tasks: plan, one cluster, its rollback, a recheck.

Each wrapper names the task and calls the Prefect-free core in :mod:`tasks.fleet`. A
cluster's rollout is not retried by Prefect: its outcome (failed, unreachable) is a
report the wave decides on, and the Kubernetes client already retries single calls.
"""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NONE as NO_CACHE
from prefect.variables import Variable

from shipyard.core.catalog import Environment
from tasks.fleet.cluster import ClusterReport, recheck_cluster, roll_back_cluster, roll_cluster
from tasks.fleet.config import FleetCluster, FleetPlan, plan_environment, plan_rollout
from tasks.fleet.control import FleetControl, await_gate

__all__ = [
    "close_fleet_control",
    "fleet_gate",
    "fleet_recheck",
    "fleet_roll_back",
    "fleet_roll_cluster",
    "open_fleet_control",
    "plan_fleet",
    "plan_fleet_environment",
]


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


@task(name="plan-fleet-environment", cache_policy=NO_CACHE)
def plan_fleet_environment(
    app: str, env: Environment, clusters: list[FleetCluster], repo: str, sha: str
) -> FleetPlan:
    """The waves of a catalog environment's fleet at ``sha`` (ConfigError: bad input)."""
    return plan_environment(app, env, clusters, repo, sha)


@task(name="open-fleet-control", cache_policy=NO_CACHE)
def open_fleet_control(variable: str) -> None:
    """Create the run's control Variable (not paused, nothing skipped) for CLI and UI."""
    Variable.set(variable, FleetControl().model_dump(), overwrite=True)


@task(name="close-fleet-control", cache_policy=NO_CACHE)
def close_fleet_control(variable: str) -> None:
    """Delete the run's control Variable once the rollout ended."""
    Variable.unset(variable)


@task(name="fleet-gate", cache_policy=NO_CACHE, task_run_name="gate-{where}")
def fleet_gate(variable: str, cluster: str | None, where: str) -> str | None:
    """Wait while the rollout is paused; why ``cluster`` is skipped, or None to go on."""
    return await_gate(lambda: Variable.get(variable), cluster, say=get_run_logger().warning)
