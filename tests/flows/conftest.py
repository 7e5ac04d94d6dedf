"""A deployed platform on the session stack, shared by the end-to-end and browser tests:
the demo seeded, every flow deployed to the Kubernetes work pool, the bridge and a
Prefect Kubernetes worker running."""

from __future__ import annotations

import pytest

from shipyard.demo import run as demo
from shipyard.demo.seed import DemoSeed, seed_demo
from tests.fixtures.services import Stack


@pytest.fixture(scope="session")
def platform(stack: Stack, prefect_api: str) -> DemoSeed:
    seed = seed_demo(stack.layout, stack.env)
    demo.create_work_pool()
    demo.deploy_all(stack.env)
    demo.start_service(stack.layout, demo.bridge_spec(stack.layout, stack.env), print)
    demo.start_service(stack.layout, demo.worker_spec(stack.env), print)
    return seed
