"""Read-back before drop: an event the Prefect server acknowledged but never stored (its
204 comes before the write, and a crash in between loses it) is sent again.

A loopback proxy in front of a real Prefect server plays that crash: it answers the first
``POST /events`` with 204 and throws the events away, and passes everything else through.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from shipyard.bridge.emit import Forwarder, PrefectEvents
from shipyard.bridge.spool import Spool
from tests.bridge.conftest import PrivatePrefect

pytestmark = pytest.mark.slow


class LosingProxy:
    """Forwards to ``upstream``; swallows the first ``lose`` event posts (answers 204)."""

    def __init__(self, upstream: str, lose: int = 1) -> None:
        self.upstream = upstream.rstrip("/")
        self.lost = 0
        self.lose = lose
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                path = self.path.removeprefix("/api")
                if path == "/events" and proxy.lost < proxy.lose:
                    proxy.lost += 1
                    self.send_response(204)
                    self.end_headers()
                    return
                r = httpx.post(
                    proxy.upstream + path,
                    content=body,
                    headers={"Content-Type": "application/json"},
                    timeout=10,
                )
                self.send_response(r.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(r.content)))
                self.end_headers()
                self.wfile.write(r.content)

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def proxy(private_prefect: PrivatePrefect) -> Iterator[LosingProxy]:
    p = LosingProxy(private_prefect.api_url)
    yield p
    p.close()


def test_an_acknowledged_but_lost_event_is_sent_again(
    proxy: LosingProxy, private_prefect: PrivatePrefect, tmp_path: Path
) -> None:
    resource = f"shipyard.test.readback.{uuid.uuid4().hex[:8]}"
    event = {
        "id": str(uuid.uuid4()),
        "occurred": datetime.now(UTC).isoformat(),
        "event": "registry.image.pushed",
        "resource": {"prefect.resource.id": resource},
        "related": [],
        "payload": {"tag": "lost-once"},
    }
    spool = Spool(tmp_path / "spool")
    spool.append([event])
    forwarder = Forwarder(spool, PrefectEvents(proxy.url), confirm_timeout=2.0)
    forwarder.start()
    try:
        deadline = time.monotonic() + 60
        while spool.depth and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        forwarder.stop()
    assert proxy.lost == 1, "the proxy never swallowed a post: the fault was not injected"
    assert spool.depth == 0, "the event never left the spool"
    assert forwarder.resent >= 1  # again every 2 s until stored (the server writes every few s)
    stored = private_prefect.wait_for_events(1, resource)
    assert [e["id"] for e in stored] == [event["id"]]


def test_without_loss_nothing_is_sent_twice(
    private_prefect: PrivatePrefect, tmp_path: Path
) -> None:
    resource = f"shipyard.test.readback.{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC).isoformat()
    events = [
        {
            "id": str(uuid.uuid4()),
            "occurred": now,
            "event": "registry.image.pushed",
            "resource": {"prefect.resource.id": resource},
            "related": [],
            "payload": {"n": str(i)},
        }
        for i in range(30)
    ]
    spool = Spool(tmp_path / "spool")
    spool.append(events)
    forwarder = Forwarder(spool, PrefectEvents(private_prefect.api_url), batch_size=7)
    forwarder.start()
    try:
        deadline = time.monotonic() + 60
        while spool.depth and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        forwarder.stop()
    assert spool.depth == 0
    assert forwarder.resent == 0
    assert len(private_prefect.wait_for_events(30, resource)) == 30
