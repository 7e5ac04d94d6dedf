"""`shipyard check`: run the check-stack smoke flow against the local stack.

The addresses come from the environment (the stack's env file fills it in); the flow
only takes them as its ``addresses`` parameter. Without a reachable Prefect API the
same probes run directly.
"""

from __future__ import annotations

import json
import os
from typing import Annotated, Any

import typer

from shipyard.cli.runner import run_flow
from shipyard.core.errors import ConfigError, PermanentError

# service -> environment variable naming its address (as `shipyard stack up` writes it)
ADDRESS_VARIABLES = {
    "registry": "SHIPYARD_REGISTRY",
    "docker": "DOCKER_HOST",
    "s3": "SHIPYARD_S3_ENDPOINT",
    "git": "SHIPYARD_GIT_URL",
    "kubernetes": "KUBECONFIG",
}


def stack_addresses() -> dict[str, str]:
    """The services the environment names, with their addresses."""
    found = {name: os.environ.get(var, "") for name, var in ADDRESS_VARIABLES.items()}
    return {name: address for name, address in found.items() if address}


def _probe_directly(addresses: dict[str, str]) -> list[Any]:
    """The flow's probes without Prefect: same task code, same failure."""
    from tasks.steps.stack import check_service

    if not addresses:
        raise ConfigError(
            f"no stack found from {os.getcwd()}: run 'shipyard stack up' in the project "
            "(commands find its .shipyard/ from any subdirectory), or set SHIPYARD_STATE_DIR"
        )
    results = [check_service.fn(name, address) for name, address in addresses.items()]
    failed = [r.service for r in results if not r.ok]
    if failed:
        raise PermanentError(f"services not answering: {', '.join(failed)}")
    return results


def register(app: typer.Typer) -> None:
    """Add `check` to ``app``."""

    @app.command("check")
    def check(
        json_out: Annotated[bool, typer.Option("--json", help="Print results as JSON.")] = False,
    ) -> None:
        """Probe every stack service with a real request, as a Prefect flow run."""
        from flows.check_stack import check_stack

        results = run_flow(check_stack, _probe_directly, stack_addresses())
        if json_out:
            typer.echo(
                json.dumps(
                    [{"service": r.service, "ok": r.ok, "detail": r.detail} for r in results]
                )
            )
            return
        for r in results:
            typer.echo(f"{r.service:<11} ok   {r.detail}")
