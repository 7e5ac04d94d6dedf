"""The exporter process: ``/metrics`` (Prometheus text) and ``/healthz``, refreshed from
the Prefect API every ``interval`` seconds by one background thread.

A scrape renders the last snapshot (:mod:`.collector`); the refresher reads only what
is new (:func:`~shipyard.exporter.snapshot.refresh`). When Prefect is down the values
stay and ``shipyard_exporter_up`` is 0; ``/healthz`` still answers 200 (the process is
fine; Prometheus alerts on ``shipyard_exporter_up``), with ``prefect_up`` in its body.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from shipyard.exporter.collector import SnapshotCollector
from shipyard.exporter.snapshot import ExporterState, Reader, refresh

__all__ = ["Exporter"]

log = logging.getLogger(__name__)


class Exporter:
    """The refresher thread and the HTTP server around one registry."""

    def __init__(
        self,
        reader: Reader,
        *,
        host: str = "127.0.0.1",
        port: int = 9464,
        interval: float = 15.0,
        lookback: timedelta = timedelta(days=35),
    ) -> None:
        self.reader, self.interval, self.lookback = reader, interval, lookback
        self.state = ExporterState()
        self.collector = SnapshotCollector()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)
        self._stop = threading.Event()
        self._refreshed = threading.Event()
        self.httpd = ThreadingHTTPServer((host, port), self._handler())
        self.httpd.daemon_threads = True
        self._threads: list[threading.Thread] = []

    @property
    def port(self) -> int:
        """The port actually bound (useful with port 0)."""
        return int(self.httpd.server_address[1])

    def refresh_once(self) -> None:
        """One refresh, now (the thread calls this every interval)."""
        self.collector.update(refresh(self.state, self.reader, datetime.now(UTC), self.lookback))
        self._refreshed.set()

    def wait_refreshed(self, timeout: float) -> bool:
        """Block until the first refresh finished (True) or ``timeout`` passed."""
        return self._refreshed.wait(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh_once()
            except Exception:  # a bug must not stop the refresher
                log.exception("exporter: refresh crashed")
            self._stop.wait(self.interval)

    def start(self) -> None:
        """Start refreshing and serving in background threads."""
        for target, name in ((self._loop, "refresh"), (self.httpd.serve_forever, "http")):
            thread = threading.Thread(target=target, name=f"exporter-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def serve_forever(self) -> None:
        """Refresh in the background and serve in this thread until interrupted."""
        thread = threading.Thread(target=self._loop, name="exporter-refresh", daemon=True)
        thread.start()
        try:
            self.httpd.serve_forever()
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop both threads and close the socket."""
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, CONTENT_TYPE_LATEST, generate_latest(exporter.registry))
                elif path == "/healthz":
                    snap = exporter.collector.snapshot
                    body = {"status": "ok", "prefect_up": snap.up}
                    body["last_refresh"] = snap.last_refresh
                    self._send(200, "application/json", json.dumps(body).encode())
                else:
                    self._send(404, "text/plain", b"not found: try /metrics or /healthz\n")

            def _send(self, status: int, kind: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("exporter http: " + format, *args)

        return Handler
