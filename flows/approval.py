"""Human approval for protected environments, answered from the Prefect UI.

The flow run pauses with an input form (:class:`Approval`). The form shows what is being
approved (app, from and to environments, digest, when and where it was verified, a
link) above its fields, and asks for an explicit decision: ``decision`` has no default,
so submitting the form untouched is refused by the form instead of silently rejecting.
No answer before the timeout fails the run. The decision is kept as an artifact and an
event, so the audit trail lives with the run.
"""

from __future__ import annotations

from typing import Literal, cast

from prefect.artifacts import create_markdown_artifact
from prefect.events import emit_event
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import BaseModel, Field

from shipyard.core.errors import PolicyError

__all__ = ["Approval", "ApprovalRequest", "request_approval"]


class Approval(RunInput):
    """The form shown in the Prefect UI when a promotion waits for approval."""

    decision: Literal["approve", "reject"] = Field(
        description="Approve or reject this promotion (no default: choose one)."
    )
    approver: str = Field(description="Who decides (name or handle).", min_length=1)
    reason: str = Field(
        description="Why: change ticket, test evidence, or the objection.", min_length=1
    )

    @property
    def approved(self) -> bool:
        """True when the decision is to approve."""
        return self.decision == "approve"


class ApprovalRequest(BaseModel):
    """What is being approved, shown above the form and kept in the artifacts."""

    app: str
    from_environment: str
    to_environment: str
    image: str = Field(description="repository@digest that would run in the target.")
    digest: str
    verified_at: str = Field(description="When the digest was verified in the source.")
    verified_in: str = Field(description="Where it was verified (namespace).")
    link: str | None = Field(None, description="The run that asks (Prefect UI).")

    @property
    def subject(self) -> str:
        """One line: ``cart dev to prod``."""
        return f"{self.app} {self.from_environment} to {self.to_environment}"

    def markdown(self) -> str:
        """The request as a short markdown list."""
        lines = [
            f"**Promote {self.app} from {self.from_environment} to {self.to_environment}**",
            "",
            f"- app: `{self.app}`",
            f"- from: `{self.from_environment}` (verified in namespace `{self.verified_in}`)",
            f"- to: `{self.to_environment}`",
            f"- image: `{self.image}`",
            f"- digest: `{self.digest}`",
            f"- verified at: {self.verified_at}",
        ]
        if self.link:
            lines.append(f"- run: [{self.link}]({self.link})")
        return "\n".join(lines)


def request_approval(request: ApprovalRequest, timeout_seconds: int) -> Approval:
    """Pause the flow run until someone answers; PolicyError when they reject.

    A timeout raises Prefect's pause timeout, which fails the run.
    """
    subject = request.subject
    create_markdown_artifact(
        key="approval-request",
        markdown=f"# Approval needed\n\n{request.markdown()}\n\n"
        "Open this run and press **Resume** to answer the form.",
        description=subject,
    )
    form = Approval.with_initial_data(
        description=f"{request.markdown()}\n\nChoose **approve** or **reject**, say who you "
        "are and why."
    )
    answer = cast(
        Approval, pause_flow_run(wait_for_input=form, timeout=timeout_seconds, poll_interval=2)
    )
    decision = "approved" if answer.approved else "rejected"
    emit_event(
        event=f"shipyard.promotion.{decision}",
        resource={"prefect.resource.id": f"shipyard.approval.{subject}"},
        payload={
            "approver": answer.approver,
            "reason": answer.reason,
            "subject": subject,
            **request.model_dump(),
        },
    )
    create_markdown_artifact(
        key="approval-decision",
        markdown=f"# {decision.capitalize()}\n\n{request.markdown()}\n\n"
        f"- by: {answer.approver}\n- reason: {answer.reason}\n",
        description=f"{decision} by {answer.approver}",
    )
    if not answer.approved:
        raise PolicyError(f"{subject}: rejected by {answer.approver}: {answer.reason}")
    return answer
