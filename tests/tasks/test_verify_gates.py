"""Smoke checks against a small real HTTP app; metric gates against a stateful fake of
Prometheus' /api/v1/query, both on loopback."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from shipyard.core.catalog import MetricGate, SmokeCheck
from shipyard.core.errors import PolicyError
from tasks.metric_gate import (
    Measurement,
    analysis_phase,
    judge_value,
    parse_query_result,
    run_analysis,
)
from tasks.smoke_check import judge_response, run_smoke


class _Server:
    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class App:
    """A tiny web app: /healthz says ok after ``warmup`` requests; /broken is a 500."""

    def __init__(self, warmup: int = 0) -> None:
        self.hits = 0
        self.warmup = warmup
        app = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                app.hits += 1
                if self.path == "/healthz" and app.hits > app.warmup:
                    code, body = 200, b'{"status": "ok", "version": "2"}'
                elif self.path == "/healthz":
                    code, body = 503, b"warming up"
                else:
                    code, body = 500, b"boom"
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = _Server(Handler)
        self.url = self.server.url


class FakePrometheus:
    """Answers /api/v1/query from a queue of values per query (stateful, wire format)."""

    def __init__(self) -> None:
        self.series: dict[str, list[Any]] = {}
        self.queries: list[str] = []
        prom = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = (parse_qs(parts.query).get("query") or [""])[0]
                prom.queries.append(query)
                if parts.path != "/api/v1/query":
                    code, doc = 404, {"status": "error", "errorType": "not_found", "error": "no"}
                elif query not in prom.series or not prom.series[query]:
                    code, doc = (
                        400,
                        {
                            "status": "error",
                            "errorType": "bad_data",
                            "error": f"parse error: {query}",
                        },
                    )
                else:
                    value = prom.series[query].pop(0)
                    code = 200
                    if value is None:
                        doc = {"status": "success", "data": {"resultType": "vector", "result": []}}
                    else:
                        doc = {
                            "status": "success",
                            "data": {
                                "resultType": "vector",
                                "result": [
                                    {"metric": {"job": "web"}, "value": [1700000000.0, str(value)]}
                                ],
                            },
                        }
                body = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = _Server(Handler)
        self.url = self.server.url


@pytest.fixture
def prometheus() -> Iterator[FakePrometheus]:
    prom = FakePrometheus()
    yield prom
    prom.server.stop()


# --- smoke -------------------------------------------------------------------------------


def test_judge_response() -> None:
    check = SmokeCheck(url="http://x", expect_status=200, expect_body='"ok"')
    assert judge_response(check, 200, '{"status": "ok"}') is None
    assert "status 500" in (judge_response(check, 500, "") or "")
    assert "does not contain" in (judge_response(check, 200, "nope") or "")


def test_smoke_waits_for_warmup() -> None:
    app = App(warmup=2)
    try:
        with httpx.Client() as client:
            result = run_smoke(
                SmokeCheck(url=f"{app.url}/healthz", expect_body='"version": "2"', attempts=5),
                client,
                interval_seconds=0.01,
            )
        assert result.ok and result.attempts == 3
    finally:
        app.server.stop()


def test_smoke_fails_after_attempts() -> None:
    app = App()
    try:
        with httpx.Client() as client, pytest.raises(PolicyError, match="status 500, expected 200"):
            run_smoke(
                SmokeCheck(url=f"{app.url}/broken", attempts=3), client, interval_seconds=0.01
            )
        assert app.hits == 3
    finally:
        app.server.stop()


def test_smoke_connection_refused_is_a_failed_attempt() -> None:
    with httpx.Client() as client, pytest.raises(PolicyError, match="ConnectError"):
        run_smoke(SmokeCheck(url="http://127.0.0.1:1/", attempts=2), client, interval_seconds=0.01)


# --- metric gates --------------------------------------------------------------------------


def _gate(url: str, **kw: Any) -> MetricGate:
    return MetricGate(
        prometheus_url=url,
        query="error_rate",
        **{"max_value": 0.05, "interval_seconds": 0.01, "count": 3, **kw},
    )


def test_pure_analysis_rules() -> None:
    gate = MetricGate(prometheus_url="http://p", query="q", max_value=1, count=3, failure_limit=1)
    assert (
        judge_value(2, gate).phase == "Failed" and judge_value(float("nan"), gate).phase == "Failed"
    )
    ok, bad, err = (
        Measurement(phase="Successful"),
        Measurement(phase="Failed"),
        Measurement(phase="Error"),
    )
    assert analysis_phase([ok, bad], gate) is None
    assert analysis_phase([ok, bad, ok], gate) == "Successful"
    assert analysis_phase([bad, bad], gate) == "Failed"
    assert analysis_phase([err] * 5, gate) == "Error"
    assert (
        parse_query_result(
            {"status": "success", "data": {"resultType": "scalar", "result": [1, "0.5"]}}
        )
        == 0.5
    )
    with pytest.raises(ValueError, match="no samples"):
        parse_query_result({"status": "success", "data": {"resultType": "vector", "result": []}})


def test_gate_passes_within_failure_limit(prometheus: FakePrometheus) -> None:
    prometheus.series["error_rate"] = [0.01, 0.2, 0.02, 0.03]
    with httpx.Client() as client:
        result = run_analysis(_gate(prometheus.url, failure_limit=1), client)
    assert result.phase == "Successful" and [m.phase for m in result.measurements] == [
        "Successful",
        "Failed",
        "Successful",
    ]


def test_gate_fails_as_soon_as_the_limit_is_exceeded(prometheus: FakePrometheus) -> None:
    prometheus.series["error_rate"] = [0.3, 0.01, 0.01]
    with httpx.Client() as client:
        result = run_analysis(_gate(prometheus.url), client)
    assert result.phase == "Failed" and len(prometheus.queries) == 1
    assert "0.3 > 0.05" in result.message


def test_gate_errors_on_missing_data(prometheus: FakePrometheus) -> None:
    prometheus.series["error_rate"] = [None] * 10
    with httpx.Client() as client:
        result = run_analysis(_gate(prometheus.url), client, error_limit=2)
    assert result.phase == "Error" and "no samples" in result.message
