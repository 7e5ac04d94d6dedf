"""`deliver` end to end on real services: the demo app's source commit is built (or
found in the registry), scanned by real trivy, pinned by digest in the GitOps repo on
the git daemon, applied to the cluster simulator and verified; a re-run changes nothing.
"""

from __future__ import annotations

import contextvars
import subprocess
import threading
import time
from typing import Any

import pytest

from flows.deliver import Provenance, deliver
from flows.promote import promote
from shipyard.core.errors import ConfigError, PolicyError
from shipyard.demo.seed import DemoSeed, seed_demo
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

    from shipyard.core.kube import api_client

    with api_client(stack.env["KUBECONFIG"]) as api:
        return client.AppsV1Api(api).read_namespaced_deployment(name, namespace)


@pytest.mark.slow
def test_deliver_from_source_then_rerun_is_a_no_op(stack: Stack, demo: DemoSeed) -> None:
    record = deliver(app="cart", commit=demo.source_commit, trigger="test")
    assert record.environment == "dev"
    assert record.digest.startswith("sha256:")
    assert record.image == f"{demo.image}:{demo.source_commit}@{record.digest}"
    assert record.scan.startswith("passed")
    log = _git_log(stack)
    # Earlier tests of the session may have pinned this digest already (then no commit).
    if record.gitops_commit is not None:
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


@pytest.fixture(scope="module")
def delivered(demo: DemoSeed) -> Provenance:
    """dev runs the demo app's source commit, verified (idempotent if already done)."""
    return deliver(app="cart", commit=demo.source_commit, trigger="test")


def _run_paused(target: Any, **kwargs: Any) -> tuple[threading.Thread, dict[str, Any], Any]:
    """Start a flow in a thread; return it with its outcome box and its paused run."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    box: dict[str, Any] = {}
    name = f"promote-test-{time.monotonic_ns()}"

    def run() -> None:
        try:
            box["result"] = target.with_options(flow_run_name=name)(**kwargs)
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            box["error"] = exc

    # Run with this context (Prefect's settings point at the session's server).
    thread = threading.Thread(target=contextvars.copy_context().run, args=(run,), daemon=True)
    thread.start()
    deadline = time.monotonic() + 90
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name]))
            )
            if runs and runs[0].state and runs[0].state.is_paused():
                return thread, box, runs[0]
            if not thread.is_alive():
                break
            time.sleep(0.5)
    raise AssertionError(f"the run never paused: {box}")


@pytest.mark.slow
def test_promote_to_protected_prod_waits_for_approval(stack: Stack, delivered: Provenance) -> None:
    from prefect.flow_runs import resume_flow_run

    thread, box, paused = _run_paused(promote, app="cart", from_environment="dev")
    resume_flow_run(
        paused.id,
        run_input={"approved": True, "approver": "release-manager", "reason": "CHG-1234"},
    )
    thread.join(180)
    assert "error" not in box, box
    record: Provenance = box["result"]
    assert record.environment == "prod"
    assert record.digest == delivered.digest  # promote what was verified, never rebuild
    assert record.gitops_commit is not None
    prod = _deployment(stack, "shop-prod", "cart")
    assert prod.spec.template.spec.containers[0].image.endswith(f"@{delivered.digest}")
    assert prod.status.ready_replicas == 2


@pytest.mark.slow
def test_rejected_promotion_changes_nothing(stack: Stack, delivered: Provenance) -> None:
    from prefect.flow_runs import resume_flow_run

    before = _git_log(stack)
    thread, box, paused = _run_paused(promote, app="cart", from_environment="dev")
    resume_flow_run(
        paused.id, run_input={"approved": False, "approver": "sre", "reason": "freeze week"}
    )
    thread.join(120)
    assert isinstance(box.get("error"), PolicyError)
    assert "rejected by sre: freeze week" in str(box["error"])
    assert _git_log(stack) == before
