"""The CLI's step commands as flows, and the same steps without Prefect.

Each ``shipyard`` command that does work (``verify``, ``sync``, ``scan``, ``push``,
``set-image``, ``build --push``, ``backup``, ``restore-drill``) runs as a flow run when a
Prefect API answers, so a scripted step shows in the UI next to scheduled and triggered
runs. The small flows here compose the existing tasks; a check that fails (an unhealthy
rollout, a blocked scan gate) ends the run Failed with the result attached, so the
caller still prints it.

Without an API a flow's body cannot run (every task call becomes a task run), so the
commands call the same step functions (``*_steps``) with their default :data:`DIRECT`:
each task's ``.fn``, the very code a task run executes; the flows pass
:data:`TASK_RUNS`. Each ``*_steps``/``*_directly`` function takes the arguments of its
flow. Where a task also publishes to Prefect (verify's progress
artifact, a drill's report and event) the direct path calls the core that task wraps and
publishes nothing. The ``*_directly`` functions mirror the larger flows of other modules
(build_scan_push, backup, restore-drill) the same way and return what those flows return.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from prefect import Task, flow
from prefect.states import Failed

from blocks.cluster import KubernetesCluster
from blocks.docker import DockerHost
from blocks.registry import RegistryCredentials
from flows.backup import resolve_cluster, resolve_storage
from flows.build_scan_push import BuildScanPushResult
from shipyard.core.config import parse_config
from shipyard.core.registry import RegistryAccess
from tasks.backup_export import BackupConfig, BackupResult
from tasks.build_image import BuildImageConfig
from tasks.drill_report import DrillConfig, DrillResult
from tasks.push_image import PushImageConfig, PushImageResult
from tasks.scan_image import (
    ScanConfig,
    ScanImageConfig,
    ScanResult,
    ScanSourceConfig,
    TrivySettings,
    check_gate,
    gate_findings,
)
from tasks.scan_policy import ScanPolicy
from tasks.set_image import SetImageConfig, SetImageResult
from tasks.steps.dr import apply_retention, backup_cluster, publish_drill, restore_drill_task
from tasks.steps.image import build_image, push_image, scan_gate, scan_image, scan_source
from tasks.steps.rollout import sync_app, verify_rollout
from tasks.steps.worktree import commit_local_change, set_image_in_tree
from tasks.sync.config import SyncConfig, SyncResult
from tasks.verify_rollout import VerifyConfig, VerifyResult, run_verify

__all__ = [
    "DIRECT",
    "TASK_RUNS",
    "ImageEdit",
    "Steps",
    "backup_directly",
    "build_scan_push_directly",
    "push_step",
    "push_steps",
    "restore_drill_directly",
    "scan_step",
    "scan_steps",
    "set_image_step",
    "set_image_steps",
    "sync_step",
    "sync_steps",
    "verify_directly",
    "verify_step",
]

P = ParamSpec("P")
R = TypeVar("R")


class Steps:
    """How a step function calls its tasks: as task runs (inside a flow run) or directly.

    ``run`` calls a task and returns its result; ``start`` begins one and returns a
    function that waits for its result, so independent steps overlap either way.
    """

    def run(self, step: Task[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``step`` as a task run of the current flow run."""
        return step(*args, **kwargs)

    def start(self, step: Task[P, R], *args: P.args, **kwargs: P.kwargs) -> Callable[[], R]:
        """Submit ``step`` to the flow run's task runner."""
        return step.submit(*args, **kwargs).result


