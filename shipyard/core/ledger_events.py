"""Shipyard's delivery events, and the pure derivation ``events -> ledger records``.

The event vocabulary (names, resources, payload keys) is documented in
``docs/events.md``; this module holds the names the flows emit and the one function
that turns a stream of those events into :class:`~shipyard.core.ledger.DeliveryRecord`
s, so ``shipyard deliveries export``, ``shipyard dora`` and the exporter all read the
same ledger from the same events. No I/O here: readers of Prefect's events API live in
the apps floor.

Rules (issue 16):

* ``shipyard.delivery.completed`` with ``outcome: delivered`` is a succeeded record;
  ``already delivered`` changed nothing and is no record (but proves the environment
  healthy, so it restores an open failure).
* ``shipyard.delivery.failed`` is a failed record. When its rollback was verified (no
  ``rollback_error``) the record is restored at the event's time; otherwise the next
  healthy verification of the same app, environment and cluster restores it.
* ``shipyard.delivery.blocked`` (build, scan, push, GitOps write or config failed before
  the environment changed) is no deployment: see :func:`blocked_attempts`.
* A record without ``change_time`` (a promotion) takes it from the earliest record of the
  same app and digest that has one: the change is the same, only the target differs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shipyard.core.errors import ConfigError, PolicyError, TransientError
from shipyard.core.ledger import CAUSES, DeliveryRecord

__all__ = [
    "DELIVERY_EVENTS",
    "EVENT_BLOCKED",
    "EVENT_DELIVERED",
    "EVENT_FAILED",
    "EVENT_PUSHED",
    "EVENT_STARTED",
    "BlockedAttempt",
    "Event",
    "blocked_attempts",
    "blocked_cause",
    "derive_records",
    "iso_z",
    "parse_time",
    "pending_changes",
]

EVENT_STARTED = "shipyard.delivery.started"
EVENT_DELIVERED = "shipyard.delivery.completed"
EVENT_FAILED = "shipyard.delivery.failed"
EVENT_BLOCKED = "shipyard.delivery.blocked"
EVENT_PUSHED = "registry.image.pushed"
DELIVERY_EVENTS: tuple[str, ...] = (EVENT_STARTED, EVENT_DELIVERED, EVENT_FAILED, EVENT_BLOCKED)
ALREADY_DELIVERED = "already delivered"


def iso_z(moment: datetime) -> str:
    """``moment`` as ISO 8601 in UTC with a ``Z`` (seconds resolution kept exact)."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_time(value: object) -> datetime | None:
    """An aware datetime from an ISO 8601 string (``Z`` or offset; naive = UTC), or None
    for an empty or unparsable value (old events, registries that send no time)."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and value.strip():
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def blocked_cause(step: str, exc: BaseException) -> str:
    """The ledger cause of a failure at ``step`` before the environment changed.

    A configuration error is ``config`` wherever it happens; a policy refusal while
    building or scanning is the scan gate (``scan``); an error that stayed transient
    after its retries (registry, Docker, git host or API unreachable) is
    ``infrastructure``; anything else is the step itself.
    """
    if isinstance(exc, ConfigError):
        return "config"
    if isinstance(exc, PolicyError) and step in ("build", "scan", "push"):
        return "scan"
    if isinstance(exc, TransientError):
        return "infrastructure"
    return step if step in CAUSES else "infrastructure"


class Event(BaseModel):
    """One Prefect event as the events API returns it (only what the ledger reads)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    occurred: datetime
    event: str
    resource: dict[str, str] = Field(default_factory=dict)
    related: list[dict[str, str]] = Field(default_factory=list)
    payload: dict[str, Any] = Field(default_factory=dict)

    @field_validator("occurred")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)

    @property
    def resource_id(self) -> str:
        """``prefect.resource.id`` of the event's resource."""
        return self.resource.get("prefect.resource.id", "")

    def target(self) -> tuple[str, str, str | None]:
        """(app, environment, cluster) from the payload, else from the resource ids."""
        app = str(self.payload.get("app") or "")
        environment = str(self.payload.get("environment") or "")
        if not (app and environment):
            parts = self.resource_id.split(".")
            if len(parts) >= 4 and parts[:2] == ["shipyard", "delivery"]:
                app, environment = app or parts[2], environment or ".".join(parts[3:])
        cluster = self.payload.get("cluster") or next(
            (
                r.get("prefect.resource.name") or r["prefect.resource.id"].split(".", 2)[-1]
                for r in self.related
                if r.get("prefect.resource.role") == "cluster"
                and r.get("prefect.resource.id", "").startswith("shipyard.cluster.")
            ),
            None,
        )
        return app, environment, str(cluster) if cluster else None


def _ordered(events: Iterable[Event | Mapping[str, Any]]) -> list[Event]:
    """Events parsed, de-duplicated by id (pages may overlap) and sorted by time."""
    seen: dict[str, Event] = {}
    for raw in events:
        event = raw if isinstance(raw, Event) else Event.model_validate(raw)
        seen.setdefault(event.id, event)
    return sorted(seen.values(), key=lambda e: (e.occurred, e.id))


def _text(payload: Mapping[str, Any], key: str) -> str | None:
    value = payload.get(key)
    return str(value) if value not in (None, "") else None


