"""Helpers every flow shares: loading saved blocks, the current flow run's id, name and
link, publishing what a run did (events, the delivery provenance and rollback artifacts,
a drill's report), and the Prefect global concurrency limits flows take slots of.

One module so that flows never import each other's private helpers and every flow
loads its connections and reports its outcome the same way.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar, cast
from uuid import UUID

from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.blocks.core import Block
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.actions import (
    GlobalConcurrencyLimitCreate,
    GlobalConcurrencyLimitUpdate,
)
from prefect.concurrency.sync import concurrency
from prefect.context import get_run_context
from prefect.events import emit_event
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from pydantic import BaseModel, Field

from shipyard.core.errors import ConfigError
from shipyard.core.ledger_events import (
    EVENT_BLOCKED,
    EVENT_DELIVERED,
    EVENT_FAILED,
    EVENT_STARTED,
    blocked_cause,
    iso_z,
)
from shipyard.core.limits import LIMITS_ADMIN
from shipyard.core.oci import has_registry_host, split_reference
from tasks.drill_report import DrillPublication

__all__ = [
    "EVENT_BLOCKED",
    "EVENT_DELIVERED",
    "EVENT_FAILED",
    "EVENT_STARTED",
    "Attempt",
    "Provenance",
    "RollbackReport",
    "emit",
    "ensure_limit",
    "flow_run_id",
    "flow_run_url",
    "image_url",
    "load_block",
    "load_optional_block",
    "name_run",
    "publish_drill_report",
    "publish_provenance",
    "publish_rollback",
    "publish_started",
    "report_blocked",
    "run_name",
    "short_ref",
]

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


def flow_run_url() -> str | None:
    """The Prefect UI link of the current flow run (PREFECT_UI_URL, else derived from
    the API URL); None outside a run."""
    try:
        from prefect.runtime import flow_run

        url = flow_run.ui_url
    except Exception:  # noqa: BLE001 - outside a run there is simply no link
        return None
    return str(url) if url else None


def short_ref(ref: str) -> str:
    """Six characters a person recognises: a digest's or commit's head, else the tag."""
    text = ref.split(":", 1)[1] if ref.startswith("sha256:") else ref
    if all(c in "0123456789abcdef" for c in text.lower()) and len(text) >= 7:
        return text[:6]
    return text


def run_name(app: str, environment: str, ref: str = "") -> str:
    """A run's name as people say it: ``cart→dev 5f3a2c`` (app, target, what goes there)."""
    name = f"{app}→{environment}" if environment else app
    return f"{name} {short_ref(ref)}" if ref else name


def name_run(name: str) -> None:
    """Rename the current flow run (once the target and digest are known); no-op outside
    a run. Best effort: a name is a label, never a reason to fail a delivery."""
    run_id = flow_run_id()
    if run_id is None:
        return
    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run(UUID(run_id), name=name)
    except Exception:  # noqa: BLE001 - see the docstring
        return


def image_url(image: str, digest: str, *, insecure: bool = False) -> str:
    """A link to ``image@digest`` where a URL is known: Docker Hub's and Quay's pages,
    otherwise the registry's own manifest endpoint (OCI distribution API)."""
    ref = split_reference(image)
    host, _, path = ref.name.partition("/")
    if not path or not has_registry_host(host):
        host, path = "docker.io", ref.name
    if host in ("docker.io", "index.docker.io", "registry-1.docker.io"):
        repo = path if "/" in path else f"library/{path}"
        layer = digest.replace(":", "-")
        return f"https://hub.docker.com/layers/{repo}/{ref.tag or 'latest'}/images/{layer}"
    if host == "quay.io":
        return f"https://quay.io/repository/{path}/manifest/{digest}"
    scheme = "http" if insecure else "https"
    return f"{scheme}://{host}/v2/{path}/manifests/{digest}"


def emit(
    event: str,
    resource_id: str,
    payload: dict[str, Any],
    name: str | None = None,
    related: list[dict[str, str]] | None = None,
) -> None:
    """Emit a Prefect event about ``resource_id`` (with a display ``name`` when given)."""
    resource = {"prefect.resource.id": resource_id}
    if name is not None:
        resource["prefect.resource.name"] = name
    emit_event(event=event, resource=resource, payload=payload, related=related or None)


def _cluster_related(cluster: str | None) -> list[dict[str, str]] | None:
    """The delivery events' related resource naming the target cluster."""
    if not cluster:
        return None
    return [
        {
            "prefect.resource.id": f"shipyard.cluster.{cluster}",
            "prefect.resource.role": "cluster",
            "prefect.resource.name": cluster,
        }
    ]


