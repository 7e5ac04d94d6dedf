"""`shipyard deliver | promote | approve`: start the deployments and follow their runs.

``deliver`` and ``promote`` start the ``deliver/deliver`` and ``promote/promote``
deployments (the ones ``prefect deploy --all`` creates from prefect.yaml), so the run
is picked up by the work pool's worker exactly like a triggered or scheduled one. Each
prints the run's UI link at once, then follows it with a live display of its state and
tasks until it ends. ``promote`` stops following when the run pauses for approval and
says how to answer; ``approve`` answers that form (decision, approver, reason) and
follows the promotion to its end.

Exit codes: 0 the run completed (or waits for approval, for ``promote``), 1 it ended
Failed, Crashed or Cancelled, 2 unusable input (one line on stderr, nothing started).
``--json`` prints ``{"flow_run_id", "name", "deployment", "state", "message", "url"}``.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import time
from dataclasses import dataclass
from typing import Annotated, Any
from uuid import UUID

import typer
from rich.console import Console

from shipyard.cli.runner import prefect_api_reachable
from shipyard.core.catalog import DNS_LABEL
from shipyard.core.errors import ConfigError

__all__ = ["RunOutcome", "follow_run", "register", "start_deployment", "ui_url"]

DELIVER_DEPLOYMENT = "deliver/deliver"
PROMOTE_DEPLOYMENT = "promote/promote"
POLL_SECONDS = 1.0
NO_WORKER_HINT_SECONDS = 20.0
_SHA = re.compile(r"^[0-9a-f]{40}$")

JsonOut = Annotated[bool, typer.Option("--json", help="Print a JSON report.")]
Detach = Annotated[
    bool, typer.Option("--detach", help="Print the run's link and return; do not follow it.")
]


@dataclass(frozen=True)
class RunOutcome:
    """Where a followed run stands when the command returns."""

    flow_run_id: str
    name: str
    deployment: str
    state: str
    state_type: str
    message: str
    url: str

    @property
    def exit_code(self) -> int:
        """0 completed, paused (waits for approval) or still going (detached); 1 otherwise."""
        return 1 if self.state_type in {"FAILED", "CRASHED", "CANCELLED", "CANCELLING"} else 0

    def as_json(self) -> dict[str, str]:
        """The ``--json`` contract."""
        return {
            "flow_run_id": self.flow_run_id,
            "name": self.name,
            "deployment": self.deployment,
            "state": self.state,
            "message": self.message,
            "url": self.url,
        }


def ui_url(flow_run_id: str) -> str:
    """The flow run's page in the Prefect UI ($PREFECT_UI_URL, else the API's host)."""
    base = os.environ.get("PREFECT_UI_URL", "").strip().rstrip("/")
    if not base:
        base = os.environ.get("PREFECT_API_URL", "").strip().rstrip("/").removesuffix("/api")
    return f"{base}/runs/flow-run/{flow_run_id}"


def _require_api() -> None:
    if not prefect_api_reachable():
        where = os.environ.get("PREFECT_API_URL") or "(PREFECT_API_URL is not set)"
        raise ConfigError(
            f"no Prefect API answers at {where}: start the stack ('shipyard stack up') "
            "or set PREFECT_API_URL"
        )


def _user() -> str:
    """Who runs the command, for the run's ``trigger`` ("cli" when unknown)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


def _check_app(app: str) -> str:
    if not DNS_LABEL.match(app) or len(app) > 63:
        raise ConfigError(f"--app {app!r} is not an app name (a lower-case DNS label)")
    return app


def start_deployment(deployment: str, parameters: dict[str, Any]) -> Any:
    """Create a flow run of ``deployment`` (``flow/deployment``) and return it at once.

    A deployment that does not exist, or parameters it refuses, are a ConfigError.
    """
    import httpx
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    _require_api()
    if deployment.count("/") != 1:
        raise ConfigError(f"--deployment {deployment!r} must be FLOW/DEPLOYMENT")
    try:
        return run_deployment(deployment, parameters=parameters, timeout=0, as_subflow=False)
    except ObjectNotFound:
        raise ConfigError(
            f"deployment {deployment!r} not found: deploy the flows first "
            "('prefect deploy --all' from the project, or 'shipyard demo')"
        ) from None
    except httpx.HTTPStatusError as exc:
        detail = exc.response.text[:300]
        raise ConfigError(f"{deployment} refused the run: {detail}") from None


