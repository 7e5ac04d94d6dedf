"""`shipyard deliver | promote | approve` through the real entry point: bad input is
one line and exit 2 before anything starts; `approve` answers a real paused approval
form on the session's Prefect server and follows the run (exit 0 completed, 1 failed);
the slow scenario starts the real deliver and promote flows as deployments."""

from __future__ import annotations

import contextvars
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.services import Stack

SHIPYARD = str(Path(sys.executable).parent / "shipyard")
DIGEST = "sha256:" + "ab" * 32


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SHIPYARD_", "PREFECT_")) and k not in {"KUBECONFIG", "DOCKER_HOST"}
    }
    return {**env, "PREFECT_HOME": str(tmp_path / "prefect-home"), **extra}


def _shipyard(*args: str, env: dict[str, str], cwd: Path, timeout: float = 120) -> Any:
    return subprocess.run(
        [SHIPYARD, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["deliver", "--app", "cart"], "say what to deliver"),
        (["deliver", "--app", "cart", "--tag", "not a tag"], "invalid tag"),
        (["deliver", "--app", "cart", "--digest", "md5:abc"], "invalid digest"),
        (["deliver", "--app", "cart", "--commit", "abc"], "full 40-character SHA"),
        (["deliver", "--app", "Cart!", "--tag", "v1"], "not an app name"),
        (["promote", "--app", "cart", "--digest", "sha256:xyz"], "invalid digest"),
        (["approve", "--approver", "", "--reason", "CHG-1"], "--approver"),
        (["approve", "--approver", "me", "--reason", ""], "--reason"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], says: str, tmp_path: Path) -> None:
    result = _shipyard(*args, env=_env(tmp_path), cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert says in _one_line(result.stderr)


def test_no_prefect_api_is_exit_2(tmp_path: Path) -> None:
    env = _env(tmp_path, PREFECT_API_URL="http://127.0.0.1:1/api")
    result = _shipyard("deliver", "--app", "cart", "--tag", "v1", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "no Prefect API answers at http://127.0.0.1:1/api" in _one_line(result.stderr)


def test_unknown_deployment_is_exit_2(stack: Stack, tmp_path: Path) -> None:
    env = _env(tmp_path, PREFECT_API_URL=stack.prefect_api_url)
    name = f"deliver/nope-{uuid.uuid4().hex[:6]}"
    result = _shipyard(
        "deliver", "--app", "cart", "--tag", "v1", "--deployment", name, env=env, cwd=tmp_path
    )
    assert result.returncode == 2
    assert f"deployment '{name}' not found" in _one_line(result.stderr)


# --- approve: a real approval form, paused on the real server ---------------------------


def _approval_flow() -> Any:
    from prefect import flow

    from flows.approval import ApprovalRequest, request_approval

    @flow(name="approval-gate")
    def approval_gate(app: str) -> str:
        request = ApprovalRequest(
            app=app,
            from_environment="dev",
            to_environment="prod",
            image=f"registry.example/{app}@{DIGEST}",
            digest=DIGEST,
            verified_at="2026-01-01T00:00:00Z",
            verified_in=f"{app}-dev",
        )
        return request_approval(request, timeout_seconds=120).approver

    return approval_gate


@pytest.fixture
def paused(prefect_api: str) -> Iterator[tuple[Any, dict[str, Any], threading.Thread]]:
    """A flow run of a flow asking for approval, paused on the session's server."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    gate = _approval_flow()
    name = f"approval-{uuid.uuid4().hex[:8]}"
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = gate.with_options(flow_run_name=name)(app="cart")
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            box["error"] = exc

    thread = threading.Thread(target=contextvars.copy_context().run, args=(run,), daemon=True)
    thread.start()
    deadline = time.monotonic() + 90
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name]))
            )
            if runs and runs[0].state and runs[0].state.is_paused():
                yield runs[0], box, thread
                thread.join(60)
                return
            assert thread.is_alive(), box
            time.sleep(0.3)
    raise AssertionError(f"the run never paused: {box}")


def test_approve_answers_the_form_and_follows_the_run(
    stack: Stack, paused: tuple[Any, dict[str, Any], threading.Thread], tmp_path: Path
) -> None:
    run, box, thread = paused
    env = _env(tmp_path, PREFECT_API_URL=stack.prefect_api_url)
    result = _shipyard(
        "approve",
        run.name,
        "--approver",
        "release-manager",
        "--reason",
        "CHG-42",
        "--json",
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = json.loads(result.stdout)
    assert out["state"] == "Completed" and out["flow_run_id"] == str(run.id)
    assert out["url"] == f"{stack.prefect_api_url.removesuffix('/api')}/runs/flow-run/{run.id}"
    thread.join(60)
    assert box.get("result") == "release-manager", box

    again = _shipyard(
        "approve", str(run.id), "--approver", "x", "--reason", "y", env=env, cwd=tmp_path
    )
    assert again.returncode == 2
    assert "is not waiting for approval (it is Completed)" in _one_line(again.stderr)


def test_reject_ends_the_run_failed_exit_1(
    stack: Stack, paused: tuple[Any, dict[str, Any], threading.Thread], tmp_path: Path
) -> None:
    run, box, thread = paused
    env = _env(tmp_path, PREFECT_API_URL=stack.prefect_api_url)
    result = _shipyard(
        "approve",
        str(run.id),
        "--reject",
        "--approver",
        "sre",
        "--reason",
        "freeze week",
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.startswith(f"{run.name}: Failed")
    assert "rejected by sre: freeze week" in result.stdout
    thread.join(60)
    assert "rejected by sre" in str(box.get("error")), box


# --- the real deliver and promote flows, started as deployments -------------------------


@pytest.fixture(scope="module")
def served(stack: Stack, prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The demo seeded, and the real `deliver` and `promote` flows served as deployments
    named `cli` by a Prefect runner process (the work pool's worker, in miniature)."""
    from shipyard.demo.seed import seed_demo

    seed = seed_demo(stack.layout, stack.env)
    log = tmp_path_factory.mktemp("served") / "runner.log"
    code = (
        "from prefect import serve\n"
        "from flows.deliver import deliver\n"
        "from flows.promote import promote\n"
        "serve(deliver.to_deployment('cli'), promote.to_deployment('cli'))\n"
    )
    root = Path(__file__).resolve().parents[2]
    with open(log, "wb") as out:
        runner = subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=root,
            env={**os.environ, **stack.env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield seed
    finally:
        runner.terminate()
        runner.wait(30)


@pytest.mark.slow
def test_deliver_promote_approve_from_the_cli(served: Any, stack: Stack, tmp_path: Path) -> None:
    env = _env(tmp_path, PREFECT_API_URL=stack.prefect_api_url)
    deadline = time.monotonic() + 60
    while True:  # the runner registers its deployments shortly after it starts
        delivered = _shipyard(
            "deliver",
            "--app",
            "cart",
            "--tag",
            "seed",
            "--deployment",
            "deliver/cli",
            "--json",
            env=env,
            cwd=tmp_path,
            timeout=600,
        )
        if "not found" not in delivered.stderr or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert delivered.returncode == 0, delivered.stdout + delivered.stderr
    assert json.loads(delivered.stdout)["state"] == "Completed"
    assert "deliver/cli run" in delivered.stderr and "/runs/flow-run/" in delivered.stderr

    promoted = _shipyard(
        "promote",
        "--app",
        "cart",
        "--deployment",
        "promote/cli",
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    assert "Paused" in promoted.stdout and "shipyard approve" in promoted.stdout

    approved = _shipyard(
        "approve",
        "--app",
        "cart",
        "--approver",
        "release-manager",
        "--reason",
        "CHG-7",
        "--json",
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert approved.returncode == 0, approved.stdout + approved.stderr
    assert json.loads(approved.stdout)["state"] == "Completed"
