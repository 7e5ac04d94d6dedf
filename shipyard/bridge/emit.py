"""Turn an :class:`ImagePushed` into a Prefect event and forward spooled events to the API.

The open-source Prefect server accepts events at ``POST {PREFECT_API_URL}/events`` as a
JSON array of events (``id``, ``occurred``, ``event``, ``resource``, ``related``,
``payload``) and answers 204; it stores each id once, which makes redelivery harmless.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from shipyard.bridge.model import ImagePushed
from shipyard.bridge.spool import Batch, Spool
from shipyard.core.errors import PermanentError, TransientError, classify_http_status

log = logging.getLogger(__name__)

EVENT_NAME = "registry.image.pushed"
RESOURCE_PREFIX = "oci.image."


def prefect_event(pushed: ImagePushed, app: str, received_at: datetime) -> dict[str, Any]:
    """The Prefect event for one push; every payload key present, all strings.

    ``occurred`` is when the bridge received the notification (registries' clocks and
    resolutions vary; the registry's own time is ``payload.pushed_at``).
    """
    name = f"{pushed.registry}/{pushed.repository}"
    payload = pushed.public()
    payload["app"] = app
    related: list[dict[str, str]] = []
    if app:
        related.append(
            {
                "prefect.resource.id": f"shipyard.app.{app}",
                "prefect.resource.role": "app",
                "prefect.resource.name": app,
            }
        )
    return {
        "id": pushed.event_id,
        "occurred": received_at.astimezone(UTC).isoformat(),
        "event": EVENT_NAME,
        "resource": {
            "prefect.resource.id": f"{RESOURCE_PREFIX}{name}",
            "prefect.resource.name": name,
            "oci.registry": pushed.registry,
            "oci.repository": pushed.repository,
            "oci.tag": pushed.tag,
            "oci.digest": pushed.digest,
            "shipyard.source": pushed.source,
        },
        "related": related,
        "payload": payload,
    }


class PrefectEvents:
    """A small client for the events endpoint; errors come out as Shipyard errors."""

    def __init__(
        self,
        api_url: str,
        api_key: str = "",
        auth_string: str = "",
        timeout: float = 5.0,
    ) -> None:
        headers = {"Content-Type": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        auth = tuple(auth_string.split(":", 1)) if auth_string and ":" in auth_string else None
        self.url = api_url.rstrip("/") + "/events"
        self._client = httpx.Client(headers=headers, timeout=timeout, auth=auth)  # type: ignore[arg-type]

    def post(self, events: list[dict[str, Any]]) -> None:
        """Send ``events``; TransientError when retrying may help, PermanentError if not."""
        try:
            response = self._client.post(self.url, content=orjson.dumps(events))
        except httpx.HTTPError as exc:
            raise TransientError(f"Prefect API unreachable at {self.url}: {exc}") from None
        error = classify_http_status(response.status_code)
        if error is None:
            return
        if response.status_code in (401, 403):
            error = TransientError  # a credential fix must not lose the queue
        raise error(f"Prefect API answered {response.status_code}: {response.text[:300]}")

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()


class Forwarder:
    """A thread draining the spool into Prefect in order, in batches, with backoff.

    A batch the API rejects as invalid (a 4xx other than auth) would block the queue
    forever, so it is retried event by event and the offending events are moved to
    ``dead-letter.jsonl`` beside the spool.
    """

    def __init__(
        self,
        spool: Spool,
        client: PrefectEvents,
        batch_size: int = 200,
        max_backoff: float = 5.0,
        on_emitted: Callable[[int], None] = lambda n: None,
        on_dead: Callable[[int], None] = lambda n: None,
    ) -> None:
        self.spool = spool
        self.client = client
        self.batch_size = batch_size
        self.max_backoff = max_backoff
        self._on_emitted = on_emitted
        self._on_dead = on_dead
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bridge-forwarder", daemon=True)
        self.last_error = ""
        self.failures = 0

    def start(self) -> None:
        """Start forwarding in the background."""
        self._thread.start()

    def wake(self) -> None:
        """Tell the forwarder that new events were spooled."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the batch in flight; what is left stays spooled for next time."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    @property
    def healthy(self) -> bool:
        """False while the API is failing (events are then piling up in the spool)."""
        return not self.last_error

    def _run(self) -> None:
        backoff = 0.2
        while not self._stop.is_set():
            self._wake.clear()
            batch = self.spool.read_batch(self.batch_size)
            if batch is None:
                self._wake.wait(1.0)
                continue
            try:
                self._send(batch)
            except TransientError as exc:
                self.failures += 1
                if self.last_error != exc.message:
                    log.warning("bridge: %s; %d event(s) spooled", exc.message, self.spool.depth)
                self.last_error = exc.message
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                continue
            if self.last_error:
                log.warning("bridge: Prefect API is back; draining the spool")
            self.last_error = ""
            backoff = 0.2

    def _send(self, batch: Batch) -> None:
        try:
            self.client.post(batch.records)
        except PermanentError:
            emitted = self._send_one_by_one(batch)
        else:
            emitted = len(batch.records)
        self.spool.ack(batch)
        self._on_emitted(emitted)

    def _send_one_by_one(self, batch: Batch) -> int:
        """Send a batch the API refused one event at a time; return how many it took."""
        emitted = 0
        for record in batch.records:
            try:
                self.client.post([record])
            except PermanentError as exc:
                log.error("bridge: event %s rejected, dead-lettered: %s", record.get("id"), exc)
                self._dead_letter(record)
                self._on_dead(1)
            else:
                emitted += 1
        return emitted

    def _dead_letter(self, record: dict[str, Any]) -> None:
        path: Path = self.spool.directory / "dead-letter.jsonl"
        with open(path, "ab") as fh:
            fh.write(orjson.dumps(record) + b"\n")


def utcnow() -> datetime:
    """The current time in UTC (one place to read the clock)."""
    return datetime.now(UTC)