@dataclass
class Attempt:
    """One delivery attempt to one environment and cluster, as the ledger sees it.

    The flow fills it as it learns (digest, source commit) and moves ``step`` along
    (``config`` -> ``build``/``push`` -> ``scan`` -> ``gitops``); ``deployed_at`` is set
    the moment the environment is changed (the GitOps commit is synced). A failure
    while ``deployed_at`` is unset blocked the attempt (:func:`report_blocked`).
    """

    app: str
    environment: str
    cluster: str | None = None
    change_time: str | None = None
    digest: str | None = None
    source_commit: str | None = None
    step: str = "config"
    deployed_at: str | None = None
    trigger: str = ""

    def changed(self) -> None:
        """Mark the environment as changed now (the GitOps commit is about to sync)."""
        self.deployed_at = iso_z(datetime.now(UTC))

    def payload(self) -> dict[str, Any]:
        """The ledger keys every delivery event carries."""
        return {
            "app": self.app,
            "environment": self.environment,
            "cluster": self.cluster,
            "digest": self.digest,
            "source_commit": self.source_commit or None,
            "change_time": self.change_time or None,
            "flow_run": flow_run_id(),
            "trigger": self.trigger,
        }


def publish_started(attempt: Attempt) -> None:
    """Emit ``shipyard.delivery.started``: this attempt is under way (its change waits)."""
    emit(
        EVENT_STARTED,
        f"shipyard.delivery.{attempt.app}.{attempt.environment}",
        attempt.payload(),
        name=f"{attempt.app}/{attempt.environment}",
        related=_cluster_related(attempt.cluster),
    )


@contextmanager
def report_blocked(attempt: Attempt) -> Iterator[Attempt]:
    """Emit ``shipyard.delivery.blocked`` when the block fails before the environment
    changed (build, scan, push, GitOps write, config): no deployment, but an attempt the
    exporter counts. The error is re-raised unchanged."""
    try:
        yield attempt
    except BaseException as exc:
        if attempt.deployed_at is None:
            payload = attempt.payload()
            payload["cause"] = blocked_cause(attempt.step, exc)
            payload["reason"] = " ".join(str(exc).split())[:500] or type(exc).__name__
            with suppress(Exception):  # reporting must never hide the failure
                emit(
                    EVENT_BLOCKED,
                    f"shipyard.delivery.{attempt.app}.{attempt.environment}",
                    payload,
                    name=f"{attempt.app}/{attempt.environment}",
                    related=_cluster_related(attempt.cluster),
                )
        raise


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
    outcome: str = Field("delivered", description="delivered, or already delivered.")
    approver: str | None = Field(None, description="Who approved a promotion.")
    reason: str | None = Field(None, description="Why they approved it.")
    links: dict[str, str] = Field(
        default_factory=dict, description="URLs of the run, commits and image, where known."
    )
    cluster: str | None = Field(None, description="The target cluster (block name).")
    change_time: str | None = Field(
        None, description="Commit time of the source, or push time of the image (ISO 8601)."
    )
    deployed_at: str | None = Field(
        None, description="When the change was verified running (ISO 8601); ledger time."
    )


def _cell(value: str, link: str | None) -> str:
    return f"[`{value}`]({link})" if link else f"`{value}`"


def publish_provenance(record: Provenance) -> None:
    """Publish a delivery's evidence: a markdown artifact and a ``delivery.completed``
    event, so the UI and automations see what runs where and why. Run, commits and image
    are links where a URL is known (``record.links``)."""
    links = record.links
    rows = [
        ("outcome", record.outcome, None),
        ("trigger", record.trigger, None),
        ("source commit", record.source_commit or "(pushed image)", links.get("source_commit")),
        ("image", record.image, links.get("image")),
        ("scan", record.scan, None),
        (
            "GitOps commit",
            record.gitops_commit or "(already pinned; no commit)",
            links.get("gitops_commit"),
        ),
        ("synced revision", record.synced_revision, links.get("synced_revision")),
        ("verified at", record.verified_at, None),
    ]
    if record.approver is not None:
        rows += [("approved by", record.approver, None), ("reason", record.reason or "", None)]
    if record.flow_run:
        rows.append(("flow run", record.flow_run, links.get("flow_run")))
    table = "\n".join(f"| {k} | {_cell(v, link)} |" for k, v, link in rows)
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
        related=_cluster_related(record.cluster),
    )