def derive_records(events: Iterable[Event | Mapping[str, Any]]) -> list[DeliveryRecord]:
    """The delivery ledger of ``events`` (any mix; non-delivery events are ignored),
    one record per deployment, in order of ``deployed_at``. Pure."""
    records: list[DeliveryRecord] = []
    open_failures: dict[tuple[str, str, str | None], list[int]] = {}
    change_times: dict[tuple[str, str], datetime] = {}

    def restore(key: tuple[str, str, str | None], at: datetime) -> None:
        for index in open_failures.pop(key, []):
            failed = records[index]
            if at >= failed.deployed_at:
                records[index] = failed.model_copy(update={"restored_at": at})

    for event in _ordered(events):
        if event.event not in (EVENT_DELIVERED, EVENT_FAILED):
            continue
        app, environment, cluster = event.target()
        if not (app and environment):
            continue
        key = (app, environment, cluster)
        p = event.payload
        digest = _text(p, "digest")
        if event.event == EVENT_DELIVERED:
            deployed = (
                parse_time(p.get("deployed_at")) or parse_time(p.get("verified_at"))
            ) or event.occurred
            restore(key, deployed)
            if p.get("outcome") == ALREADY_DELIVERED:
                continue
            outcome, cause, restored = "succeeded", None, None
        else:
            deployed = parse_time(p.get("deployed_at")) or event.occurred
            outcome = "failed"
            cause = _text(p, "cause") or "verify"
            cause = cause if cause in CAUSES else "verify"
            restored = None if p.get("rollback_error") else event.occurred
        change_time = parse_time(p.get("change_time"))
        if digest is not None:
            if change_time is None:
                change_time = change_times.get((app, digest))
            elif (app, digest) not in change_times:
                change_times[(app, digest)] = change_time
        record = DeliveryRecord(
            app=app,
            environment=environment,
            cluster=cluster,
            outcome=outcome,
            change_time=change_time,
            deployed_at=deployed,
            restored_at=restored,
            digest=digest,
            source_commit=_text(p, "source_commit"),
            cause=cause,
            flow_run=_text(p, "flow_run"),
        )
        if outcome == "failed" and restored is None:
            open_failures.setdefault(key, []).append(len(records))
        records.append(record)
    return sorted(records, key=lambda r: r.deployed_at)


@dataclass(frozen=True)
class BlockedAttempt:
    """An attempt that failed before it changed its environment (no deployment)."""

    app: str
    environment: str
    cluster: str | None
    cause: str
    at: datetime
    reason: str


def blocked_attempts(events: Iterable[Event | Mapping[str, Any]]) -> list[BlockedAttempt]:
    """Every ``shipyard.delivery.blocked`` of ``events``, in time order. Pure."""
    out = []
    for event in _ordered(events):
        if event.event != EVENT_BLOCKED:
            continue
        app, environment, cluster = event.target()
        cause = str(event.payload.get("cause") or "infrastructure")
        out.append(
            BlockedAttempt(
                app=app,
                environment=environment,
                cluster=cluster,
                cause=cause if cause in CAUSES else "infrastructure",
                at=event.occurred,
                reason=str(event.payload.get("reason") or ""),
            )
        )
    return out


def pending_changes(
    events: Iterable[Event | Mapping[str, Any]],
) -> dict[tuple[str, str], datetime]:
    """The oldest change waiting per (app, environment): the contract of
    ``shipyard_change_pending_since_timestamp_seconds``. Pure.

    A change waits from its push (``registry.image.pushed`` naming an app) or from the
    ``started`` event of its delivery, until that attempt ends (completed, failed or
    blocked: after that nothing waits, a person or an alert acts). A push is matched to
    its delivery by app and digest (a push without digest: by the app's next attempt).
    Before its delivery started, a push waits in the environment the app's pushes were
    last delivered to (``""`` when none ever was). An attempt that never ended (a
    crashed run) stops waiting once a later attempt of the same target ends. Since = the
    change's time (push or commit), else the event's time.
    """
    # flow run -> (app, env, since, started occurred)
    waiting: dict[str, tuple[str, str, datetime, datetime]] = {}
    pushes: dict[tuple[str, str], tuple[datetime, datetime]] = {}  # (app, digest|id)
    push_env: dict[str, str] = {}
    for event in _ordered(events):
        p = event.payload
        if event.event == EVENT_PUSHED:
            app, digest = str(p.get("app") or ""), str(p.get("digest") or "")
            if app:
                since = parse_time(p.get("change_time") or p.get("pushed_at")) or event.occurred
                key = (app, digest or f"#{event.id}")
                old = pushes.get(key)
                pushes[key] = (min(since, old[0]) if old else since, event.occurred)
            continue
        if event.event not in DELIVERY_EVENTS:
            continue
        app, environment, _ = event.target()
        digest = str(p.get("digest") or "")
        run = str(p.get("flow_run") or event.id)
        if str(p.get("trigger") or "").startswith("registry-push"):
            push_env[app] = environment
        matched = [
            k
            for k, (_, at) in pushes.items()
            if k[0] == app and (k[1] == digest or (k[1].startswith("#") and at <= event.occurred))
        ]
        pushed = [pushes.pop(k)[0] for k in matched]
        if event.event == EVENT_STARTED:
            since = parse_time(p.get("change_time")) or event.occurred
            waiting[run] = (app, environment, min([since, *pushed]), event.occurred)
            continue
        ended = waiting.pop(run, None)
        began = ended[3] if ended else event.occurred
        for other in [
            r for r, w in waiting.items() if w[:2] == (app, environment) and w[3] <= began
        ]:
            del waiting[other]
    oldest: dict[tuple[str, str], datetime] = {}
    for app, environment, since, _ in waiting.values():
        pair = (app, environment)
        oldest[pair] = min(since, oldest.get(pair, since))
    for (app, _), (since, _) in pushes.items():
        pair = (app, push_env.get(app, ""))
        oldest[pair] = min(since, oldest.get(pair, since))
    return oldest
