"""The image steps as Prefect tasks: build, scan (image, source, gate), the SBOM artifact,
push, ECR login, resolve a tag's digest, read an image's source revision, poll a
repository's tags.

Each task calls a Prefect-free core (``tasks.build_image``, ``tasks.scan_image``,
``tasks.push_image``, ``tasks.resolve_digest``, ``tasks.poll_tags``) and adds only what
Prefect gives: retries of transient failures, the run logger the core logs into, and the
scan gate's markdown artifact. Blocks are passed straight through: the cores accept
anything shaped like their connection settings.
"""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE, NONE
from pydantic import SecretStr

from blocks.docker import DockerHost
from blocks.registry import EcrRegistry
from shipyard.core.errors import retry_condition
from shipyard.core.registry import RegistryAccess, RegistryAuth
from tasks.build_image import BuildImageConfig, BuildImageResult, run_build
from tasks.poll_tags import TagPolicy, newest_allowed_tag
from tasks.push_image import PushImageConfig, PushImageResult, login_ecr_for, run_push
from tasks.resolve_digest import image_revision_of, resolve_digest_of
from tasks.scan_image import (
    ScanImageConfig,
    ScanSourceConfig,
    TrivyScan,
    check_gate,
    publish_sbom_report,
    run_image_scan,
    run_source_scan,
)
from tasks.scan_policy import GateResult, ScanPolicy
from tasks.steps import run_logger

__all__ = [
    "build_image",
    "image_revision",
    "login_ecr",
    "poll_tags",
    "publish_sbom",
    "push_image",
    "resolve_digest",
    "scan_gate",
    "scan_image",
    "scan_source",
]


def _scan_gate_artifact(markdown: str, description: str) -> None:
    """Publish the gate's report as the run's ``scan-gate`` markdown artifact."""
    create_markdown_artifact(key="scan-gate", markdown=markdown, description=description)


def _sbom_artifact(key: str, markdown: str, description: str) -> None:
    """Publish an image's SBOM as the keyed markdown artifact ``key``."""
    create_markdown_artifact(key=key, markdown=markdown, description=description)


@task(
    cache_policy=NO_CACHE,  # side effects and secrets: never cache by inputs
    name="build_image",
    retries=2,
    retry_delay_seconds=[5, 30],
    retry_condition_fn=retry_condition,
)
def build_image(
    config: BuildImageConfig,
    docker_host: DockerHost | None = None,
    registry: RegistryAccess | None = None,
) -> BuildImageResult:
    """Build the image of ``config.commit`` (or reuse the registry's); see :func:`run_build`."""
    return run_build(config, docker_host, registry, log=run_logger())


@task(
    cache_policy=NO_CACHE,  # side effects and secrets: never cache by inputs
    name="scan_image",
    retries=2,
    retry_delay_seconds=[5, 30],
    retry_condition_fn=retry_condition,
)
def scan_image(
    config: ScanImageConfig,
    registry: RegistryAccess | None = None,
    docker_host: DockerHost | None = None,
) -> TrivyScan:
    """``trivy image`` + CycloneDX SBOM of the built image (cached by digest/ID and DB)."""
    return run_image_scan(config, registry, docker_host)


@task(
    cache_policy=NO_CACHE,  # side effects and secrets: never cache by inputs
    name="scan_source",
    retries=2,
    retry_delay_seconds=[5, 30],
    retry_condition_fn=retry_condition,
)
def scan_source(config: ScanSourceConfig) -> TrivyScan:
    """``trivy fs`` on the source at the commit: secrets, misconfigurations, dependencies."""
    return run_source_scan(config)


@task(
    cache_policy=NO_CACHE,  # side effects and secrets: never cache by inputs
    name="scan_gate",
)
def scan_gate(scans: list[TrivyScan], policy: ScanPolicy, subject: str) -> GateResult:
    """Apply the policy; publish a markdown artifact; PolicyError naming what blocked."""
    return check_gate(scans, policy, subject, publish=_scan_gate_artifact)


@task(cache_policy=NO_CACHE, name="publish_sbom")
def publish_sbom(sbom_path: str | None, app: str, digest: str, subject: str) -> str | None:
    """Publish the scan's CycloneDX SBOM as the artifact ``sbom-<app>-<short digest>``."""
    return publish_sbom_report(sbom_path, app, digest, subject, publish=_sbom_artifact)


@task(
    cache_policy=NO_CACHE,  # side effects and secrets: never cache by inputs
    name="push_image",
    retries=3,
    retry_delay_seconds=[5, 15, 45],
    retry_condition_fn=retry_condition,
)
def push_image(
    config: PushImageConfig,
    docker_host: DockerHost | None = None,
    registry: RegistryAccess | None = None,
    ecr: EcrRegistry | None = None,
) -> PushImageResult:
    """Push the image and return its immutable ``repository@sha256:...`` reference."""
    return run_push(config, docker_host, registry, ecr, log=run_logger())


@task(
    cache_policy=NO_CACHE,  # side effects and secrets: never cache by inputs
    name="login_ecr",
    retries=2,
    retry_delay_seconds=[5, 15],
    retry_condition_fn=retry_condition,
)
def login_ecr(ecr: EcrRegistry, repository: str) -> RegistryAuth:
    """ECR login (and repository creation) ahead of the build's reuse check and the push."""
    return login_ecr_for(ecr, repository)


@task(
    name="resolve-digest",
    cache_policy=NONE,
    retries=3,
    retry_delay_seconds=[2, 10, 30],  # rides out a 30 s registry outage, as git's steps do
    retry_condition_fn=retry_condition,
)
def resolve_digest(image: str, tag: str, credentials: RegistryAccess | None = None) -> str:
    """Prefect task around :func:`tasks.resolve_digest.resolve_digest_of`."""
    return resolve_digest_of(image, tag, credentials)


@task(
    name="image-revision",
    cache_policy=NONE,
    retries=3,
    retry_delay_seconds=[2, 10, 30],  # rides out a 30 s registry outage, as git's steps do
    retry_condition_fn=retry_condition,
)
def image_revision(
    image: str, reference: str, credentials: RegistryAccess | None = None
) -> str | None:
    """The image's ``org.opencontainers.image.revision`` label (its source commit)."""
    return image_revision_of(image, reference, credentials)


@task(
    name="poll-tags", retries=3, retry_delay_seconds=[2, 5, 15], retry_condition_fn=retry_condition
)
def poll_tags(
    registry: str,
    repository: str,
    policy: TagPolicy,
    *,
    username: str | None = None,
    password: SecretStr | None = None,
    insecure: bool = False,
) -> str | None:
    """List the repository's tags and return the newest one the policy allows."""
    return newest_allowed_tag(
        registry, repository, policy, username=username, password=password, insecure=insecure
    )