class RollbackReport(BaseModel):
    """A delivery that did not stay: what was tried, why it failed, what was put back."""

    app: str
    environment: str
    digest: str
    commit: str = Field(description="The GitOps commit that was rolled back.")
    reason: str = Field(description="Why the delivery failed.")
    revert_commit: str | None = Field(None, description="The revert commit, when made.")
    rollback_error: str | None = Field(None, description="Why the rollback failed, if it did.")
    flow_run: str | None = None
    links: dict[str, str] = Field(default_factory=dict)
    cluster: str | None = Field(None, description="The target cluster (block name).")
    source_commit: str | None = None
    change_time: str | None = Field(None, description="Commit or push time (ISO 8601).")
    deployed_at: str | None = Field(None, description="When the change was applied.")
    cause: str | None = Field(None, description="The failed step: sync or verify.")
    outcome: str = Field("failed", description="Always failed (the ledger's outcome).")

    @property
    def state_message(self) -> str:
        """The top-level run's state message: ``rolled back: <reason>``."""
        if self.rollback_error is not None:
            return f"rollback failed: {self.rollback_error} (after: {self.reason})"
        return f"rolled back: {self.reason}"


def publish_rollback(report: RollbackReport) -> None:
    """Make a rollback visible on the run that asked for the delivery: a keyed
    ``rollback-<app>-<env>`` artifact and a ``shipyard.delivery.failed`` event."""
    links = report.links
    rows = [
        ("reason", report.reason, None),
        ("image", report.digest, links.get("image")),
        ("rolled back commit", report.commit, links.get("commit")),
        ("revert commit", report.revert_commit or "(none)", links.get("revert_commit")),
        (
            "outcome",
            f"FAILED: {report.rollback_error}"
            if report.rollback_error
            else "previous version healthy",
            None,
        ),
    ]
    table = "\n".join(f"| {k} | {_cell(v, link)} |" for k, v, link in rows)
    create_markdown_artifact(
        key=f"rollback-{report.app}-{report.environment}",
        markdown=f"# Rolled back {report.app} in {report.environment}\n\n"
        f"| | |\n| --- | --- |\n{table}\n",
        description=report.state_message,
    )
    emit(
        EVENT_FAILED,
        f"shipyard.delivery.{report.app}.{report.environment}",
        report.model_dump(),
        name=f"{report.app}/{report.environment}",
        related=_cluster_related(report.cluster),
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
    """Make sure the limit exists and is active, without a failed create on the server.

    Read first: the usual case is that it exists (re-activated if someone disabled it).
    Only a missing limit is created, by one creator at a time (a process lock, and across
    processes the one slot of ``LIMITS_ADMIN``), which reads again before it creates: a
    racing INSERT would be a UNIQUE-constraint traceback in the server's log and, on
    SQLite, one more writer waiting for the lock. A 409 from a creator that does not take
    the slot (a person, another tool) counts as success.
    """
    extra = (
        {} if slot_decay_per_second is None else {"slot_decay_per_second": slot_decay_per_second}
    )
    with get_client(sync_client=True) as client:
        if _activate_limit(client, name):
            return
        with _LIMIT_CREATION, _limit_creation_slot(client):
            if _activate_limit(client, name):
                return
            try:
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=name, limit=limit, active=True, **extra)
                )
            except ObjectAlreadyExists:
                _activate_limit(client, name)


_LIMIT_CREATION = threading.Lock()


def _activate_limit(client: SyncPrefectClient, name: str) -> bool:
    """True when the limit exists (made active if it was not); False when it does not."""
    try:
        existing = client.read_global_concurrency_limit_by_name(name)
    except ObjectNotFound:
        return False
    if not existing.active:
        client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(active=True))
    return True


@contextmanager
def _limit_creation_slot(client: SyncPrefectClient) -> Iterator[None]:
    """Hold the one slot of ``LIMITS_ADMIN`` (created first if `stack up` did not)."""
    if not _activate_limit(client, LIMITS_ADMIN):
        with suppress(ObjectAlreadyExists):
            client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=LIMITS_ADMIN, limit=1, active=True)
            )
    # The shortest lease Prefect allows: a creator killed while holding the slot blocks
    # other creators for a minute at most.
    with concurrency(LIMITS_ADMIN, occupy=1, timeout_seconds=120, lease_duration=60, strict=True):
        yield
