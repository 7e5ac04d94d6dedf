"""`drift-check` for a schedule: every catalog app environment compared with git.

Reads the catalog, runs the ``drift-check`` subflow for each app environment (optionally
healing by syncing), and publishes one summary table; the subflows publish the details
and an event per drifted environment.
"""

from __future__ import annotations

from typing import Annotated, Any, cast

from prefect import flow
from prefect.artifacts import create_table_artifact
from prefect.states import State
from pydantic import Field

from blocks.cluster import KubernetesCluster
from blocks.gitops import GitOpsRepository
from flows.common import load_block
from flows.deliver import DEFAULT_OPTIONS, DeliverOptions
from flows.drift_check import DriftConfig, DriftReport, drift_check, drift_check_fleet
from tasks.fleet.survey import FleetSweep
from tasks.steps.gitops import read_catalog
from tasks.sync.config import SyncConfig


@flow(name="drift-watch")
def drift_watch(
    apps: Annotated[
        list[str] | None, Field(description="Apps to check; default every app in the catalog.")
    ] = None,
    heal: Annotated[bool, Field(description="Sync drifted environments back to git.")] = False,
    include_protected: Annotated[
        bool, Field(description="Also check protected environments (never healed).")
    ] = True,
    options: Annotated[DeliverOptions, Field(description="Connections (blocks).")] = (
        DEFAULT_OPTIONS
    ),
) -> dict[str, int]:
    """Check each app environment; return the number of differences per ``app/env``
    (-1 for a fleet environment with a cluster that could not be checked)."""
    opts = options
    repository = load_block(GitOpsRepository, opts.gitops_block)
    cluster = load_block(KubernetesCluster, opts.cluster_block)
    catalog = read_catalog(repository).catalog
    wanted = set(apps or [a.name for a in catalog.apps])
    summary: dict[str, int] = {}
    for app in catalog.apps:
        if app.name not in wanted:
            continue
        for env in app.environments:
            if env.protected and not include_protected:
                continue
            if env.fleet is not None:
                # Every cluster of the fleet, with its own table and events; a cluster
                # that cannot be checked fails that subflow, not the watch.
                state = cast(
                    "State[Any]",
                    drift_check_fleet(
                        app=app.name,
                        environment=env.name,
                        gitops_block=opts.gitops_block,
                        return_state=True,
                    ),
                )
                sweep = state.result(raise_on_failure=False)
                rows = sweep.clusters if isinstance(sweep, FleetSweep) else []
                summary[f"{app.name}/{env.name}"] = (
                    sum(len(r.drifted) for r in rows) if state.is_completed() else -1
                )
                continue
            config = DriftConfig(
                repo=repository.url,
                path=env.path,
                namespace=env.namespace,
                branch=env.branch,
                app=app.name,
                managed_by="shipyard" if env.sync.driver == "apply" else env.sync.driver,
            )
            sync = SyncConfig.for_environment(app, env, repo=repository.url, revision=None)
            report: DriftReport = drift_check.with_options(
                flow_run_name=f"drift-{app.name}-{env.name}"
            )(cluster, config, heal and not env.protected, sync)
            summary[f"{app.name}/{env.name}"] = len(report.items)
    create_table_artifact(
        key="drift-summary",
        table=[{"environment": k, "differences": v} for k, v in summary.items()],
        description=f"{sum(1 for v in summary.values() if v)} of {len(summary)} drifted",
    )
    return summary
