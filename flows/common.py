"""Helpers every flow shares: loading saved blocks, the current flow run's id,
publishing what a run did (events, the delivery provenance artifact, a drill's report),
and the Prefect
global concurrency limits flows take slots of.

One module so that flows never import each other's private helpers and every flow
loads its connections and reports its outcome the same way.
"""

from __future__ import annotations

from typing import Any, TypeVar, cast

from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.blocks.core import Block
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import (
    GlobalConcurrencyLimitCreate,
    GlobalConcurrencyLimitUpdate,
)
from prefect.context import get_run_context
from prefect.events import emit_event
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from pydantic import BaseModel, Field

from shipyard.core.errors import ConfigError
from tasks.drill_report import DrillPublication

__all__ = [
    "EVENT_DELIVERED",
    "Provenance",
    "emit",
    "ensure_limit",
    "flow_run_id",
    "load_block",
    "load_optional_block",
    "publish_drill_report",
    "publish_provenance",
]

EVENT_DELIVERED = "shipyard.delivery.completed"

B = TypeVar("B", bound=Block)


def load_block(kind: type[B], name: str) -> B:
    """Load the saved block ``name`` of type ``kind``.

    A missing block is a ConfigError naming it and saying how to create it, so a user
    sees one actionable line instead of Prefect's lookup error.
    """
    try:
        loaded = kind.load(name)
    except ValueError as exc:
        if "Unable to find block document" not in str(exc):
            raise
        raise ConfigError(
            f"no {kind.get_block_type_name()} block named {name!r}: create it in the "
            "Prefect UI (Blocks) or with 'shipyard demo' for the local stack"
        ) from None
    if not isinstance(loaded, kind):
        raise ConfigError(f"block {name!r} is not a {kind.get_block_type_name()}")
    return cast(B, loaded)


def load_optional_block(kind: type[B], name: str | None) -> B | None:
    """:func:`load_block` when ``name`` is set; None (e.g. anonymous access) otherwise."""
    return load_block(kind, name) if name else None


def flow_run_id() -> str | None:
    """The id of the flow run this code runs in; None outside a run (e.g. ``.fn``)."""
    try:
        ctx: Any = get_run_context()
    except Exception:  # noqa: BLE001 - outside a run there is no id to record
        return None
    run = getattr(ctx, "flow_run", None)
    return str(run.id) if run is not None else None


def emit(event: str, resource_id: str, payload: dict[str, Any], name: str | None = None) -> None:
    """Emit a Prefect event about ``resource_id`` (with a display ``name`` when given)."""
    resource = {"prefect.resource.id": resource_id}
    if name is not None:
        resource["prefect.resource.name"] = name
    emit_event(event=event, resource=resource, payload=payload)


class Provenance(BaseModel):
    """The chain of evidence of one delivery, kept as an artifact and an event."""

    app: str
    environment: str
    trigger: str
    source_commit: str | None
    image: str = Field(description="What runs: repository[:tag]@digest.")
    digest: str
    scan: str
    gitops_commit: str | None
    synced_revision: str
    verified_at: str
    flow_run: str | None


def publish_provenance(record: Provenance) -> None:
    """Publish a delivery's evidence: a markdown artifact and a ``delivery.completed``
    event, so the UI and automations see what runs where and why."""
    rows = [
        ("trigger", record.trigger),
        ("source commit", record.source_commit or "(pushed image)"),
        ("image", record.image),
        ("scan", record.scan),
        ("GitOps commit", record.gitops_commit or "(already pinned; no commit)"),
        ("synced revision", record.synced_revision),
        ("verified at", record.verified_at),
    ]
    table = "\n".join(f"| {k} | `{v}` |" for k, v in rows)
    create_markdown_artifact(
        key=f"provenance-{record.app}-{record.environment}",
        markdown=f"# Delivered {record.app} to {record.environment}\n\n"
        f"| step | evidence |\n| --- | --- |\n{table}\n",
        description=f"{record.app}/{record.environment} runs {record.digest[:19]}",
    )
    emit(
        EVENT_DELIVERED,
        f"shipyard.delivery.{record.app}.{record.environment}",
        record.model_dump(),
        name=f"{record.app}/{record.environment}",
    )


def publish_drill_report(publication: DrillPublication) -> None:
    """Publish a backup drill: its report and trend artifacts and its drill event, so the
    UI shows the latest drill and the trend, and automations can act on a failed one."""
    create_markdown_artifact(
        key=publication.REPORT_KEY,
        markdown=publication.report,
        description=publication.report_description,
    )
    create_table_artifact(
        key=publication.TREND_KEY,
        table=publication.trend,
        description=publication.TREND_DESCRIPTION,
    )
    emit_event(
        event=publication.event,
        resource=publication.resource,
        related=publication.related,
        payload=publication.payload,
    )


# Prefect's ``concurrency()`` silently does not limit when the named limit does not
# exist; "one delivery per app and environment", "one writer per GitOps branch" and "one
# rate per registry" must hold on a fresh server too, so flows call ensure_limit before
# taking a slot. The names come from shipyard.core.limits.
def ensure_limit(name: str, limit: int, slot_decay_per_second: float | None = None) -> None:
    """Create the limit (active) if missing; re-activate it if someone disabled it."""
    with get_client(sync_client=True) as client:
        try:
            extra = (
                {}
                if slot_decay_per_second is None
                else {"slot_decay_per_second": slot_decay_per_second}
            )
            client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=name, limit=limit, active=True, **extra)
            )
            return
        except ObjectAlreadyExists:
            pass
        try:
            existing = client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:  # deleted in between: the next call creates it again
            return
        if not existing.active:
            client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(active=True))
