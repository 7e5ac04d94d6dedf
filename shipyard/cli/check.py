"""`shipyard check`: run the check-stack smoke flow against the local stack."""

from __future__ import annotations

import json
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add `check` to ``app``."""

    @app.command("check")
    def check(
        json_out: Annotated[bool, typer.Option("--json", help="Print results as JSON.")] = False,
    ) -> None:
        """Probe every stack service with a real request, as a Prefect flow run."""
        from flows.check_stack import check_stack

        results = check_stack()
        if json_out:
            typer.echo(
                json.dumps(
                    [{"service": r.service, "ok": r.ok, "detail": r.detail} for r in results]
                )
            )
