"""`promote`: take the digest verified in one environment to the next, never rebuilding.

1. read the catalog; check that the source environment really runs the digest, healthy
   (promote what was verified);
2. for a protected target, pause for approval in the Prefect UI: the form shows the
   app, both environments, the digest, when it was verified and a link, and asks for an
   explicit decision, who decides and why; no answer before the timeout fails the run;
3. pin the same digest in the target's files (a push, or a pull request that must be
   merged for targets marked ``pull_request``); the approver and the reason go into the
   commit as ``Approved-by:`` and ``Reason:`` trailers and into the provenance;
4. sync and verify the target, rolling back on failure (the run then ends Failed with
   "rolled back: <reason>", a ``rollback-<app>-<env>`` artifact and a
   ``shipyard.delivery.failed`` event); provenance artifact and event.

The run is named ``cart→prod 5f3a2c`` once the digest is known.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from prefect import flow, get_run_logger
from prefect.concurrency.sync import concurrency
from prefect.states import State
from pydantic import Field

from blocks.cluster import KubernetesCluster
from blocks.gitops import GitOpsRepository
from blocks.registry import RegistryCredentials
from flows.approval import Approval, ApprovalRequest, request_approval
from flows.common import (
    Attempt,
    Provenance,
    ensure_limit,
    flow_run_id,
    flow_run_url,
    load_block,
    load_optional_block,
    name_run,
    publish_provenance,
    run_name,
)
from flows.deliver import (
    DEFAULT_OPTIONS,
    DeliverOptions,
    converge,
    provenance_links,
    rollback_state,
)
from flows.sync_verify import RollbackFailedError, RolledBackError, VerifyPlan, verify_delivery
from shipyard.core.errors import PermanentError
from shipyard.core.git import approval_trailers
from shipyard.core.limits import git_writers_limit, limit_name
from tasks.promote_image import PromoteImageConfig
from tasks.pull_request import PullRequestConfig
from tasks.steps.gitops import commit_and_push, plan_promote, pull_request, read_catalog


def _initial_name() -> str:
    """The run's name from its parameters, before the plan names target and digest."""
    from prefect.runtime import flow_run

    p: dict[str, Any] = flow_run.parameters
    target = p.get("to_environment") or "next"
    return f"{p.get('app', '')} {p.get('from_environment', 'dev')}→{target}"


@flow(name="promote", flow_run_name=_initial_name)
def promote(
    app: str,
    from_environment: str = "dev",
    to_environment: str = "",
    digest: str = "",
    approval_timeout_seconds: Annotated[int, Field(ge=10)] = 3600,
    options: DeliverOptions = DEFAULT_OPTIONS,
) -> Provenance | State[Any]:
    """Promote the digest verified in one environment of an app to the next one.

    Args:
        app: App name from the catalog (shipyard-catalog.yaml in the GitOps repo).
        from_environment: Environment whose verified image is promoted.
        to_environment: Target environment; empty: the next one in the catalog.
        digest: Digest verified in the source (sha256:...); empty: what the source pins.
        approval_timeout_seconds: How long a protected promotion waits for approval
            (at least 10 s); no answer fails the run.
        options: Connections (block names).
    """
    logger = get_run_logger()
    opts = options
    repository = load_block(GitOpsRepository, opts.gitops_block)
    cluster = load_block(KubernetesCluster, opts.cluster_block)
    registry = load_optional_block(RegistryCredentials, opts.registry_block)
    insecure = bool(registry is not None and registry.insecure)

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
    name_run(run_name(app, target.name, pinned))
    # The source's health is re-checked, not its canary analysis: the comparison window
    # of that delivery is over (its baseline may be gone), so no anomaly gate here.
    recheck = VerifyPlan.for_environment(source, pinned).model_copy(update={"anomaly": None})
    verify_delivery(cluster, recheck, prefix="source-")
    verified_at = datetime.now(UTC).isoformat(timespec="seconds")
    logger.info("%s/%s runs %s healthy; promoting to %s", app, source.name, pinned, target.name)

    answer: Approval | None = None
    if target.protected:
        answer = request_approval(
            ApprovalRequest(
                app=app,
                from_environment=source.name,
                to_environment=target.name,
                image=f"{plan.update.set_image.image}@{pinned}",
                digest=pinned,
                verified_at=verified_at,
                verified_in=source.namespace,
                link=flow_run_url(),
            ),
            approval_timeout_seconds,
        )
        logger.info("approved by %s: %s", answer.approver, answer.reason)

    lock = limit_name("deliver", app, target.name)
    ensure_limit(lock, 1)
    with concurrency(lock, occupy=1, strict=True):
        # An approved promotion's commit names who approved it and why (git trailers).
        trailers = approval_trailers(answer.approver, answer.reason) if answer else {}
        write = repository.write_config(
            branch=target.branch, flow_run_url=flow_run_url(), trailers=trailers
        )
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
        logger.info(
            "%s", f"committed {commit} to {target.branch}" if commit else "no change: no commit"
        )
        # The ledger's keys; the change's time is the source environment's (derived).
        on = cluster.name if target.fleet is None else None  # a fleet: per environment
        attempt = Attempt(app, target.name, on, digest=pinned)
        attempt.source_commit = plan.update.source_commit or None
        if commit:
            attempt.changed()
        try:
            revision = converge(cluster, repository, entry, target, commit, pinned)
        except (RolledBackError, RollbackFailedError) as exc:
            return rollback_state(
                exc, entry, target.name, pinned, repository, insecure=insecure, attempt=attempt
            )

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
        approver=answer.approver if answer else None,
        reason=answer.reason if answer else None,
        links=provenance_links(
            repository, entry.image, pinned, commit, revision, insecure=insecure
        ),
        cluster=attempt.cluster,
        outcome="delivered" if commit else "already delivered",
    )
    record = record.model_copy(update={"deployed_at": record.verified_at})
    publish_provenance(record)
    return record
