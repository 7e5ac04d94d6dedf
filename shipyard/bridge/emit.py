"""Turn an :class:`ImagePushed` into a Prefect event and forward spooled events to the API.

The open-source Prefect server accepts events at ``POST {PREFECT_API_URL}/events`` as a
JSON array of events (``id``, ``occurred``, ``event``, ``resource``, ``related``,
``payload``) and answers 204; it stores each id once, which makes redelivery harmless.

That 204 comes before the event is stored: the server queues it in memory and writes
it in batches a few seconds later, so a server that dies in that window loses it. The
forwarder therefore drops a batch from the spool only once every event of it can be
read back by id (``POST /events/filter``); a batch still unreadable after
``confirm_timeout`` seconds is sent again. Sending continues while earlier batches wait
for their confirmation, so the read-back adds no latency to the events themselves.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
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
    ``payload.change_time`` is the push time for the delivery ledger, never empty: the
    registry's ``pushed_at``, else when the bridge received it.
    """
    name = f"{pushed.registry}/{pushed.repository}"
    payload = pushed.public()
    payload["app"] = app
    payload["change_time"] = pushed.pushed_at or received_at.astimezone(UTC).isoformat()
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
        self._check(self._request(self.url, orjson.dumps(events)))

    def stored_count(self, ids: list[str], occurred: list[str]) -> int:
        """How many of the events ``ids`` the server has stored (reads them back by id).

        ``occurred``: those events' timestamps, which bound the query (the server's own
        default window would miss events spooled for a long time).
        """
        times = [datetime.fromisoformat(o) for o in occurred]
        query = {
            "filter": {
                "id": {"id": ids},
                "occurred": {
                    "since": (min(times) - timedelta(minutes=1)).isoformat(),
                    "until": (max(times) + timedelta(hours=1)).isoformat(),
                },
            },
            "limit": 1,
        }
        response = self._request(self.url + "/filter", orjson.dumps(query))
        self._check(response)
        total: int = response.json().get("total", 0)
        return total

    def _request(self, url: str, body: bytes) -> httpx.Response:
        try:
            return self._client.post(url, content=body)
        except httpx.HTTPError as exc:
            raise TransientError(f"Prefect API unreachable at {self.url}: {exc}") from None

    @staticmethod
    def _check(response: httpx.Response) -> None:
        error = classify_http_status(response.status_code)
        if error is None:
            return
        if response.status_code in (401, 403):
            error = TransientError  # a credential fix must not lose the queue
        raise error(f"Prefect API answered {response.status_code}: {response.text[:300]}")

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()


@dataclass
class _InFlight:
    """A batch the API took but has not yet shown stored."""

    batch: Batch
    records: list[dict[str, Any]]  # those not dead-lettered: the ones to read back
    sent_at: float
    checked_at: float = field(default=0.0)


class Forwarder:
    """A thread draining the spool into Prefect in order, in batches, with backoff.

    A batch leaves the spool only when all its events can be read back from the server
    (see the module docstring); up to ``max_in_flight`` batches wait for that at once.
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
        confirm_timeout: float = 20.0,
        confirm_every: float = 0.5,
        max_in_flight: int = 16,
    ) -> None:
        self.spool = spool
        self.client = client
        self.batch_size = batch_size
        self.max_backoff = max_backoff
        self.confirm_timeout = confirm_timeout
        self.confirm_every = confirm_every
        self.max_in_flight = max_in_flight
        self._on_emitted = on_emitted
        self._on_dead = on_dead
        self._in_flight: list[_InFlight] = []
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bridge-forwarder", daemon=True)
        self.last_error = ""
        self.failures = 0
        self.resent = 0

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
            try:
                progressed = self._confirm_head()
                if len(self._in_flight) < self.max_in_flight:
                    after = self._in_flight[-1].batch if self._in_flight else None
                    batch = self.spool.read_batch(self.batch_size, after=after)
                    if batch is not None:
                        self._send(batch)
                        progressed = True
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
            if not progressed:
                self._wake.wait(self.confirm_every if self._in_flight else 1.0)

    def _send(self, batch: Batch) -> None:
        try:
            self.client.post(batch.records)
        except PermanentError:
            sent = self._send_one_by_one(batch)
        else:
            sent = list(batch.records)
        self._in_flight.append(_InFlight(batch, sent, time.monotonic()))
        self._on_emitted(len(sent))

    def _confirm_head(self) -> bool:
        """Drop the oldest batch from the spool once the server shows all of it stored;
        send it again when it has not shown up within ``confirm_timeout``."""
        if not self._in_flight:
            return False
        head = self._in_flight[0]
        now = time.monotonic()
        if head.records and now - head.checked_at < self.confirm_every:
            return False
        head.checked_at = now
        if head.records:
            ids = [str(r["id"]) for r in head.records]
            stored = self.client.stored_count(ids, [str(r["occurred"]) for r in head.records])
            if stored < len(ids):
                if now - head.sent_at < self.confirm_timeout:
                    return False
                log.warning(
                    "bridge: %d of %d event(s) not stored %.0f s after the API took them; "
                    "sending them again",
                    len(ids) - stored,
                    len(ids),
                    now - head.sent_at,
                )
                self.client.post(head.records)
                self.resent += len(head.records)
                head.sent_at = time.monotonic()
                return True
        self.spool.ack(head.batch)
        self._in_flight.pop(0)
        return True

    def _send_one_by_one(self, batch: Batch) -> list[dict[str, Any]]:
        """Send a batch the API refused one event at a time; return those it took."""
        sent: list[dict[str, Any]] = []
        for record in batch.records:
            try:
                self.client.post([record])
            except PermanentError as exc:
                log.error("bridge: event %s rejected, dead-lettered: %s", record.get("id"), exc)
                self._dead_letter(record)
                self._on_dead(1)
            else:
                sent.append(record)
        return sent

    def _dead_letter(self, record: dict[str, Any]) -> None:
        path: Path = self.spool.directory / "dead-letter.jsonl"
        with open(path, "ab") as fh:
            fh.write(orjson.dumps(record) + b"\n")


def utcnow() -> datetime:
    """The current time in UTC (one place to read the clock)."""
    return datetime.now(UTC)
