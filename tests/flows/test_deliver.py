"""`deliver` and `promote` end to end on real services: the demo app's source commit is
built (or found in the registry), scanned by real trivy, pinned by digest in the GitOps
repo on the git daemon, applied to the cluster simulator and verified; a re-run, or
another tag of the same digest, changes nothing; a bad version is rolled back and the
rollback shows on the deliver run; the run is named and logs what each step did; a
promotion to protected prod waits for an explicit decision in a form that shows what is
being approved.
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
from flows.sync_verify import RolledBackError
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


def _wait_for_no_cart_delivery(timeout: float = 180) -> None:
    """Until no `deliver` of cart runs: in the shared session the worker delivers earlier
    tests' pushes in the background, and one landing mid-test moves dev."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterName,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    active = FlowRunFilter(
        name=FlowRunFilterName(like_="cart→dev"),
        state=FlowRunFilterState(
            type=FlowRunFilterStateType(
                any_=[StateType.RUNNING, StateType.PENDING, StateType.SCHEDULED]
            )
        ),
    )
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while client.read_flow_runs(flow_run_filter=active) and time.monotonic() < deadline:
            time.sleep(1)


def _run_paused(target: Any, **kwargs: Any) -> tuple[threading.Thread, dict[str, Any], Any]:
    """Start a flow in a thread; return it with its outcome box and its paused run.

    The run is found by a tag of its own (flows rename their runs once they know what
    they deliver, so the name cannot be the handle).
    """
    from prefect import tags
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    box: dict[str, Any] = {}
    marker = f"promote-test-{time.monotonic_ns()}"

    def run() -> None:
        try:
            with tags(marker):
                box["result"] = target(**kwargs)
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            box["error"] = exc

    # Run with this context (Prefect's settings point at the session's server).
    thread = threading.Thread(target=contextvars.copy_context().run, args=(run,), daemon=True)
    thread.start()
    deadline = time.monotonic() + 90
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[marker]))
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
        run_input={"decision": "approve", "approver": "release-manager", "reason": "CHG-1234"},
    )
    thread.join(180)
    assert "error" not in box, box
    record: Provenance = box["result"]
    assert record.environment == "prod"
    assert record.digest == delivered.digest  # promote what was verified, never rebuild
    assert record.gitops_commit is not None
    assert (record.approver, record.reason) == ("release-manager", "CHG-1234")
    trailers = subprocess.run(
        [
            *("git", "--git-dir", str(stack.git_root / "gitops.git"), "log", "-1"),
            *("--format=%(trailers)", str(record.gitops_commit)),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "Approved-by: release-manager" in trailers and "Reason: CHG-1234" in trailers
    assert record.links["flow_run"].endswith(record.flow_run or "?")
    prod = _deployment(stack, "shop-prod", "cart")
    assert prod.spec.template.spec.containers[0].image.endswith(f"@{delivered.digest}")
    assert prod.status.ready_replicas == 2


@pytest.mark.slow
def test_rejected_promotion_changes_nothing(stack: Stack, delivered: Provenance) -> None:
    from prefect.flow_runs import resume_flow_run

    before = _git_log(stack)
    thread, box, paused = _run_paused(promote, app="cart", from_environment="dev")
    resume_flow_run(
        paused.id, run_input={"decision": "reject", "approver": "sre", "reason": "freeze week"}
    )
    thread.join(120)
    assert isinstance(box.get("error"), PolicyError)
    assert "rejected by sre: freeze week" in str(box["error"])
    assert _git_log(stack) == before


def _run_of(state: Any) -> Any:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(state.state_details.flow_run_id)


def _logs(run_id: Any) -> str:
    """The run's log lines as stored by the Prefect server (shipped, then read back)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()
    deadline = time.monotonic() + 15
    text = ""
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
            text = "\n".join(entry.message for entry in logs)
            if "runs sha256:" in text or "rolled back" in text:
                return text
            time.sleep(0.5)
    return text


def _artifact(run_id: Any, key: str) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
    return next((a for a in artifacts if a.key == key), None)


def _events(name: str, timeout: float = 15.0, **payload: str) -> list[dict[str, Any]]:
    import httpx
    from prefect.settings import PREFECT_API_URL

    url = str(PREFECT_API_URL.value()).rstrip("/")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        resp = httpx.post(
            f"{url}/events/filter", json={"filter": {"event": {"name": [name]}}, "limit": 50}
        )
        resp.raise_for_status()
        found = [
            e
            for e in resp.json().get("events") or []
            if all((e.get("payload") or {}).get(k) == v for k, v in payload.items())
        ]
        if found:
            return found
        time.sleep(0.3)
    return []


@pytest.mark.slow
def test_another_tag_of_the_running_digest_writes_nothing(
    stack: Stack, delivered: Provenance
) -> None:
    """A tag-only change (CI pushed `v2` for the digest that already runs) and a replay of
    the same delivery: no commit, no rollout, Completed "already delivered"."""
    before = _git_log(stack)
    generation = _deployment(stack, "shop-dev", "cart").metadata.generation
    state = deliver(
        app="cart", tag="v2", digest=delivered.digest, trigger="retag", return_state=True
    )
    assert state.is_completed() and state.message.startswith("already delivered"), state
    record: Provenance = state.result()
    assert (record.gitops_commit, record.outcome) == (None, "already delivered")
    replay = deliver(app="cart", tag="v2", digest=delivered.digest, trigger="retag")
    assert isinstance(replay, Provenance) and replay.gitops_commit is None
    assert _git_log(stack) == before  # no commit: the tag in git does not flip-flop
    dev = _deployment(stack, "shop-dev", "cart")
    assert dev.metadata.generation == generation  # no rollout
    assert dev.spec.template.spec.containers[0].image.endswith(f"@{delivered.digest}")


@pytest.mark.slow
def test_the_run_is_named_and_logs_each_step(delivered: Provenance) -> None:
    state = deliver(app="cart", digest=delivered.digest, trigger="story", return_state=True)
    run = _run_of(state)
    assert run.name == f"cart→dev {delivered.digest.removeprefix('sha256:')[:6]}"
    text = _logs(run.id)
    for line in (
        "catalog at ",  # what the catalog said
        f"already pins {delivered.digest}",  # what git pins
        "synced ",  # the sync and the objects it applied
        "applied ",
        "verified deployment/cart in shop-dev: healthy",  # the verify result
        f"cart/dev runs {delivered.digest}",
    ):
        assert line in text, f"{line!r} not in the run log:\n{text}"


@pytest.mark.slow
def test_a_rollback_shows_on_the_deliver_run(stack: Stack, delivered: Provenance) -> None:
    """A new version whose smoke check fails is rolled back, and the top-level deliver
    run says so: state message, rollback-<app>-<env> artifact, delivery.failed event."""
    from shipyard.demo import content
    from shipyard.demo import run as demo
    from shipyard.demo.seed import _publish

    gitops = stack.git_root / "gitops.git"
    catalog = content.catalog(stack.registry, stack.git_url)
    dev_verify = "          timeout_seconds: 120\n      - name: prod"
    smoke = "          smoke: [{url: 'http://127.0.0.1:9/health', attempts: 1}]\n"
    failing = catalog.replace(
        dev_verify, dev_verify.replace("      - name", smoke + "      - name")
    )
    assert failing != catalog
    _publish(gitops, {"shipyard-catalog.yaml": failing}, "dev: a smoke check that fails", False)
    try:
        change = demo.push_change(stack.env, stack.layout, version="broken")
        before = _git_log(stack)
        state = deliver(app="cart", tag=change.commit, trigger="bad-version", return_state=True)
    finally:
        _publish(gitops, {"shipyard-catalog.yaml": catalog}, "dev: catalog restored", False)
    assert state.is_failed()
    assert state.message.startswith("rolled back: "), state.message
    assert "127.0.0.1:9" in state.message  # the reason: the failed smoke check
    with pytest.raises(RolledBackError):
        state.result()
    run = _run_of(state)
    assert run.name == f"cart→dev {change.digest.removeprefix('sha256:')[:6]}"
    artifact = _artifact(run.id, "rollback-cart-dev")
    assert artifact is not None and "previous version healthy" in str(artifact.data)
    _restored, revert, bad, *rest = _git_log(stack)
    assert revert.split(" ", 1)[1].startswith('Revert "') and rest == before
    (event, *_) = _events("shipyard.delivery.failed", app="cart", digest=change.digest)
    assert event["payload"]["revert_commit"] == revert.split()[0]
    assert event["payload"]["commit"] == bad.split()[0]
    assert event["payload"]["reason"] in state.message
    dev = _deployment(stack, "shop-dev", "cart")
    assert dev.spec.template.spec.containers[0].image.endswith(f"@{delivered.digest}")


@pytest.mark.usefixtures("prefect_api")
def test_deployment_schema_keeps_parameter_help() -> None:
    """The schema Prefect stores for a deployment (what the UI's forms render) has a
    description for every parameter of deliver, promote and image-poll."""
    from prefect.client.orchestration import get_client

    from flows.image_poll import image_poll

    schemas = {}
    for target in (deliver, promote, image_poll):
        deployment_id = target.to_deployment(name=f"schema-{target.name}").apply()
        with get_client(sync_client=True) as client:
            schema = client.read_deployment(deployment_id).parameter_openapi_schema
        assert schema is not None
        missing = [k for k, v in schema["properties"].items() if not v.get("description")]
        assert missing == [], f"{target.name}: no help text for {missing}"
        schemas[target.name] = schema
    options = schemas["deliver"]["definitions"]["DeliverOptions"]["properties"]
    assert all(p.get("description") for p in options.values())
    assert "docker_block" in options  # item 1: which engine builds a source commit


@pytest.mark.slow
def test_approval_form_shows_the_request_and_needs_a_decision(
    stack: Stack, delivered: Provenance
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.flow_runs import resume_flow_run
    from prefect.input.run_input import keyset_from_paused_state

    _wait_for_no_cart_delivery()  # a background delivery would move dev mid-promotion
    before = _git_log(stack)
    thread, box, paused = _run_paused(promote, app="cart", from_environment="dev")
    answered = False
    try:
        keys = keyset_from_paused_state(paused.state)
        with get_client(sync_client=True) as client:
            description = client.read_flow_run_input(paused.id, keys["description"])
            schema = client.read_flow_run_input(paused.id, keys["schema"])
        # What dev runs now: `delivered`'s digest, unless the session's worker has
        # delivered a later push of cart since (the form shows what is promoted).
        dev_tree = subprocess.run(
            ["git", "--git-dir", str(stack.git_root / "gitops.git"), "grep", "-h",
             "sha256:", "main", "--", "envs/dev/cart"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        pinned = dev_tree.split("sha256:", 1)[1][:64]
        for shown in ("cart", "dev", "prod", f"sha256:{pinned}", "verified at", "http"):
            assert shown in description, f"{shown!r} not shown in the form:\n{description}"
        assert "decision" in schema and "approved" not in schema
        with pytest.raises(RuntimeError, match="Cannot resume"):
            resume_flow_run(paused.id, run_input={"approver": "someone", "reason": "defaults"})
        resume_flow_run(
            paused.id, run_input={"decision": "reject", "approver": "sre", "reason": "not yet"}
        )
        answered = True
    finally:
        if not answered:  # a failed check must not leave the promotion waiting
            resume_flow_run(
                paused.id, run_input={"decision": "reject", "approver": "t", "reason": "cleanup"}
            )
    thread.join(120)
    assert isinstance(box.get("error"), PolicyError)
    assert _git_log(stack) == before
