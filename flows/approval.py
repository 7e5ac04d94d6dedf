"""Human approval for protected environments, answered from the Prefect UI.

The flow run pauses with an input form (:class:`Approval`); a person fills in who they
are, approves or rejects, and says why. No answer before the timeout fails the run.
The decision is kept as an artifact and an event, so the audit trail lives with the run.
"""

from __future__ import annotations

from typing import cast

from prefect.artifacts import create_markdown_artifact
from prefect.events import emit_event
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import Field

from shipyard.core.errors import PolicyError


class Approval(RunInput):
    """The form shown in the Prefect UI when a promotion waits for approval."""

    approved: bool = Field(False, description="Approve this promotion.")
    approver: str = Field(description="Who decides (name or handle).", min_length=1)
    reason: str = Field(description="Why: change ticket, test evidence, or the objection.")


def request_approval(subject: str, details: str, timeout_seconds: int) -> Approval:
    """Pause the flow run until someone answers; PolicyError when they reject.

    A timeout raises Prefect's pause timeout, which fails the run.
    """
    create_markdown_artifact(
        key="approval-request",
        markdown=f"# Approval needed\n\n{subject}\n\n{details}\n\n"
        "Open this run and press **Resume** to answer the form.",
        description=subject,
    )
    answer = cast(
        Approval,
        pause_flow_run(wait_for_input=Approval, timeout=timeout_seconds, poll_interval=2),
    )
    decision = "approved" if answer.approved else "rejected"
    emit_event(
        event=f"shipyard.promotion.{decision}",
        resource={"prefect.resource.id": f"shipyard.approval.{subject}"},
        payload={"approver": answer.approver, "reason": answer.reason, "subject": subject},
    )
    create_markdown_artifact(
        key="approval-decision",
        markdown=f"# {decision.capitalize()}\n\n- subject: {subject}\n"
        f"- by: {answer.approver}\n- reason: {answer.reason}\n",
        description=f"{decision} by {answer.approver}",
    )
    if not answer.approved:
        raise PolicyError(f"{subject}: rejected by {answer.approver}: {answer.reason}")
    return answer
