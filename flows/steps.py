"""What the CLI runs when no Prefect API answers: the same step code, without Prefect.

A flow's own body needs Prefect's API (every task call becomes a task run), so a CLI
command that cannot reach one calls the steps' task functions (``.fn``: the very code a
task run executes) in the flow's order. Each function here mirrors one flow and returns
what that flow returns; the flow stays the one that runs whenever an API is reachable.
"""

from __future__ import annotations

from blocks.docker import DockerHost
from flows.build_scan_push import BuildScanPushResult
from shipyard.core.registry import RegistryAccess
from tasks.build_image import BuildImageConfig
from tasks.push_image import PushImageConfig
from tasks.scan_image import ScanImageConfig, ScanSourceConfig, TrivySettings, check_gate
from tasks.scan_policy import ScanPolicy
from tasks.steps.image import build_image, push_image, scan_image, scan_source

__all__ = ["build_scan_push_directly"]


def build_scan_push_directly(
    build: BuildImageConfig,
    policy: ScanPolicy | None = None,
    trivy: TrivySettings | None = None,
    docker_host: DockerHost | None = None,
    registry: RegistryAccess | None = None,
) -> BuildScanPushResult:
    """:func:`flows.build_scan_push.build_scan_push` without Prefect: build, scan image
    and source, gate (PolicyError when blocked: nothing is pushed), push by digest."""
    settings = (trivy or TrivySettings()).model_dump()
    built = build_image.fn(build, docker_host, registry)
    if built.reused:
        image = ScanImageConfig(image=str(built.reference), image_src="remote", **settings)
    else:
        image = ScanImageConfig(
            image=built.local_reference, image_src="docker", identity=built.image_id, **settings
        )
    scans = [
        scan_image.fn(image, registry, docker_host),
        scan_source.fn(ScanSourceConfig(repo_url=build.repo_url, commit=build.commit, **settings)),
    ]
    gate = check_gate(scans, policy or ScanPolicy(), f"{build.repository}:{build.commit}")
    if built.reused:
        digest, reference = str(built.digest), str(built.reference)
    else:
        pushed = push_image.fn(
            PushImageConfig(repository=build.repository, tags=built.tags), docker_host, registry
        )
        digest, reference = pushed.digest, pushed.reference
    return BuildScanPushResult(
        repository=build.repository,
        commit=build.commit,
        tags=built.tags,
        digest=digest,
        reference=reference,
        reused=built.reused,
        gate=gate,
        sbom_path=scans[0].sbom_path,
        built=built,
    )