def follow_run(
    flow_run_id: UUID | str,
    *,
    stop_when_paused: bool = False,
    console: Console | None = None,
) -> RunOutcome:
    """Poll the run until it ends (or pauses, with ``stop_when_paused``), showing its
    state and each task as it finishes on stderr; return where it stands."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    out = console or Console(stderr=True)
    seen_tasks: set[str] = set()
    last_state = ""
    started = time.monotonic()
    with get_client(sync_client=True) as client, out.status("starting") as status:
        while True:
            run = client.read_flow_run(UUID(str(flow_run_id)))
            state = run.state
            name = (state.name if state else None) or "Unknown"
            if name != last_state:
                out.print(f"{run.name}: {name}")
                last_state = name
            tasks = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))
            )
            running = []
            for task in sorted(tasks, key=lambda t: str(t.expected_start_time or t.created)):
                task_state = task.state.name if task.state else "?"
                if task.state is not None and task.state.is_final():
                    if str(task.id) not in seen_tasks:
                        seen_tasks.add(str(task.id))
                        mark = "ok" if task.state.is_completed() else task_state
                        out.print(f"  {mark:<9} {task.name}")
                else:
                    running.append(task.name)
            text = f"{run.name}: {name}"
            if running:
                text += f" - {', '.join(running[-3:])}"
            if (
                state is not None
                and state.type.value in {"SCHEDULED", "PENDING"}
                and time.monotonic() - started > NO_WORKER_HINT_SECONDS
            ):
                text += f" (no worker has picked it up: is one polling '{run.work_pool_name}'?)"
            status.update(text)
            if state is not None and (state.is_final() or (stop_when_paused and state.is_paused())):
                return RunOutcome(
                    flow_run_id=str(run.id),
                    name=run.name,
                    deployment="",
                    state=name,
                    state_type=state.type.value,
                    message=state.message or "",
                    url=ui_url(str(run.id)),
                )
            time.sleep(POLL_SECONDS)


def _started(run: Any, deployment: str) -> RunOutcome:
    state = run.state
    return RunOutcome(
        flow_run_id=str(run.id),
        name=run.name,
        deployment=deployment,
        state=(state.name if state else None) or "Scheduled",
        state_type=state.type.value if state else "SCHEDULED",
        message="",
        url=ui_url(str(run.id)),
    )


def _finish(outcome: RunOutcome, json_out: bool, hint: str | None = None) -> None:
    """Print the outcome (stdout) and leave with its exit code."""
    if json_out:
        typer.echo(json.dumps(outcome.as_json()))
    else:
        line = f"{outcome.name}: {outcome.state}"
        if outcome.message:
            line += f": {' '.join(outcome.message.split())}"
        typer.echo(line)
        typer.echo(f"  {outcome.url}")
        if hint:
            typer.echo(hint)
    if outcome.exit_code:
        raise typer.Exit(outcome.exit_code)


def _start_and_follow(
    deployment: str,
    parameters: dict[str, Any],
    *,
    detach: bool,
    json_out: bool,
    stop_when_paused: bool = False,
) -> RunOutcome:
    console = Console(stderr=True)
    run = start_deployment(deployment, parameters)
    started = _started(run, deployment)
    console.print(f"started {deployment} run {run.name}: {started.url}")
    if detach:
        return started
    followed = follow_run(run.id, stop_when_paused=stop_when_paused, console=console)
    return RunOutcome(**{**followed.__dict__, "deployment": deployment})


def _approval_hint(outcome: RunOutcome) -> str | None:
    if outcome.state_type != "PAUSED":
        return None
    return (
        "waiting for approval: open the link above and press Resume, or run\n"
        f"  shipyard approve {outcome.name} --approver YOU --reason WHY [--reject]"
    )


def _find_paused(run: str | None, app: str | None) -> Any:
    """The paused promotion to answer: ``run`` (id or name), else the only one waiting."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterName,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        if run is not None:
            try:
                return client.read_flow_run(UUID(run))
            except ValueError:
                pass  # not an id: a run name
            except ObjectNotFound:
                raise ConfigError(f"no flow run with id {run}") from None
            found = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[run]))
            )
            if not found:
                raise ConfigError(f"no flow run named {run!r}")
            return found[0]
        waiting = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["promote"])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
            ),
        )
    if app is not None:
        waiting = [r for r in waiting if r.parameters.get("app") == app]
    if not waiting:
        raise ConfigError("no promotion is waiting for approval" + (f" for {app}" if app else ""))
    if len(waiting) > 1:
        names = ", ".join(f"{r.name} (app {r.parameters.get('app')})" for r in waiting)
        raise ConfigError(f"{len(waiting)} promotions wait for approval: {names}; name one")
    return waiting[0]


def _answer(decision: str, approver: str, reason: str) -> dict[str, Any]:
    """The approval form's input, checked against the form before it is sent."""
    from pydantic import ValidationError

    from flows.approval import Approval

    values = {"decision": decision, "approver": approver.strip(), "reason": reason.strip()}
    try:
        Approval.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "approval"
        raise ConfigError(f"--{where}: {first.get('msg', 'invalid')}") from None
    return values


