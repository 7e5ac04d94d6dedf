"""Alertmanager's webhook (payload version 4) -> one Prefect event per alert.

Alertmanager posts a group of alerts at a time; each alert becomes its own event,
``shipyard.alert.firing`` or ``shipyard.alert.resolved``, so a Prefect automation can
match one alert by its labels. The event's resource is the alert:

- ``prefect.resource.id``: ``shipyard.alert.<alertname>.<fingerprint>`` (the same alert
  firing and resolving is the same resource),
- ``prefect.resource.name``: the alert name,
- ``shipyard.alert.label.<name>``: every label of the alert (what automations match on),
- ``shipyard.alert.status``, ``shipyard.alert.fingerprint``;

and the alert's app (its ``app`` label) is a related resource with role ``app``, as on
registry events. The payload repeats it all with every key present (a Prefect trigger
template naming a missing key creates no flow run): ``alertname``, ``status``, ``app``,
``environment``, ``cluster``, ``severity``, ``image`` (the app's catalog image, when the
bridge has a catalog; see :func:`resolve_target` for alerts without an ``app`` label,
such as Argo CD's), ``starts_at``, ``ends_at``, ``fingerprint``, ``generator_url``,
``summary``, ``description``, ``runbook_url`` and the ``labels`` and ``annotations``
objects.

Alertmanager resends an unresolved alert every ``repeat_interval`` and retries on
errors; the dedupe key ``fingerprint + status + startsAt`` makes a resend of the same
firing one event, while a new firing of the same alert (a new ``startsAt``) and its
resolution are new events.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shipyard.bridge.model import (
    PayloadError,
    optional_str,
    require_list,
    require_mapping,
    require_str,
    timestamp,
)
from shipyard.core.catalog import Catalog

SOURCE = "alertmanager"
FIRING = "shipyard.alert.firing"
RESOLVED = "shipyard.alert.resolved"
RESOURCE_PREFIX = "shipyard.alert."
LABEL_PREFIX = "shipyard.alert.label."
STATUSES = ("firing", "resolved")
# Alertmanager's "not ended" time (Go's zero time) is reported as no end.
_ZERO_TIME = "0001-01-01T00:00:00Z"
EVENT_ID_NAMESPACE = uuid.UUID("0b8e6a5d-3f0e-5c4f-8d2a-7a1c9e4b6f21")


@dataclass(frozen=True, slots=True)
class FiredAlert:
    """One alert of an Alertmanager notification, as the bridge keeps it."""

    status: str
    labels: dict[str, str]
    fingerprint: str
    starts_at: str
    ends_at: str = ""
    generator_url: str = ""
    annotations: dict[str, str] = field(default_factory=dict)
    receiver: str = ""

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "")

    @property
    def event_name(self) -> str:
        return FIRING if self.status == "firing" else RESOLVED

    @property
    def dedupe_key(self) -> str:
        """A resend of the same firing (or resolution) has the same key."""
        return f"{SOURCE}:{self.fingerprint}:{self.status}:{self.starts_at}"

    @property
    def digest_key(self) -> str:
        """Alerts have no image digest (the bridge's per-digest window does not apply)."""
        return ""

    @property
    def event_id(self) -> str:
        """Deterministic Prefect event id: Prefect stores a resent alert's event once."""
        return str(uuid.uuid5(EVENT_ID_NAMESPACE, self.dedupe_key))


def _string_map(value: object, where: str) -> dict[str, str]:
    mapping = require_mapping(value, where)
    out: dict[str, str] = {}
    for key, item in mapping.items():
        if not isinstance(item, str):
            raise PayloadError(f"{where}.{key} must be a string")
        out[key] = item
    return out


def _alert(value: object, where: str, receiver: str) -> FiredAlert:
    alert = require_mapping(value, where)
    status = require_str(alert, "status", where)
    if status not in STATUSES:
        raise PayloadError(f"{where}.status must be firing or resolved, not {status!r}")
    labels = _string_map(alert.get("labels"), f"{where}.labels")
    if not labels.get("alertname"):
        raise PayloadError(f"{where}.labels.alertname must be a non-empty string")
    annotations = alert.get("annotations")
    ends_at = optional_str(alert, "endsAt")
    return FiredAlert(
        status=status,
        labels=labels,
        fingerprint=require_str(alert, "fingerprint", where),
        starts_at=timestamp(require_str(alert, "startsAt", where)),
        ends_at="" if ends_at in ("", _ZERO_TIME) else timestamp(ends_at),
        generator_url=optional_str(alert, "generatorURL"),
        annotations={} if annotations is None else _string_map(annotations, f"{where}.annotations"),
        receiver=receiver,
    )


def parse(doc: object, headers: Mapping[str, str] | None = None) -> list[FiredAlert]:
    """The alerts of an Alertmanager webhook body; PayloadError for another shape.

    Version 4 is the only webhook version Alertmanager has shipped; another version is
    refused rather than guessed at.
    """
    body = require_mapping(doc, "body")
    version = body.get("version")
    if version != "4":
        raise PayloadError(f'body.version must be "4" (Alertmanager\'s webhook), got {version!r}')
    receiver = optional_str(body, "receiver")
    alerts = require_list(body.get("alerts"), "body.alerts")
    return [_alert(a, f"body.alerts[{i}]", receiver) for i, a in enumerate(alerts)]


@dataclass(frozen=True, slots=True)
class AlertTarget:
    """The catalog app (and environment, image) an alert is about; "" when unknown."""

    app: str = ""
    environment: str = ""
    image: str = ""


def resolve_target(labels: Mapping[str, str], catalog: Catalog | None) -> AlertTarget:
    """Which app/environment an alert concerns (pure).

    Shipyard's own alerts carry ``app`` and ``environment`` labels. Argo CD's
    ``argocd_app_info`` carries the Application (``name``) and its destination
    namespace (``dest_namespace``) instead; with a catalog they are mapped to the
    environment whose ``sync.application`` is that name, else to the one environment
    deployed to that namespace. The image is the catalog image of the app.
    """
    app, environment = labels.get("app", ""), labels.get("environment", "")
    if catalog is None:
        return AlertTarget(app, environment)
    if not app:
        pairs = [(a, e) for a in catalog.apps for e in a.environments]
        name, namespace = labels.get("name", ""), labels.get("dest_namespace", "")
        by_application = [(a, e) for a, e in pairs if name and e.sync.application == name]
        by_namespace = [(a, e) for a, e in pairs if namespace and e.namespace == namespace]
        for found in (by_application, by_namespace):
            if len(found) == 1:
                return AlertTarget(found[0][0].name, found[0][1].name, found[0][0].image)
        return AlertTarget("", environment)
    entry = next((a for a in catalog.apps if a.name == app), None)
    return AlertTarget(app, environment, entry.image if entry else "")


def prefect_event(
    alert: FiredAlert, received_at: datetime, target: AlertTarget | None = None
) -> dict[str, Any]:
    """The Prefect event for one alert (see the module docstring for its shape).

    ``occurred`` is when the bridge received it (the alert's own times are in the
    payload); ``target`` is what :func:`resolve_target` found (default: the labels).
    """
    labels = alert.labels
    found = target or resolve_target(labels, None)
    app = found.app
    resource: dict[str, str] = {
        "prefect.resource.id": f"{RESOURCE_PREFIX}{alert.alertname}.{alert.fingerprint}",
        "prefect.resource.name": alert.alertname,
        "shipyard.alert.status": alert.status,
        "shipyard.alert.fingerprint": alert.fingerprint,
    }
    resource.update({f"{LABEL_PREFIX}{k}": v for k, v in sorted(labels.items())})
    related: list[dict[str, str]] = []
    if app:
        related.append(
            {
                "prefect.resource.id": f"shipyard.app.{app}",
                "prefect.resource.role": "app",
                "prefect.resource.name": app,
            }
        )
    payload: dict[str, Any] = {
        "alertname": alert.alertname,
        "status": alert.status,
        "app": app,
        "environment": found.environment,
        "cluster": labels.get("cluster", ""),
        "severity": labels.get("severity", ""),
        "image": found.image,
        "starts_at": alert.starts_at,
        "ends_at": alert.ends_at,
        "fingerprint": alert.fingerprint,
        "generator_url": alert.generator_url,
        "receiver": alert.receiver,
        "summary": alert.annotations.get("summary", ""),
        "description": alert.annotations.get("description", ""),
        "runbook_url": alert.annotations.get("runbook_url", ""),
        "labels": dict(labels),
        "annotations": dict(alert.annotations),
    }
    return {
        "id": alert.event_id,
        "occurred": received_at.astimezone(UTC).isoformat(),
        "event": alert.event_name,
        "resource": resource,
        "related": related,
        "payload": payload,
    }
