"""`promote`: take the digest verified in one environment to the next, never rebuilding.

1. read the catalog; check that the source environment really runs the digest, healthy
   (promote what was verified);
2. for a protected target, pause for approval in the Prefect UI (who, why; no answer
   before the timeout fails the run);
3. pin the same digest in the target's files (a push, or a pull request that must be
   merged for targets marked ``pull_request``);
4. sync and verify the target, rolling back on failure; provenance artifact and event.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from prefect import flow, get_run_logger
from prefect.concurrency.sync import concurrency
from pydantic import Field

from blocks.cluster import KubernetesCluster
from blocks.gitops import GitOpsRepository
from flows.approval import request_approval
from flows.common import Provenance, ensure_limit, flow_run_id, load_block, publish_provenance
from flows.deliver import DEFAULT_OPTIONS, DeliverOptions, converge
from flows.sync_verify import VerifyPlan, verify_delivery
from shipyard.core.errors import PermanentError
from shipyard.core.limits import git_writers_limit, limit_name
from tasks.promote_image import PromoteImageConfig
from tasks.pull_request import PullRequestConfig
from tasks.steps.gitops import commit_and_push, plan_promote, pull_request, read_catalog


@flow(name="promote")
def promote(
    app: Annotated[str, Field(description="App name from the catalog.")],
    from_environment: Annotated[
        str, Field(description="Environment whose verified image is promoted.")
    ] = "dev",
    to_environment: Annotated[
        str, Field(description="Target; empty: the next one in the catalog.")
    ] = "",
    digest: Annotated[
        str, Field(description="Digest verified in the source; empty: what it pins.")
    ] = "",
    approval_timeout_seconds: Annotated[
        int, Field(ge=10, description="How long a protected promotion waits for approval.")
    ] = 3600,
    options: Annotated[
        DeliverOptions, Field(description="Connections (blocks).")
    ] = DEFAULT_OPTIONS,
) -> Provenance:
    """Promote ``app`` from ``from_environment``; see the module docstring."""
    logger = get_run_logger()
    opts = options
    repository = load_block(GitOpsRepository, opts.gitops_block)
    cluster = load_block(KubernetesCluster, opts.cluster_block)

    entry = read_catalog(repository).catalog.app(app)
    plan = plan_promote(
        repository,
        PromoteImageConfig(
            app=app,
            from_environment=from_environment,
            to_environment=to_environment or None,
            digest=digest or None,
        ),
    )
    pinned = plan.update.set_image.digest
    if pinned is None:  # plan_promote refuses this already; keep the type checker honest
        raise PermanentError(f"{app}: nothing to promote (no digest)")
    source, target = plan.source, plan.target
    verify_delivery(cluster, VerifyPlan.for_environment(source, pinned), prefix="source-")
    logger.info("%s/%s runs %s healthy; promoting to %s", app, source.name, pinned, target.name)

    if target.protected:
        request_approval(
            f"{app} {source.name} to {target.name}",
            f"- image: `{plan.update.set_image.image}@{pinned}`\n"
            f"- verified running in {source.name} (namespace `{source.namespace}`)",
            approval_timeout_seconds,
        )

    lock = limit_name("deliver", app, target.name)
    ensure_limit(lock, 1)
    with concurrency(lock, occupy=1, strict=True):
        write = repository.write_config(branch=target.branch)
        if target.pull_request:
            opened = pull_request(
                repository,
                [plan.update],
                PullRequestConfig(
                    wait_for_merge=True, merge_timeout_seconds=approval_timeout_seconds
                ),
                write,
            )
            commit = opened.merged_commit
        else:
            writers = git_writers_limit(repository.url, target.branch)
            ensure_limit(writers, 1)
            commit = commit_and_push(repository, [plan.update], write).commit
        revision = converge(cluster, repository, entry, target, commit, pinned)

    record = Provenance(
        app=app,
        environment=target.name,
        trigger=f"promote:{source.name}",
        source_commit=plan.update.source_commit or None,
        image=f"{plan.update.set_image.image}@{pinned}",
        digest=pinned,
        scan=f"as verified in {source.name}",
        gitops_commit=commit,
        synced_revision=revision,
        verified_at=datetime.now(UTC).isoformat(timespec="seconds"),
        flow_run=flow_run_id(),
    )
    publish_provenance(record)
    return record
