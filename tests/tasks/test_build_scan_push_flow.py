"""The build_scan_push flow on the real Prefect server: steps, artifacts, digest, reuse,
and a blocked gate that stops the push."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from uuid import UUID

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
    TaskRunFilter,
)

from blocks.docker import DockerHost
from flows.build_scan_push import BuildScanPushResult, build_scan_push_blocking
from tasks.build_image import BuildImageConfig
from tasks.scan_image import TrivySettings
from tests.fixtures.services import Stack
from tests.tasks.images import AppRepo, unique_repository

DOCKERFILE = """\
FROM {base}
RUN mkdir -p /app && echo "{body}" > /app/index.txt
USER 1000
HEALTHCHECK CMD ["cat", "/app/index.txt"]
"""


def _run(**kwargs: object) -> tuple[UUID, object]:
    state = build_scan_push_blocking(return_state=True, **kwargs)
    flow_run_id = state.state_details.flow_run_id
    assert flow_run_id is not None
    return flow_run_id, state


def _artifacts(flow_run_id: UUID, *keys: str) -> dict[str, str]:
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["scan-gate", "image-reference", *keys])
            ),
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
        )
    return {str(a.key): str(a.data) for a in artifacts}


def _logs(flow_run_id: UUID, until: Callable[[list[str]], bool]) -> list[str]:
    """The run's log messages (logs are shipped in batches: wait up to 15 s for them)."""
    deadline = time.monotonic() + 15
    while True:
        with get_client(sync_client=True) as client:
            logs = client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
            )
        messages = [log.message for log in logs]
        if until(messages) or time.monotonic() > deadline:
            return messages
        time.sleep(0.5)


def _task_names(flow_run_id: UUID) -> set[str]:
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            task_run_filter=TaskRunFilter(),
        )
    return {r.name.rsplit("-", 1)[0] for r in runs}


@pytest.mark.slow
def test_flow_delivers_then_redelivers_from_the_registry(
    prefect_api: str,
    stack: Stack,
    docker_host: DockerHost,
    base_image: str,
    make_app_repo: Callable[[dict[str, str]], AppRepo],
    tmp_path: Path,
) -> None:
    app = make_app_repo({"Dockerfile": DOCKERFILE.format(base=base_image, body="shop v1")})
    build = BuildImageConfig(
        repo_url=app.url,
        commit=app.commit,
        repository=unique_repository(stack, "flow"),
        extra_tags=["main"],
    )
    trivy = TrivySettings(
        cache_dir=str(tmp_path / "trivy"),
        result_cache_dir=str(tmp_path / "scans"),
        db_repository=stack.env["SHIPYARD_TRIVY_DB_REPOSITORY"],  # the stack's DB artifact
    )
    run_id, state = _run(build=build, trivy=trivy, docker_host=docker_host, app="Shop_Flow")
    assert state.is_completed(), state  # type: ignore[attr-defined]
    first: BuildScanPushResult = state.result()  # type: ignore[attr-defined]
    assert not first.reused and first.gate.passed
    assert first.gate.vulnerabilities_scanned and first.gate.verdict() == "passed (no findings)"
    assert first.reference == f"{build.repository}@{first.digest}"
    assert _task_names(run_id) >= {
        "build_image",
        "scan_image",
        "scan_source",
        "scan_gate",
        "push_image",
    }
    messages = _logs(run_id, until=lambda ms: any("shop v1" in m for m in ms))
    assert any("shop v1" in m for m in messages)  # RUN output reached the Prefect logs
    assert any(m.startswith("STEP 2/") for m in messages)
    sbom_key = f"sbom-shop-flow-{first.digest.removeprefix('sha256:')[:12]}"
    assert first.sbom_artifact == sbom_key
    artifacts = _artifacts(run_id, sbom_key)
    assert first.reference in artifacts["image-reference"]
    assert f"artifact `{sbom_key}`" in artifacts["image-reference"]
    assert "| CRITICAL | 0 |" in artifacts["scan-gate"]
    assert "NOT scanned" not in artifacts["scan-gate"]
    sbom = artifacts[sbom_key]  # the SBOM itself, readable where the flow pod is gone
    assert f"# SBOM of `{first.reference}`" in sbom and "CycloneDX" in sbom
    assert '"bomFormat": "CycloneDX"' in sbom

    again_id, again_state = _run(build=build, trivy=trivy, docker_host=docker_host)
    again: BuildScanPushResult = again_state.result()  # type: ignore[attr-defined]
    assert again.reused and again.reference == first.reference
    assert "push_image" not in _task_names(again_id)
    assert "cached" in _artifacts(again_id)["scan-gate"]


@pytest.mark.slow
def test_blocked_gate_fails_the_flow_and_pushes_nothing(
    prefect_api: str,
    stack: Stack,
    docker_host: DockerHost,
    base_image: str,
    make_app_repo: Callable[[dict[str, str]], AppRepo],
    tmp_path: Path,
) -> None:
    key = "AKIA" + "QYLPMN5HHHFPZAM2"
    app = make_app_repo(
        {"Dockerfile": DOCKERFILE.format(base=base_image, body=f"aws_access_key_id={key}")}
    )
    build = BuildImageConfig(
        repo_url=app.url, commit=app.commit, repository=unique_repository(stack, "blocked")
    )
    trivy = TrivySettings(
        cache_dir=str(tmp_path / "trivy"), result_cache_dir=str(tmp_path / "scans")
    )
    run_id, state = _run(build=build, trivy=trivy, docker_host=docker_host)
    assert state.is_failed()  # type: ignore[attr-defined]
    assert "aws-access-key-id" in str(state.message)  # type: ignore[attr-defined]
    assert "push_image" not in _task_names(run_id)
    gate_md = _artifacts(run_id)["scan-gate"]
    assert "aws-access-key-id" in gate_md and key not in gate_md
    head = httpx.head(f"http://{stack.registry}/v2/{build.path}/manifests/{build.commit}")
    assert head.status_code == 404
