"""`shipyard demo`: the quick start's main job on the embedded default.

Starts the local stack, seeds the demo app and its GitOps repo, deploys every flow to
the Kubernetes work pool, starts the registry-event bridge and a Kubernetes worker,
pushes a change of the app as CI would, follows the delivery it sets off to a verified
rollout, and leaves a promotion to prod waiting for approval in the Prefect UI.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from shipyard.core.errors import PermanentError
from shipyard.stack import StackLayout, stack_up
from shipyard.stack.runner import read_env_file

DEMO_CLUSTERS = 3  # the stack's simulated clusters: prod's fleet (a canary and two more)


def register(app: typer.Typer) -> None:
    """Add `demo` to ``app``."""

    @app.command("demo")
    def demo(
        version: Annotated[str, typer.Option(help="Version text of the change pushed.")] = "",
        promote: Annotated[
            bool, typer.Option(help="Start a promotion to prod that waits for approval.")
        ] = True,
    ) -> None:
        """Run a whole delivery on the local stack and print where to look in the UI."""
        from prefect.settings import PREFECT_API_URL, temporary_settings

        console = Console(stderr=True)
        started = time.monotonic()
        layout = StackLayout.from_env()
        with console.status("starting the stack"):
            stack_up(layout, clusters=DEMO_CLUSTERS)  # prod: a fleet of three
        env = read_env_file(layout)
        os.environ.update(env)  # for subprocesses
        with temporary_settings(updates={PREFECT_API_URL: env["PREFECT_API_URL"]}):
            lines = _run_demo(layout, env, version, promote, console)
        lines.insert(0, f"Demo done in {time.monotonic() - started:.0f}s.")
        typer.echo("\n".join(lines))


def _run_demo(
    layout: StackLayout, env: dict[str, str], version: str, promote: bool, console: Console
) -> list[str]:
    from shipyard.demo import run
    from shipyard.demo.seed import seed_demo

    say = console.print
    with console.status("seeding the demo app, GitOps repo and blocks"):
        seed = seed_demo(layout, env)
    with console.status("deploying flows to the shipyard-k8s work pool"):
        run.create_work_pool()
        run.deploy_all(env)
    run.start_service(layout, run.bridge_spec(layout, env), say)
    run.start_service(layout, run.worker_spec(env), say)
    say(f"pushing a change of {seed.app} as CI would")
    change = run.push_change(env, layout, version or time.strftime("%H%M%S"))
    say(f"pushed {change.reference}; the registry notifies the bridge")
    flow_run = run.wait_for_delivery(change.commit, timeout=600, say=say)
    ui = env["PREFECT_API_URL"].removesuffix("/api")
    link = f"{ui}/runs/flow-run/{flow_run.id}"
    if flow_run.state is None or not flow_run.state.is_completed():
        state = flow_run.state.name if flow_run.state else "unknown"
        raise PermanentError(f"delivery {flow_run.name} ended {state}: {link}")
    shipyard = Path(sys.executable).parent / "shipyard"  # works from any directory
    lines = [
        f"Delivered {change.reference} to dev (namespace shop-dev).",
        f"  the delivery run: {link}",
        f"  deployments:      {ui}/deployments",
        f"  event feed:       {ui}/events",
    ]
    if promote:
        from prefect.client.schemas.objects import FlowRun
        from prefect.deployments import run_deployment

        waiting = run_deployment("promote/promote", parameters={"app": seed.app}, timeout=0)
        assert isinstance(waiting, FlowRun)
        lines.append(
            f"  approve prod:     {ui}/runs/flow-run/{waiting.id}  (Resume, then fill the form)"
        )
        lines.append(f"    or: {shipyard} approve --approver YOU --reason WHY")
        if seed.fleet:
            lines.append(
                f"  prod is a fleet of {len(seed.fleet)} ({', '.join(seed.fleet)}; the first is "
                "the canary): the promotion goes wave by wave (wave-canary, wave-rest);"
            )
            lines.append(
                f"    pause it: {shipyard} fleet pause --run {waiting.id} "
                "(resume, skip: docs/fleet.md)"
            )
    lines += run.monitoring_lines(env, seed.app)
    lines.append(run.dora_table(env, seed.app, since=flow_run.start_time, say=say))
    lines.append(f"Stop everything with: {shipyard} stack down")
    return lines