def register(app: typer.Typer) -> None:
    """Add ``deliver``, ``promote`` and ``approve`` to ``app``."""

    @app.command("deliver")
    def deliver_cmd(
        app_name: Annotated[str, typer.Option("--app", help="App name from the catalog.")],
        environment: Annotated[
            str, typer.Option("--env", help="Target environment (default: the first one).")
        ] = "",
        commit: Annotated[
            str, typer.Option("--commit", help="Source commit (40 hex) to build and deliver.")
        ] = "",
        tag: Annotated[str, typer.Option("--tag", help="Pushed tag to deliver.")] = "",
        digest: Annotated[
            str, typer.Option("--digest", help="Pushed digest (sha256:...); wins over --tag.")
        ] = "",
        deployment: Annotated[
            str, typer.Option("--deployment", help="FLOW/DEPLOYMENT to start.")
        ] = DELIVER_DEPLOYMENT,
        detach: Detach = False,
        json_out: JsonOut = False,
    ) -> None:
        """Start the deliver deployment for one change and follow its run to the end."""
        from shipyard.cli.options import image_digest
        from shipyard.core.oci import validate_tag

        _check_app(app_name)
        if not (commit or tag or digest):
            raise ConfigError("say what to deliver: --commit SHA, or --tag / --digest")
        if commit and (tag or digest):
            raise ConfigError("give either --commit or --tag/--digest, not both")
        if commit and not _SHA.match(commit):
            raise ConfigError(f"--commit {commit!r} must be a full 40-character SHA")
        if tag:
            validate_tag(tag)
        if digest:
            image_digest(digest)
        parameters = {
            "app": app_name,
            "environment": environment,
            "commit": commit,
            "tag": tag,
            "digest": digest,
            "trigger": f"cli:{_user()}",
        }
        outcome = _start_and_follow(deployment, parameters, detach=detach, json_out=json_out)
        _finish(outcome, json_out)

    @app.command("promote")
    def promote_cmd(
        app_name: Annotated[str, typer.Option("--app", help="App name from the catalog.")],
        from_environment: Annotated[
            str, typer.Option("--from", help="Environment whose verified image is promoted.")
        ] = "dev",
        to_environment: Annotated[
            str, typer.Option("--to", help="Target (default: the next one in the catalog).")
        ] = "",
        digest: Annotated[
            str, typer.Option("--digest", help="Digest verified in the source (default: pinned).")
        ] = "",
        deployment: Annotated[
            str, typer.Option("--deployment", help="FLOW/DEPLOYMENT to start.")
        ] = PROMOTE_DEPLOYMENT,
        detach: Detach = False,
        json_out: JsonOut = False,
    ) -> None:
        """Start the promote deployment; follow it until it ends or waits for approval."""
        from shipyard.cli.options import image_digest

        _check_app(app_name)
        for flag, env in (("--from", from_environment), ("--to", to_environment)):
            if env and not DNS_LABEL.match(env):
                raise ConfigError(f"{flag} {env!r} is not an environment name")
        if digest:
            image_digest(digest)
        parameters = {
            "app": app_name,
            "from_environment": from_environment,
            "to_environment": to_environment,
            "digest": digest,
        }
        outcome = _start_and_follow(
            deployment, parameters, detach=detach, json_out=json_out, stop_when_paused=True
        )
        _finish(outcome, json_out, _approval_hint(outcome))

    @app.command("approve")
    def approve_cmd(
        run: Annotated[
            str | None,
            typer.Argument(help="Paused run (id or name); default: the only one waiting."),
        ] = None,
        approver: Annotated[
            str, typer.Option("--approver", help="Who decides (name or handle).")
        ] = "",
        reason: Annotated[
            str, typer.Option("--reason", help="Why: change ticket, test evidence, objection.")
        ] = "",
        reject: Annotated[bool, typer.Option("--reject", help="Reject instead.")] = False,
        app_name: Annotated[
            str | None, typer.Option("--app", help="Only promotions of this app.")
        ] = None,
        detach: Detach = False,
        json_out: JsonOut = False,
    ) -> None:
        """Answer a promotion waiting for approval, then follow it to its end."""
        from prefect.exceptions import FlowPauseTimeout
        from prefect.flow_runs import resume_flow_run

        answer = _answer("reject" if reject else "approve", approver, reason)
        if app_name is not None:
            _check_app(app_name)
        _require_api()
        paused = _find_paused(run, app_name)
        if paused.state is None or not paused.state.is_paused():
            state = paused.state.name if paused.state else "unknown"
            raise ConfigError(f"{paused.name} is not waiting for approval (it is {state})")
        try:
            resume_flow_run(paused.id, run_input=answer)
        except FlowPauseTimeout:
            raise ConfigError(f"{paused.name}: the approval timed out") from None
        except RuntimeError as exc:
            raise ConfigError(f"{paused.name}: {exc}") from None
        console = Console(stderr=True)
        verdict = "rejected" if reject else "approved"
        console.print(f"{verdict} {paused.name} as {answer['approver']}")
        if detach:
            _finish(_started(paused, PROMOTE_DEPLOYMENT), json_out)
            return
        outcome = follow_run(paused.id, console=console)
        _finish(RunOutcome(**{**outcome.__dict__, "deployment": PROMOTE_DEPLOYMENT}), json_out)
