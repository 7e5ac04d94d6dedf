"""Build step: real builds with RUN steps through podman's Docker API, real registry reuse."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from blocks.docker import DockerHost
from shipyard.core.errors import PermanentError
from shipyard.core.oci import split_repository
from tasks.build_image import (
    COMMITTED_LABEL,
    FINGERPRINT_LABEL,
    BuildImageConfig,
    BuildLog,
    build_fingerprint,
    find_existing,
    image_tags,
    oci_labels,
    run_build,
)
from tasks.push_image import PushImageConfig, run_push
from tests.fixtures.services import Stack
from tests.tasks.images import APP_DOCKERFILE, AppRepo, unique_repository

SHA = "a" * 40


def config(**kw: object) -> BuildImageConfig:
    base: dict[str, object] = {
        "repo_url": "git://u:tok@git.example/app.git",
        "commit": SHA,
        "repository": "registry.example:5000/shop/cart",
    }
    base.update(kw)
    return BuildImageConfig.model_validate(base)


# --- pure core -----------------------------------------------------------------------------


def test_tags_labels_and_fingerprint() -> None:
    cfg = config(extra_tags=["1.2.3", SHA, "main"])
    assert image_tags(cfg) == [SHA, "1.2.3", "main"]
    labels = oci_labels(cfg, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert labels["org.opencontainers.image.revision"] == SHA
    assert labels["org.opencontainers.image.source"] == "git://git.example/app.git"
    assert labels["org.opencontainers.image.created"] == "2026-01-02T03:04:05Z"
    assert labels[FINGERPRINT_LABEL] == build_fingerprint(cfg)
    # tags and cache sources do not change the image; inputs do
    assert build_fingerprint(cfg) == build_fingerprint(config(cache_from=["x/y:1"]))
    assert build_fingerprint(cfg) != build_fingerprint(config(build_args={"A": "1"}))
    assert build_fingerprint(cfg) != build_fingerprint(config(commit="b" * 40))


def test_config_rejects_what_cannot_be_built() -> None:
    for bad in (
        {"commit": "abc123"},
        {"repository": "reg.example/shop/cart:1.0"},
        {"repository": "reg.example/Shop/Cart"},
        {"dockerfile": "../Dockerfile"},
        {"extra_tags": ["bad tag"]},
    ):
        with pytest.raises(ValidationError):
            config(**bad)
    assert split_repository("127.0.0.1:5000/a/b") == ("127.0.0.1:5000", "a/b")
    assert split_repository("nginx") == ("docker.io", "library/nginx")


def test_build_log_finds_failing_step_across_chunks() -> None:
    log = BuildLog()
    events = [
        {"stream": "STEP 1/3: FROM base\n"},
        {"stream": "STEP 2/3: RUN make"},
        {"stream": "\ncompiling\nerror: no rule\n"},
        {"errorDetail": {"message": 'building at STEP "RUN make": exit status 2'}},
    ]
    lines = [line for e in events for line in log.feed(e)]
    assert lines == ["STEP 1/3: FROM base", "STEP 2/3: RUN make", "compiling", "error: no rule"]
    message = log.failure()
    assert "STEP 2/3: RUN make" in message and "error: no rule" in message
    assert "exit status 2" in message


# --- real engine -----------------------------------------------------------------------------


def test_build_with_run_steps_labels_and_tags(
    stack: Stack,
    docker_host: DockerHost,
    base_image: str,
    make_app_repo: Callable[[dict[str, str]], AppRepo],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="shipyard.build")
    app = make_app_repo(
        {"Dockerfile": APP_DOCKERFILE.format(base=base_image), "app.txt": "version 1\n"}
    )
    cfg = BuildImageConfig(
        repo_url=app.url,
        commit=app.commit,
        repository=unique_repository(stack, "build"),
        build_args={"GREETING": "hello from RUN"},
        extra_tags=["v1"],
    )
    result = run_build(cfg, docker_host)
    assert not result.reused and result.image_id
    logged = [r.getMessage() for r in caplog.records if r.name == "shipyard.build"]
    assert "hello from RUN" in logged  # RUN output streamed into the logger
    assert any(line.startswith("STEP 3/") and "RUN echo" in line for line in logged)
    image = docker_host.get_client().images.get(f"{cfg.repository}:v1")
    labels = image.labels
    assert labels["org.opencontainers.image.revision"] == app.commit
    assert labels["org.opencontainers.image.source"] == app.url
    assert labels[FINGERPRINT_LABEL] == result.fingerprint
    committed = subprocess.run(
        ["git", "-C", str(app.bare), "show", "-s", "--format=%ct", app.commit],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    expected = datetime.fromtimestamp(int(committed), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert labels[COMMITTED_LABEL] == expected  # the change time of a commit delivery
    assert f"{cfg.repository}:{app.commit}" in image.tags


def test_failing_step_is_permanent_and_quotes_it(
    stack: Stack,
    docker_host: DockerHost,
    base_image: str,
    make_app_repo: Callable[[dict[str, str]], AppRepo],
) -> None:
    dockerfile = f"FROM {base_image}\nRUN echo preparing && echo 'disk is lava' && exit 3\n"
    app = make_app_repo({"Dockerfile": dockerfile})
    cfg = BuildImageConfig(
        repo_url=app.url, commit=app.commit, repository=unique_repository(stack, "fail")
    )
    with pytest.raises(PermanentError) as exc:
        run_build(cfg, docker_host)
    message = str(exc.value)
    assert "RUN echo preparing" in message and "disk is lava" in message


def test_unknown_commit_is_permanent(
    stack: Stack, docker_host: DockerHost, make_app_repo: Callable[[dict[str, str]], AppRepo]
) -> None:
    app = make_app_repo({"Dockerfile": "FROM scratch\n"})
    cfg = BuildImageConfig(
        repo_url=app.url, commit="0" * 40, repository=unique_repository(stack, "nocommit")
    )
    with pytest.raises(PermanentError, match="cannot check out commit"):
        run_build(cfg, docker_host)


def test_redelivery_reuses_the_registry_image(
    stack: Stack,
    docker_host: DockerHost,
    base_image: str,
    make_app_repo: Callable[[dict[str, str]], AppRepo],
) -> None:
    app = make_app_repo({"Dockerfile": APP_DOCKERFILE.format(base=base_image), "app.txt": "x\n"})
    cfg = BuildImageConfig(
        repo_url=app.url, commit=app.commit, repository=unique_repository(stack, "reuse")
    )
    built = run_build(cfg, docker_host)
    pushed = run_push(PushImageConfig(repository=cfg.repository, tags=built.tags), docker_host)
    again = run_build(cfg, docker_host)
    assert again.reused
    assert again.digest == pushed.digest
    assert again.reference == pushed.reference
    assert again.duration_seconds < built.duration_seconds / 5
    # other build inputs: the registry copy does not count
    from blocks.registry import RegistryCredentials

    other = cfg.model_copy(update={"build_args": {"GREETING": "changed"}})
    assert find_existing(other, RegistryCredentials.for_registry(stack.registry)) is None
