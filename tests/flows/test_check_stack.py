"""The quick start's smoke flow, against the real stack and Prefect server."""

from __future__ import annotations

import pytest

from flows.check_stack import check_stack
from shipyard.core.errors import PermanentError
from tests.fixtures.services import Stack


@pytest.mark.usefixtures("prefect_api")
def test_every_service_answers(stack: Stack) -> None:
    results = check_stack(
        {
            "registry": stack.registry,
            "docker": stack.docker_host,
            "s3": stack.s3_endpoint,
            "git": stack.git_url,
        }
    )
    assert {r.service: r.ok for r in results} == {
        "registry": True,
        "docker": True,
        "s3": True,
        "git": True,
    }
    assert next(r for r in results if r.service == "docker").detail.startswith("Podman")


@pytest.mark.usefixtures("prefect_api")
def test_a_dead_service_fails_the_run(stack: Stack) -> None:
    with pytest.raises(PermanentError, match="services not answering: registry"):
        check_stack({"registry": "127.0.0.1:1", "s3": stack.s3_endpoint})
