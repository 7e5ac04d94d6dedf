"""Errors no retry can fix fail at once: a Docker socket that does not exist, and an image
digest the registry does not have (MANIFEST_UNKNOWN). Each is shown on the real services
(a podman socket path, the stack's registry, real trivy) and through the real Prefect
tasks with their real retry settings, counting the attempts the server recorded."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect import flow
from prefect.client.orchestration import get_client

from blocks.docker import DockerHost
from shipyard.core.errors import ConfigError, PermanentError, TransientError, is_transient
from tasks.build_image import BuildImageConfig
from tasks.resolve_digest import resolve_digest_of
from tasks.scan_image import ScanImageConfig, run_image_scan
from tasks.steps.image import build_image, resolve_digest, scan_image
from tests.fixtures.services import Stack
from tests.tasks.images import AppRepo, unique_repository

MISSING = "sha256:" + "0" * 64


def _attempts(task_run_id: UUID) -> tuple[bool, int, str]:
    """Whether the task run failed, how many times the server says it ran, its message."""
    with get_client(sync_client=True) as client:
        run = client.read_task_run(task_run_id)
    assert run.state is not None
    return run.state.is_failed(), run.run_count, str(run.state.message)


@flow(name="permanent-errors-probe")
def _probe(step: Any, *args: Any) -> UUID:
    """Run one real task (its own retry settings) and hand back its task run's ID."""
    state = step(*args, return_state=True)
    return UUID(str(state.state_details.task_run_id))


# --- the Docker Engine API -------------------------------------------------------------------


def test_missing_socket_is_permanent_and_says_what_to_set(tmp_path: Path) -> None:
    url = f"unix://{tmp_path}/podman/podman.sock"  # the stack's socket name, not started
    started = time.monotonic()
    with pytest.raises(PermanentError) as exc:
        DockerHost(base_url=url).get_client()
    assert time.monotonic() - started < 1
    message = str(exc.value)
    assert f"{tmp_path}/podman/podman.sock does not exist" in message
    assert "DOCKER_HOST" in message and "DockerHost block" in message
    assert not is_transient(exc.value)


def test_socket_that_refuses_is_transient(tmp_path: Path) -> None:
    path = tmp_path / "refusing.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))  # the file exists, nothing accepts: an engine that is down
    try:
        with pytest.raises(TransientError, match="unreachable"):
            DockerHost(base_url=f"unix://{path}", timeout=5).get_client()
    finally:
        server.close()


def test_build_task_with_missing_socket_runs_once(
    prefect_api: str,
    stack: Stack,
    make_app_repo: Callable[[dict[str, str]], AppRepo],
    tmp_path: Path,
) -> None:
    app = make_app_repo({"Dockerfile": "FROM scratch\n"})
    build = BuildImageConfig(
        repo_url=app.url, commit=app.commit, repository=unique_repository(stack, "nosock")
    )
    host = DockerHost(base_url=f"unix://{tmp_path}/run/podman.sock")
    started = time.monotonic()
    failed, attempts, message = _attempts(_probe(build_image, build, host))
    elapsed = time.monotonic() - started
    assert failed
    assert attempts == 1, message  # build_image retries transient errors twice (5 s, 30 s)
    assert elapsed < 5
    assert "does not exist" in message and "DOCKER_HOST" in message


# --- a digest the registry does not have -----------------------------------------------------


def test_resolving_a_missing_digest_is_permanent(stack: Stack) -> None:
    image = f"{stack.registry}/test/absent"
    with pytest.raises(ConfigError, match="MANIFEST_UNKNOWN"):
        resolve_digest_of(image, MISSING, None)


def test_scanning_a_missing_digest_is_permanent(stack: Stack, tmp_path: Path) -> None:
    config = ScanImageConfig(
        image=f"{unique_repository(stack, 'absent')}@{MISSING}",
        cache_dir=str(tmp_path / "trivy"),
        result_cache_dir=str(tmp_path / "scans"),
        sbom=False,
    )
    with pytest.raises(ConfigError) as exc:
        run_image_scan(config)
    assert "MANIFEST_UNKNOWN" in str(exc.value) and not is_transient(exc.value)


@pytest.mark.parametrize("step", ["resolve", "scan"])
def test_missing_digest_tasks_run_once(
    prefect_api: str, stack: Stack, tmp_path: Path, step: str
) -> None:
    image = unique_repository(stack, "absent")
    started = time.monotonic()
    if step == "resolve":
        run_id = _probe(resolve_digest, image, MISSING)
    else:
        config = ScanImageConfig(
            image=f"{image}@{MISSING}",
            cache_dir=str(tmp_path / "trivy"),
            result_cache_dir=str(tmp_path / "scans"),
        )
        run_id = _probe(scan_image, config)
    failed, attempts, message = _attempts(run_id)
    elapsed = time.monotonic() - started
    assert failed
    assert attempts == 1, message  # retried ~40 s (scan) before MANIFEST_UNKNOWN was permanent
    assert "MANIFEST_UNKNOWN" in message
    assert elapsed < 15  # a retry would wait 5 s (scan: 5 s then 30 s) before trying again
