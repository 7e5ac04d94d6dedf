"""An image says which source commit it was built from: its
``org.opencontainers.image.revision`` label, read from the real registry's config blob."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from blocks.docker import DockerHost
from blocks.registry import RegistryCredentials
from shipyard.core.errors import ConfigError
from shipyard.stack.base_image import BASE_REPOSITORY, BASE_TAG
from tasks.build_image import BuildImageConfig, run_build
from tasks.push_image import PushImageConfig, run_push
from tasks.resolve_digest import REVISION_LABEL, image_labels_of, image_revision_of
from tests.fixtures.services import Stack
from tests.tasks.images import APP_DOCKERFILE, AppRepo, unique_repository


def test_revision_of_a_pushed_image_by_digest_and_tag(
    stack: Stack,
    docker_host: DockerHost,
    base_image: str,
    make_app_repo: Callable[[dict[str, str]], AppRepo],
) -> None:
    app = make_app_repo({"Dockerfile": APP_DOCKERFILE.format(base=base_image), "app.txt": "r\n"})
    cfg = BuildImageConfig(
        repo_url=app.url, commit=app.commit, repository=unique_repository(stack, "rev")
    )
    built = run_build(cfg, docker_host)
    pushed = run_push(PushImageConfig(repository=cfg.repository, tags=built.tags), docker_host)
    creds = RegistryCredentials.for_registry(stack.registry)
    assert image_revision_of(cfg.repository, pushed.digest, creds) == app.commit
    assert image_revision_of(cfg.repository, app.commit, None) == app.commit  # by tag
    labels = image_labels_of(cfg.repository, pushed.digest, creds)
    assert labels[REVISION_LABEL] == app.commit
    assert labels["org.opencontainers.image.source"] == app.url


def test_image_without_the_label_has_no_revision(stack: Stack, base_image: str) -> None:
    image = f"{stack.registry}/{BASE_REPOSITORY}"
    assert image_revision_of(image, BASE_TAG, None) is None


def test_missing_image_is_a_config_error(stack: Stack) -> None:
    with pytest.raises(ConfigError, match="MANIFEST_UNKNOWN"):
        image_revision_of(unique_repository(stack, "none"), "sha256:" + "1" * 64, None)
