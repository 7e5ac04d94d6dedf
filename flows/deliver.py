"""`deliver`: one application change, from source commit or pushed image, to a verified
rollout in one environment (rolled back automatically when it is not healthy).

Started three ways: by a registry push (the bridge's event fires the deployment trigger
with ``image``/``tag``/``digest``), by ``image-poll``, or by a person in the Prefect UI
(``commit`` to build from source). Steps, each a visible task or subflow:

    read catalog -> [build -> scan -> push] or [resolve digest -> scan] -> read what git
    pins -> set image (commit + push, no lost updates) -> sync -> verify (-> revert,
    sync, verify previous)

Exactly once per app, environment and digest: one delivery at a time per app and
environment (a Prefect global concurrency limit created on first use), and under it the
flow reads what the environment's files already pin. When that is the digest asked for
(a second tag of the same push, a replayed event, a re-run) it writes nothing, re-checks
the rollout, and ends Completed "already delivered". The same commit makes no new image
either (the registry already has it).

The run tells the story: it is named ``cart→dev 5f3a2c``, logs every step's result
(digest, commit, applied objects, verify result), and a rollback ends it Failed with
"rolled back: <reason>", a ``rollback-<app>-<env>`` artifact and a
``shipyard.delivery.failed`` event.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.concurrency.sync import concurrency
from prefect.states import Completed, Failed, State
from pydantic import BaseModel, ConfigDict, Field

from blocks.cluster import KubernetesCluster
from blocks.docker import DockerHost
from blocks.gitops import GitOpsRepository
from blocks.registry import RegistryCredentials
from flows.build_scan_push import BuildScanPushResult, build_scan_push_blocking
from flows.common import (
    EVENT_DELIVERED,
    Attempt,
    Provenance,
    RollbackReport,
    ensure_limit,
    flow_run_id,
    flow_run_url,
    image_url,
    iso_z,
    load_block,
    load_optional_block,
    name_run,
    publish_provenance,
    publish_rollback,
    publish_started,
    report_blocked,
    run_name,
)
from flows.fleet_deliver import converge_fleet
from flows.sync_verify import (
    RollbackFailedError,
    RolledBackError,
    VerifyPlan,
    describe_sync,
    sync_and_verify,
    verify_delivery,
)
from shipyard.core.catalog import App, Environment
from shipyard.core.errors import ConfigError, PolicyError
from shipyard.core.limits import git_writers_limit, limit_name
from tasks.build_image import COMMITTED_LABEL, BuildImageConfig
from tasks.promote_image import image_update
from tasks.scan_image import ScanImageConfig
from tasks.scan_policy import ScanPolicy
from tasks.steps.gitops import commit_and_push, read_catalog, read_pinned
from tasks.steps.image import image_revision, resolve_digest, scan_gate, scan_image
from tasks.steps.rollout import sync_app
from tasks.sync.config import SyncConfig

__all__ = [
    "ALREADY_DELIVERED",
    "DEFAULT_OPTIONS",
    "EVENT_DELIVERED",
    "DeliverOptions",
    "Provenance",
    "converge",
    "deliver",
    "provenance_links",
    "rollback_state",
]

ALREADY_DELIVERED = "already delivered"


class DeliverOptions(BaseModel):
    """Where Shipyard finds its connections (block names), and the scan policy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gitops_block: str = Field("shipyard-gitops", description="GitOps repository block name.")
    cluster_block: str = Field("default", description="Kubernetes cluster block name.")
    registry_block: str | None = Field(
        "shipyard-registry", description="Registry credentials block; none for anonymous."
    )
    docker_block: str | None = Field(
        "shipyard-docker",
        description="Docker host block (Docker Engine API) that builds a source 'commit'; "
        "none: $DOCKER_HOST of the flow's process. Only loaded when building.",
    )
    scan: bool = Field(True, description="Scan the image (and source) before deploying.")
    fail_on: list[str] = Field(
        default_factory=lambda: ["HIGH", "CRITICAL"], description="Severities that block."
    )
    ignore_unfixed: bool = Field(False, description="Unfixed vulnerabilities never block.")
    waive_missing_vulnerability_data: bool = Field(
        False,
        description="Let an image through although trivy had no vulnerability DB (the "
        "provenance then says 'vulnerabilities NOT scanned (waived)'); off: it blocks.",
    )


