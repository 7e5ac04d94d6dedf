"""`deliver` end to end on real services: the demo app's source commit is built (or
found in the registry), scanned by real trivy, pinned by digest in the GitOps repo on
the git daemon, applied to the cluster simulator and verified; a re-run changes nothing.
"""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from flows.deliver import deliver
from shipyard.demo.seed import DemoSeed, seed_demo
from shipyard.errors import ConfigError, PolicyError
from tests.fixtures.services import Stack


@pytest.fixture(scope="module")
def demo(stack: Stack, prefect_api: str) -> DemoSeed:
    assert "KUBECONFIG" in stack.env, "the stack runs the cluster simulator"
    return seed_demo(stack.layout, stack.env)


def _git_log(stack: Stack) -> list[str]:
    out = subprocess.run(
        ["git", "--git-dir", str(stack.git_root / "gitops.git"), "log", "--format=%H %s", "main"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.splitlines()


def _deployment(stack: Stack, namespace: str, name: str) -> Any:
    from kubernetes import client

    from blocks.cluster import api_client

    with api_client(stack.env["KUBECONFIG"]) as api:
        return client.AppsV1Api(api).read_namespaced_deployment(name, namespace)


@pytest.mark.slow
def test_deliver_from_source_then_rerun_is_a_no_op(stack: Stack, demo: DemoSeed) -> None:
    record = deliver(app="cart", commit=demo.source_commit, trigger="test")
    assert record.environment == "dev"
    assert record.digest.startswith("sha256:")
    assert record.image == f"{demo.image}:{demo.source_commit}@{record.digest}"
    assert record.scan.startswith("passed")
    assert record.gitops_commit is not None
    log = _git_log(stack)
    assert log[0].startswith(record.gitops_commit)
    deployment = _deployment(stack, "shop-dev", "cart")
    assert deployment.spec.template.spec.containers[0].image == record.image
    assert deployment.status.ready_replicas == 1

    again = deliver(app="cart", commit=demo.source_commit, trigger="test-rerun")
    assert again.digest == record.digest
    assert again.gitops_commit is None
    assert _git_log(stack) == log  # no new commit, no push


@pytest.mark.usefixtures("demo")
def test_protected_environment_needs_promote() -> None:
    with pytest.raises(PolicyError, match="protected"):
        deliver(app="cart", environment="prod", tag="seed")


@pytest.mark.usefixtures("demo")
def test_unknown_tag_is_a_clear_error_and_writes_nothing(stack: Stack) -> None:
    before = _git_log(stack)
    with pytest.raises(ConfigError, match="does not exist in the registry"):
        deliver(app="cart", tag="no-such-tag")
    assert _git_log(stack) == before


@pytest.mark.usefixtures("demo")
def test_unknown_app_lists_known_ones() -> None:
    with pytest.raises(ConfigError, match="known: cart"):
        deliver(app="checkout", tag="1")