class _Direct(Steps):
    """Call the tasks' functions in this process: no task runs, no Prefect API."""

    def run(self, step: Task[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Call ``step.fn``."""
        return step.fn(*args, **kwargs)

    def start(self, step: Task[P, R], *args: P.args, **kwargs: P.kwargs) -> Callable[[], R]:
        """Call ``step.fn`` on a thread of its own."""
        pool = ThreadPoolExecutor(max_workers=1)
        future = pool.submit(step.fn, *args, **kwargs)
        pool.shutdown(wait=False)  # the thread ends with the call
        return future.result


TASK_RUNS = Steps()
DIRECT: Steps = _Direct()


# --- verify ---------------------------------------------------------------------------


def _unhealthy(config: VerifyConfig, result: VerifyResult) -> str:
    return (
        f"{config.workload} in {config.namespace} is not healthy: {result.reason}: {result.message}"
    )


@flow(name="verify")
def verify_step(cluster: KubernetesCluster, config: VerifyConfig) -> Any:
    """Wait until ``config.workload`` has rolled out and is healthy (``shipyard verify``).

    An unhealthy or timed-out rollout ends the run Failed with its VerifyResult attached.
    """
    result = verify_rollout(cluster, config, fail=False)
    if not result.healthy:
        return Failed(message=_unhealthy(config, result), data=result)
    return result


def verify_directly(cluster: KubernetesCluster, config: VerifyConfig) -> VerifyResult:
    """:func:`verify_step` without Prefect: the core of ``verify-rollout`` (no progress
    artifact); the result, healthy or not."""
    return run_verify(cluster.get_api_client(), config, fail=False)


# --- sync -----------------------------------------------------------------------------


def sync_steps(cluster: KubernetesCluster, config: SyncConfig, steps: Steps = DIRECT) -> SyncResult:
    """Converge the cluster to the GitOps repo with ``config``'s driver."""
    return steps.run(sync_app, cluster, config)


@flow(name="sync")
def sync_step(cluster: KubernetesCluster, config: SyncConfig) -> SyncResult:
    """``shipyard sync``: one sync (direct apply, Argo CD or Flux), as a flow run."""
    return sync_steps(cluster, config, TASK_RUNS)


# --- scan -----------------------------------------------------------------------------


def scan_steps(
    config: ScanConfig,
    policy: ScanPolicy,
    credentials: RegistryAccess | None = None,
    docker_host: DockerHost | None = None,
    steps: Steps = DIRECT,
) -> ScanResult:
    """Scan the image and (when given) its source directory side by side, then gate.

    The gate's verdict is part of the result, passed or not: the caller reports it.
    """
    settings = config.model_dump(include=set(TrivySettings.model_fields))
    image = ScanImageConfig(
        image=config.image,
        image_src=config.image_src,
        insecure=config.insecure,
        sbom_path=config.sbom_path,
        **settings,
    )
    waits = [steps.start(scan_image, image, credentials, docker_host)]
    if config.source_dir:
        source = ScanSourceConfig(source_dir=config.source_dir, **settings)
        waits.append(steps.start(scan_source, source))
    scans = [wait() for wait in waits]
    return ScanResult(
        image=config.image,
        scans=scans,
        gate=gate_findings(scans, policy),
        sbom_path=scans[0].sbom_path,
        cached=all(s.cached for s in scans),
    )


@flow(name="scan")
def scan_step(
    config: ScanConfig,
    policy: ScanPolicy,
    credentials: RegistryCredentials | None = None,
    docker_host: DockerHost | None = None,
) -> Any:
    """``shipyard scan``: scan and gate, publishing the gate's report as an artifact.

    A blocked gate ends the run Failed with the ScanResult attached.
    """
    result = scan_steps(config, policy, credentials, docker_host, TASK_RUNS)
    scan_gate(result.scans, policy, config.image, return_state=True)  # the report artifact
    if not result.gate.passed:
        return Failed(message=result.gate.summary(), data=result)
    return result


# --- push -----------------------------------------------------------------------------


def push_steps(
    config: PushImageConfig,
    docker_host: DockerHost | None = None,
    registry: RegistryAccess | None = None,
    steps: Steps = DIRECT,
) -> PushImageResult:
    """Push local tags; the immutable ``repository@sha256:...`` reference."""
    return steps.run(push_image, config, docker_host, registry)


@flow(name="push")
def push_step(
    config: PushImageConfig,
    docker_host: DockerHost | None = None,
    registry: RegistryCredentials | None = None,
) -> PushImageResult:
    """``shipyard push``: push an image's local tags, as a flow run."""
    return push_steps(config, docker_host, registry, TASK_RUNS)


# --- set-image ------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageEdit:
    """What ``set-image`` did: the edit, and the local commit when one was asked and made."""

    result: SetImageResult
    commit: str | None


def set_image_steps(
    repo_dir: str, config: SetImageConfig, commit: bool = False, steps: Steps = DIRECT
) -> ImageEdit:
    """Set the image in the working tree; with ``commit``, commit what changed there."""
    result = steps.run(set_image_in_tree, repo_dir, config)
    changed = commit and result.changed
    sha = steps.run(commit_local_change, repo_dir, config, result) if changed else None
    return ImageEdit(result, sha)


@flow(name="set-image")
def set_image_step(repo_dir: str, config: SetImageConfig, commit: bool = False) -> ImageEdit:
    """``shipyard set-image``: edit (and maybe commit) a local GitOps checkout."""
    return set_image_steps(repo_dir, config, commit, TASK_RUNS)


# --- the larger flows, directly -------------------------------------------------------


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
    built = DIRECT.run(build_image, build, docker_host, registry)
    if built.reused:
        image = ScanImageConfig(image=str(built.reference), image_src="remote", **settings)
    else:
        image = ScanImageConfig(
            image=built.local_reference, image_src="docker", identity=built.image_id, **settings
        )
    source = ScanSourceConfig(repo_url=build.repo_url, commit=build.commit, **settings)
    waits = [
        DIRECT.start(scan_image, image, registry, docker_host),
        DIRECT.start(scan_source, source),
    ]
    scans = [wait() for wait in waits]
    gate = check_gate(scans, policy or ScanPolicy(), f"{build.repository}:{build.commit}")
    if built.reused:
        digest, reference = str(built.digest), str(built.reference)
    else:
        pushed = DIRECT.run(
            push_image,
            PushImageConfig(repository=build.repository, tags=built.tags),
            docker_host,
            registry,
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


def backup_directly(
    namespaces: list[str],
    bucket: str | None = None,
    prefix: str = "shipyard-backups",
    s3_endpoint: str | None = None,
    kubeconfig: str | None = None,
    cluster: str = "default",
) -> BackupResult:
    """:func:`flows.backup.backup` (driver ``shipyard``) without Prefect: export to S3,
    apply retention; no report artifact."""
    config = parse_config(BackupConfig, {"namespaces": namespaces, "cluster": cluster})
    target = resolve_cluster(kubeconfig, cluster, None)
    storage = resolve_storage(bucket, prefix, s3_endpoint, None)
    result = DIRECT.run(backup_cluster, config, target, storage)
    DIRECT.run(apply_retention, config, storage)
    return result


def restore_drill_directly(
    bucket: str | None = None,
    prefix: str = "shipyard-backups",
    s3_endpoint: str | None = None,
    kubeconfig: str | None = None,
    backup: str = "latest",
    rto_target_seconds: float | None = None,
    cluster: str = "default",
) -> DrillResult:
    """:func:`flows.restore_drill.restore_drill` (driver ``shipyard``) without Prefect:
    the drill, recorded in the bucket's drill history (the trend); no report artifacts
    and no event, which only Prefect carries. Passed or not, the result."""
    config = parse_config(
        DrillConfig,
        {"cluster": cluster, "backup": backup, "rto_target_seconds": rto_target_seconds},
    )
    target = resolve_cluster(kubeconfig, cluster, None)
    storage = resolve_storage(bucket, prefix, s3_endpoint, None)
    result = DIRECT.run(restore_drill_task, config, target, storage)
    DIRECT.run(publish_drill, result, storage)  # what it returns is for Prefect only
    return result
