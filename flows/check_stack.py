"""`check_stack`: the smoke flow of the quick start.

Probes every service of the local stack with a real request and publishes a table
artifact, so a new user sees in the Prefect UI that the whole platform answers.
"""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_table_artifact

from shipyard.core.errors import PermanentError
from tasks.check_stack import ServiceCheck
from tasks.steps.stack import check_service


@flow(name="check-stack", log_prints=True)
def check_stack(addresses: dict[str, str] | None = None) -> list[ServiceCheck]:
    """Probe each service in ``addresses`` (name -> address; empty ones are skipped) and
    report. ``shipyard check`` passes the addresses the stack's env file names; the
    ``check-stack`` deployment in prefect.yaml has them filled in at deploy time from the
    same variables (addresses the flow pods reach), so a run from the UI needs none."""
    targets = {name: addr for name, addr in (addresses or {}).items() if addr}
    if not targets:
        raise PermanentError(
            "no services to check: run 'shipyard stack up' and source .shipyard/env"
        )
    futures = {name: check_service.submit(name, addr) for name, addr in targets.items()}
    results = [f.result() for f in futures.values()]
    create_table_artifact(
        key="stack-check",
        table=[
            {"service": r.service, "ok": r.ok, "detail": r.detail, "ms": round(r.seconds * 1000)}
            for r in results
        ],
        description="Each local service answered a real request (or did not).",
    )
    for r in results:
        print(f"{r.service:<11} {'ok ' if r.ok else 'FAIL'} {r.detail}")
    failed = [r.service for r in results if not r.ok]
    if failed:
        raise PermanentError(f"services not answering: {', '.join(failed)}")
    return results