DEFAULT_OPTIONS = DeliverOptions()


def _target(app: App, environment: str) -> Environment:
    env = app.environment(environment) if environment else app.environments[0]
    if env.protected:
        raise PolicyError(
            f"{app.name}/{env.name} is protected: deliver to an earlier environment and "
            "promote it with the 'promote' flow (approval in the UI)"
        )
    return env


def converge(
    cluster: KubernetesCluster,
    repository: GitOpsRepository,
    app: App,
    env: Environment,
    commit: str | None,
    digest: str,
) -> str:
    """Sync ``env`` and verify it runs ``digest``; return the synced revision.

    A new manifest ``commit`` goes through sync-and-verify with automatic rollback
    (:class:`~flows.sync_verify.RolledBackError` when it was rolled back); with no new
    commit (the files already pinned the digest) there is nothing of ours to roll back,
    so the rollout is only synced (an unchanged apply starts no rollout) and re-checked.
    An environment with ``fleet`` goes through its waves instead (``cluster`` unused;
    :func:`flows.fleet_deliver.converge_fleet`).
    """
    if env.fleet is not None:
        return converge_fleet(repository, app, env, commit, digest)
    logger = get_run_logger()
    sync = SyncConfig.for_environment(app, env, repo=repository.url, revision=commit)
    plan = VerifyPlan.for_environment(env, digest)
    if commit is not None:
        return sync_and_verify(cluster, repository, commit, sync, plan, app.name, env.name).commit
    logger.info("%s already pins %s: no commit; re-checking the rollout", env.path, digest)
    synced = sync_app(cluster, sync)
    logger.info("%s", describe_sync(synced))
    verify_delivery(cluster, plan)
    return synced.revision


def provenance_links(
    repository: GitOpsRepository,
    image: str,
    digest: str,
    gitops_commit: str | None,
    revision: str | None,
    *,
    insecure: bool = False,
) -> dict[str, str]:
    """Links for the provenance where a URL is known: run, image, commits."""
    links = {"image": image_url(image, digest, insecure=insecure)}
    if run := flow_run_url():
        links["flow_run"] = run
    for key, sha in (("gitops_commit", gitops_commit), ("synced_revision", revision)):
        if sha and (url := repository.commit_url(sha)):
            links[key] = url
    return links


def rollback_state(
    exc: RolledBackError | RollbackFailedError,
    app: App,
    environment: str,
    digest: str,
    repository: GitOpsRepository,
    *,
    insecure: bool = False,
    attempt: Attempt | None = None,
) -> State[Any]:
    """Publish a rollback on the calling run and return its Failed state, whose
    message is ``rolled back: <reason>`` (or says that the rollback failed too).
    ``attempt`` adds the ledger keys (cluster, change and deployment times) to the event."""
    ledger: dict[str, Any] = {"cause": getattr(exc, "cause", None) or "verify"}
    if attempt is not None:
        ledger.update(
            cluster=attempt.cluster,
            source_commit=attempt.source_commit or None,
            change_time=attempt.change_time or None,
            deployed_at=attempt.deployed_at,
        )
    report = RollbackReport(
        **ledger,
        app=app.name,
        environment=environment,
        digest=digest,
        commit=exc.commit,
        reason=exc.reason,
        revert_commit=exc.revert_commit,
        rollback_error=getattr(exc, "rollback_error", None) or None,
        flow_run=flow_run_id(),
        links={
            k: v
            for k, v in {
                "image": image_url(app.image, digest, insecure=insecure),
                "commit": repository.commit_url(exc.commit) if exc.commit else None,
                "revert_commit": repository.commit_url(exc.revert_commit)
                if exc.revert_commit
                else None,
            }.items()
            if v
        },
    )
    publish_rollback(report)
    get_run_logger().error("%s/%s: %s", app.name, environment, report.state_message)
    return Failed(message=report.state_message, data=exc)


