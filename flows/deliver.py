"""`deliver`: one application change, from source commit or pushed image, to a verified
rollout in one environment (rolled back automatically when it is not healthy).

Started three ways: by a registry push (the bridge's event fires the deployment trigger
with ``image``/``tag``/``digest``), by ``image-poll``, or by a person in the Prefect UI
(``commit`` to build from source). Steps, each a visible task or subflow:

    read catalog -> [build -> scan -> push] or [resolve digest -> scan] -> set image
    (commit + push, no lost updates) -> sync -> verify (-> revert, sync, verify previous)

Idempotent: the same commit makes no new image (the registry already has it), no new
GitOps commit (the file already pins the digest) and no push. One delivery at a time per
app and environment (a Prefect global concurrency limit created on first use).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from prefect import flow, get_run_logger
from prefect.concurrency.sync import concurrency
from pydantic import BaseModel, ConfigDict, Field

from blocks.cluster import KubernetesCluster
from blocks.gitops import GitOpsRepository
from blocks.registry import RegistryCredentials
from flows.build_scan_push import BuildScanPushResult, build_scan_push_blocking
from flows.common import (
    EVENT_DELIVERED,
    Provenance,
    ensure_limit,
    flow_run_id,
    load_block,
    load_optional_block,
    publish_provenance,
)
from flows.sync_verify import VerifyPlan, sync_and_verify, verify_delivery
from shipyard.core.catalog import App, Environment
from shipyard.core.errors import ConfigError, PolicyError
from shipyard.core.limits import git_writers_limit, limit_name
from tasks.build_image import BuildImageConfig
from tasks.promote_image import image_update
from tasks.scan_image import ScanImageConfig
from tasks.scan_policy import ScanPolicy
from tasks.steps.gitops import commit_and_push, read_catalog
from tasks.steps.image import resolve_digest, scan_gate, scan_image
from tasks.steps.rollout import sync_app
from tasks.sync.config import SyncConfig

__all__ = [
    "DEFAULT_OPTIONS",
    "EVENT_DELIVERED",
    "DeliverOptions",
    "Provenance",
    "converge",
    "deliver",
]


class DeliverOptions(BaseModel):
    """Where Shipyard finds its connections (block names), and the scan policy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gitops_block: str = Field("shipyard-gitops", description="GitOps repository block name.")
    cluster_block: str = Field("default", description="Kubernetes cluster block name.")
    registry_block: str | None = Field(
        "shipyard-registry", description="Registry credentials block; none for anonymous."
    )
    scan: bool = Field(True, description="Scan the image (and source) before deploying.")
    fail_on: list[str] = Field(
        default_factory=lambda: ["HIGH", "CRITICAL"], description="Severities that block."
    )
    ignore_unfixed: bool = Field(False, description="Unfixed vulnerabilities never block.")


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

    A new manifest ``commit`` goes through sync-and-verify with automatic rollback; with
    no new commit (the file already pinned the digest) there is nothing of ours to roll
    back, so the rollout is only synced and re-checked.
    """
    sync = SyncConfig.for_environment(app, env, repo=repository.url, revision=commit)
    plan = VerifyPlan.for_environment(env, digest)
    if commit is not None:
        return sync_and_verify(cluster, repository, commit, sync, plan, app.name, env.name).commit
    get_run_logger().info(
        "%s already pins %s: no commit; re-checking the rollout", env.path, digest
    )
    revision = sync_app(cluster, sync).revision
    verify_delivery(cluster, plan)
    return revision


@flow(name="deliver")
def deliver(
    app: Annotated[str, Field(description="App name from the catalog.")],
    environment: Annotated[
        str, Field(description="Target environment; empty: the catalog's first one.")
    ] = "",
    commit: Annotated[
        str, Field(description="Source commit to build; empty for an already pushed image.")
    ] = "",
    image: Annotated[
        str, Field(description="Pushed image repository with registry host (optional check).")
    ] = "",
    tag: Annotated[str, Field(description="Pushed tag, resolved to its digest.")] = "",
    digest: Annotated[str, Field(description="Pushed digest (sha256:...); wins over tag.")] = "",
    trigger: Annotated[str, Field(description="What started this delivery.")] = "manual",
    options: Annotated[
        DeliverOptions, Field(description="Connections and scan policy.")
    ] = DEFAULT_OPTIONS,
) -> Provenance:
    """Deliver one change of ``app`` to ``environment``; see the module docstring."""
    opts = options
    repository = load_block(GitOpsRepository, opts.gitops_block)
    cluster = load_block(KubernetesCluster, opts.cluster_block)
    registry = load_optional_block(RegistryCredentials, opts.registry_block)

    at = read_catalog(repository)
    entry = at.catalog.app(app)
    env = _target(entry, environment)
    if image and image != entry.image and at.catalog.app_for_image(image) != entry:
        raise ConfigError(f"image {image} is not {entry.name}'s image {entry.image}")
    if not (commit or tag or digest):
        raise ConfigError("say what to deliver: a source 'commit', or an image 'tag'/'digest'")

    gate = ScanPolicy(fail_on=tuple(opts.fail_on), ignore_unfixed=opts.ignore_unfixed)
    lock = limit_name("deliver", entry.name, env.name)
    ensure_limit(lock, 1)
    with concurrency(lock, occupy=1, strict=True):
        if commit:
            if entry.source is None:
                raise ConfigError(f"{entry.name} has no 'source' in the catalog to build from")
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
                registry=registry,
            )
            pinned, scan_summary = built.digest, _summary(built.gate.counts, built.gate.passed)
            tag = commit  # the image is tagged with its commit; the digest pins it
        else:
            pinned = digest or resolve_digest(entry.image, tag, registry)
            scan_summary = "skipped (disabled)"
            if opts.scan:
                scanned = scan_image(
                    ScanImageConfig(image=f"{entry.image}@{pinned}", image_src="remote"),
                    registry,
                )
                result = scan_gate([scanned], gate, f"{entry.image}@{pinned}")
                scan_summary = _summary(result.counts, result.passed)

        writers = git_writers_limit(repository.url, env.branch)
        ensure_limit(writers, 1)  # writers of one repo and branch queue, not race
        written = commit_and_push(
            repository,
            [image_update(entry, env, tag=tag or None, digest=pinned, source_commit=commit)],
            repository.write_config(branch=env.branch),
        )
        revision = converge(cluster, repository, entry, env, written.commit, pinned)

    record = Provenance(
        app=entry.name,
        environment=env.name,
        trigger=trigger,
        source_commit=commit or None,
        image=f"{entry.image}{f':{tag}' if tag else ''}@{pinned}",
        digest=pinned,
        scan=scan_summary,
        gitops_commit=written.commit,
        synced_revision=revision,
        verified_at=datetime.now(UTC).isoformat(timespec="seconds"),
        flow_run=flow_run_id(),
    )
    publish_provenance(record)
    return record


def _summary(counts: dict[str, int], passed: bool) -> str:
    found = ", ".join(f"{k} {v}" for k, v in counts.items() if v) or "no findings"
    return f"{'passed' if passed else 'blocked'} ({found})"
