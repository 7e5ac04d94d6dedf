"""Fixtures of the build -> scan -> push tests (defined in tests/tasks/images.py)."""

from tests.tasks.images import (  # noqa: F401 - re-exported as fixtures
    auth_registry,
    base_image,
    docker_host,
    make_app_repo,
    moto_ecr,
    token_registry,
)