def _push_run_created(trigger: str) -> str | None:
    """The change time of a push whose registry sent no time: when its automation created
    this run (seconds after the bridge received the push); None for other triggers."""
    if not trigger.startswith("registry-push"):
        return None
    from prefect.runtime import flow_run

    created = flow_run.scheduled_start_time
    return iso_z(created) if created is not None else None


def _initial_name() -> str:
    """The run's name from its parameters, before the target and digest are known."""
    from prefect.runtime import flow_run

    p: dict[str, Any] = flow_run.parameters
    ref = p.get("digest") or p.get("commit") or p.get("tag") or ""
    return run_name(str(p.get("app", "")), str(p.get("environment") or ""), str(ref))


@flow(name="deliver", flow_run_name=_initial_name)
def deliver(
    app: str,
    environment: str = "",
    commit: str = "",
    image: str = "",
    tag: str = "",
    digest: str = "",
    trigger: str = "manual",
    options: DeliverOptions = DEFAULT_OPTIONS,
    change_time: str = "",
) -> Provenance | State[Any]:
    """Deliver one change of an app to one environment: build or take the image, scan,
    pin its digest in git, sync, verify, roll back on failure.

    Args:
        app: App name from the catalog (shipyard-catalog.yaml in the GitOps repo).
        environment: Target environment; empty: the catalog's first one. Protected
            environments are reached with 'promote', never directly.
        commit: Source commit to build, scan and push; empty to deliver an already
            pushed image (give its tag or digest).
        image: Pushed image repository with registry host; optional, checked against
            the catalog.
        tag: Pushed tag, resolved to its digest in the registry.
        digest: Pushed digest (sha256:...); wins over the tag.
        trigger: What started this delivery (kept in the provenance).
        options: Connections (block names) and the scan policy.
        change_time: When the change was made (ISO 8601): the push time of a pushed
            image (the bridge passes it), or the source commit's time; kept in the
            delivery events for the ledger's lead time. Empty: unknown.
    """
    logger = get_run_logger()
    opts = options
    repository = load_block(GitOpsRepository, opts.gitops_block)
    cluster = load_block(KubernetesCluster, opts.cluster_block)
    registry = load_optional_block(RegistryCredentials, opts.registry_block)
    insecure = bool(registry is not None and registry.insecure)

    at = read_catalog(repository)
    entry = at.catalog.app(app)
    env = _target(entry, environment)
    logger.info(
        "catalog at %s: %s to %s (namespace %s, files %s on %s)",
        at.commit[:12],
        entry.name,
        env.name,
        env.namespace,
        env.path,
        env.branch,
    )
    if image and image != entry.image and at.catalog.app_for_image(image) != entry:
        raise ConfigError(f"image {image} is not {entry.name}'s image {entry.image}")
    if not (commit or tag or digest):
        raise ConfigError("say what to deliver: a source 'commit', or an image 'tag'/'digest'")
    name_run(run_name(entry.name, env.name, digest or commit or tag))

    gate = ScanPolicy(
        fail_on=tuple(opts.fail_on),
        ignore_unfixed=opts.ignore_unfixed,
        waive_missing_vulnerability_data=opts.waive_missing_vulnerability_data,
    )
    lock = limit_name("deliver", entry.name, env.name)
    ensure_limit(lock, 1)
    source_commit = commit
    attempt = Attempt(
        entry.name,
        env.name,
        cluster.name if env.fleet is None else None,  # a fleet: one record per environment
        change_time=change_time.strip() or _push_run_created(trigger),
        digest=digest or None,
        source_commit=commit or None,
        trigger=trigger,
    )
    publish_started(attempt)
    with concurrency(lock, occupy=1, strict=True), report_blocked(attempt):
        attempt.step = "build" if commit else "push"
        if commit:
            if entry.source is None:
                raise ConfigError(f"{entry.name} has no 'source' in the catalog to build from")
            docker = load_optional_block(DockerHost, opts.docker_block)
            built: BuildScanPushResult = build_scan_push_blocking(
                build=BuildImageConfig(
                    repo_url=entry.source.repo,
                    commit=commit,
                    repository=entry.image,
                    dockerfile=entry.source.dockerfile,
                    context=entry.source.context,
                    target=entry.source.target,
                    build_args=dict(entry.source.build_args),
                ),
                policy=gate,
                docker_host=docker,
                registry=registry,
            )
            pinned, scan_summary = built.digest, built.gate.verdict()
            tag = commit  # the image is tagged with its commit; the digest pins it
            # The change is the commit: its committer time starts the lead time.
            if built.built is not None and not attempt.change_time:
                attempt.change_time = built.built.labels.get(COMMITTED_LABEL)
            logger.info(
                "image of %s: %s (%s); scan %s",
                commit[:12],
                built.reference,
                "reused from the registry" if built.reused else "built and pushed",
                scan_summary,
            )
        else:
            pinned = digest or resolve_digest(entry.image, tag, registry)
            # A pushed image names its source commit in its OCI revision label.
            source_commit = image_revision(entry.image, pinned, registry) or ""
            logger.info(
                "image %s%s is %s, built from %s",
                entry.image,
                f":{tag}" if tag else "",
                pinned,
                source_commit or "an unknown commit (no org.opencontainers.image.revision label)",
            )
            scan_summary = "skipped (disabled)"
        name_run(run_name(entry.name, env.name, pinned))
        attempt.digest, attempt.source_commit = pinned, source_commit or None

        attempt.step = "scan"
        current = read_pinned(repository, env.branch, env.path, entry.image)
        already = current.digest == pinned
        if not commit and opts.scan and not already:
            scanned = scan_image(
                ScanImageConfig(image=f"{entry.image}@{pinned}", image_src="remote"),
                registry,
            )
            result = scan_gate([scanned], gate, f"{entry.image}@{pinned}")
            scan_summary = result.verdict()
            logger.info("scan of %s@%s: %s", entry.image, pinned, scan_summary)

        written_commit: str | None = None
        if already:
            logger.info(
                "%s on %s already pins %s (at %s): nothing to write",
                env.path,
                env.branch,
                pinned,
                current.commit[:12],
            )
            if not commit:
                scan_summary = "as scanned when first delivered"
        else:
            attempt.step = "gitops"
            writers = git_writers_limit(repository.url, env.branch)
            ensure_limit(writers, 1)  # writers of one repo and branch queue, not race
            written = commit_and_push(
                repository,
                [
                    image_update(
                        entry, env, tag=tag or None, digest=pinned, source_commit=source_commit
                    )
                ],
                repository.write_config(branch=env.branch, flow_run_url=flow_run_url()),
            )
            written_commit = written.commit
            logger.info(
                "%s",
                f"committed {written.commit} to {env.branch}: "
                + "; ".join(f"{c.file}: {c.old} -> {c.new}" for c in written.changes)
                if written.commit
                else f"{env.path} needed no change: no commit",
            )
        if written_commit is not None:
            attempt.changed()
        attempt.step = "verify"
        try:
            revision = converge(cluster, repository, entry, env, written_commit, pinned)
        except (RolledBackError, RollbackFailedError) as exc:
            return rollback_state(
                exc, entry, env.name, pinned, repository, insecure=insecure, attempt=attempt
            )

    outcome = ALREADY_DELIVERED if written_commit is None else "delivered"
    record = Provenance(
        app=entry.name,
        environment=env.name,
        trigger=trigger,
        source_commit=source_commit or None,
        image=f"{entry.image}{f':{tag}' if tag else ''}@{pinned}",
        digest=pinned,
        scan=scan_summary,
        gitops_commit=written_commit,
        synced_revision=revision,
        verified_at=datetime.now(UTC).isoformat(timespec="seconds"),
        flow_run=flow_run_id(),
        outcome=outcome,
        links=provenance_links(
            repository, entry.image, pinned, written_commit, revision, insecure=insecure
        ),
        cluster=attempt.cluster,
        change_time=attempt.change_time,
    )
    record = record.model_copy(update={"deployed_at": record.verified_at})
    publish_provenance(record)
    logger.info("%s/%s runs %s: %s", entry.name, env.name, pinned, outcome)
    if written_commit is None:
        return Completed(message=f"{ALREADY_DELIVERED}: {pinned}", data=record)
    return record
