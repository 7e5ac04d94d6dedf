"""`build_scan_push`: the first half of a delivery, from an app commit to an image digest.

build -> (image scan || source scan) -> gate -> push -> SBOM. Each step is a task
(visible in the Prefect UI); the gate publishes a markdown artifact with counts by
severity and blocking findings (and whether vulnerabilities were scanned at all), the
image's CycloneDX SBOM becomes the keyed artifact ``sbom-<app>-<short digest>``, and
the flow publishes the immutable ``repository@sha256:...`` reference that every later
step deploys. A re-delivery of the same commit finds the
image in the registry (build and push skipped) and the scans in the report cache.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import acreate_markdown_artifact
from pydantic import BaseModel, Field

from blocks.docker import DockerHost
from blocks.registry import EcrRegistry, RegistryCredentials
from shipyard.core.registry import RegistryAccess
from tasks.build_image import BuildImageConfig, BuildImageResult
from tasks.push_image import PushImageConfig
from tasks.scan_image import ScanImageConfig, ScanSourceConfig, TrivySettings, with_db_mirror
from tasks.scan_policy import GateResult, ScanPolicy
from tasks.steps.image import (
    build_image,
    login_ecr,
    publish_sbom,
    push_image,
    scan_gate,
    scan_image,
    scan_source,
)


class BuildScanPushResult(BaseModel):
    """What the rest of the delivery needs: the digest reference, and the evidence."""

    repository: str
    commit: str
    tags: list[str]
    digest: str = Field(description="sha256:... of the pushed manifest.")
    reference: str = Field(description="repository@digest: deploy this, never a tag.")
    reused: bool = Field(description="The registry already had this commit's image.")
    gate: GateResult
    sbom_path: str | None = Field(
        None, description="CycloneDX SBOM file where the scan ran (local runs, the CLI)."
    )
    sbom_artifact: str | None = Field(
        None, description="Key of the SBOM's Prefect artifact: sbom-<app>-<short digest>."
    )
    built: BuildImageResult | None = Field(None, description="What the build step returned.")


@flow(name="build_scan_push")
async def build_scan_push(
    build: BuildImageConfig,
    policy: ScanPolicy | None = None,
    trivy: TrivySettings | None = None,
    docker_host: DockerHost | None = None,
    registry: RegistryCredentials | None = None,
    ecr: EcrRegistry | None = None,
    harbor_api_url: str | None = None,
    app: str | None = None,
) -> BuildScanPushResult:
    """Build the commit's image, scan image and source in parallel, gate, push by digest.

    Async only for speed: Prefect's engine ends an async flow run about 0.8 s sooner than
    a sync one (no heartbeat-thread join), which is most of a re-delivery's cost. The
    steps themselves are the sync tasks; from sync code call
    :func:`build_scan_push_blocking`. ``app`` names the SBOM artifact (default: the
    repository's last path segment).
    """
    policy = policy or ScanPolicy()
    access: RegistryAccess | None = registry
    if ecr is not None:
        access = login_ecr(ecr, build.repository)
    settings = with_db_mirror(trivy or TrivySettings(), registry).model_dump()
    built = build_image(build, docker_host, access)
    if built.reused:
        image = ScanImageConfig(image=str(built.reference), image_src="remote", **settings)
    else:
        image = ScanImageConfig(
            image=built.local_reference, image_src="docker", identity=built.image_id, **settings
        )
    image_scan = scan_image.submit(image, access, docker_host)
    source_scan = scan_source.submit(
        ScanSourceConfig(repo_url=build.repo_url, commit=build.commit, **settings)
    )
    subject = f"{build.repository}:{build.commit}"
    scans = [image_scan.result(), source_scan.result()]
    gate = scan_gate(scans, policy, subject, wait_for=[image_scan, source_scan])
    sbom_path = scans[0].sbom_path
    if built.reused:
        digest, reference = str(built.digest), str(built.reference)
    else:
        pushed = push_image(
            PushImageConfig(
                repository=build.repository, tags=built.tags, harbor_api_url=harbor_api_url
            ),
            docker_host,
            access,
        )
        digest, reference = pushed.digest, pushed.reference
    sbom_key = publish_sbom(
        sbom_path, app or build.repository.rsplit("/", 1)[-1], digest, reference
    )
    await acreate_markdown_artifact(
        key="image-reference",
        markdown=(
            f"# Image of `{build.commit}`\n\n"
            f"- reference: `{reference}`\n"
            f"- tags: {', '.join(f'`{t}`' for t in built.tags)}\n"
            f"- reused from the registry: {'yes' if built.reused else 'no'}\n"
            f"- SBOM: artifact `{sbom_key or 'none'}`\n"
        ),
        description=reference,
    )
    return BuildScanPushResult(
        repository=build.repository,
        commit=build.commit,
        tags=built.tags,
        digest=digest,
        reference=reference,
        reused=built.reused,
        gate=gate,
        sbom_path=sbom_path,
        sbom_artifact=sbom_key,
        built=built,
    )


def build_scan_push_blocking(**kwargs: Any) -> Any:
    """Run :func:`build_scan_push` from sync code (a sync flow, the CLI, a bench).

    Inside a flow run this is a subflow of it, as a direct call would be.
    """
    from prefect.utilities.asyncutils import run_coro_as_sync

    return run_coro_as_sync(build_scan_push(**kwargs))
