"""The ledger and the exporter against the stack's real Prefect server.

Events go in as Shipyard emits them (the events API the bridge posts to, and
``flows.common``'s helpers through Prefect's own events client); ``shipyard deliveries
export`` runs as a subprocess, and the exporter serves real HTTP whose ``/metrics`` is
parsed with prometheus_client's parser. Each test uses app names of its own, so other
tests' events in the same server do not disturb it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shipyard.core.errors import PolicyError
from shipyard.core.ledger import parse_records
from shipyard.exporter.prefect_api import PrefectReader
from shipyard.exporter.server import Exporter

ROOT = Path(__file__).resolve().parents[2]


def _event(name: str, at: datetime, app: str, env: str, **payload: Any) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "occurred": at.isoformat(),
        "event": name,
        "resource": {
            "prefect.resource.id": f"shipyard.delivery.{app}.{env}",
            "prefect.resource.name": f"{app}/{env}",
        },
        "related": [],
        "payload": {"app": app, "environment": env, **payload},
    }


def _post(api: str, events: list[dict[str, Any]]) -> None:
    response = httpx.post(f"{api}/events", json=events, timeout=10)
    assert response.status_code == 204, response.text


def _wait_stored(api: str, app: str, count: int, since: datetime) -> None:
    """The server stores accepted events a few seconds later: wait until they read back."""
    deadline = time.monotonic() + 60
    seen = 0
    while time.monotonic() < deadline:
        with PrefectReader(api) as reader:
            seen = sum(
                1
                for e in reader.read_events(since, datetime.now(UTC) + timedelta(minutes=1))
                if e["payload"].get("app") == app
            )
        if seen >= count:
            return
        time.sleep(1)
    pytest.fail(f"only {seen}/{count} events of {app} stored after 60 s")


@pytest.fixture
def story(prefect_api: str) -> Iterator[tuple[str, datetime]]:
    """One app's history over the last three hours: delivered, failed with a failed
    rollback, restored by the next delivery, a blocked attempt, a push still waiting."""
    app = f"ledger-{uuid.uuid4().hex[:8]}"
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    digest = "sha256:" + "1" * 64
    events = [
        _event(
            "shipyard.delivery.started",
            t0,
            app,
            "dev",
            flow_run="run-1",
            digest=digest,
            trigger="registry-push:distribution:e1",
            change_time=(t0 - timedelta(minutes=30)).isoformat(),
        ),
        _event(
            "shipyard.delivery.completed",
            t0 + timedelta(minutes=10),
            app,
            "dev",
            cluster="eu-1",
            outcome="delivered",
            digest=digest,
            source_commit="5f3a2c1",
            flow_run="run-1",
            change_time=(t0 - timedelta(minutes=30)).isoformat(),
            deployed_at=(t0 + timedelta(minutes=9)).isoformat(),
        ),
        _event(
            "shipyard.delivery.failed",
            t0 + timedelta(minutes=60),
            app,
            "dev",
            cluster="eu-1",
            digest="sha256:" + "2" * 64,
            flow_run="run-2",
            cause="verify",
            reason="pods crash",
            rollback_error="previous version is not healthy",
            deployed_at=(t0 + timedelta(minutes=55)).isoformat(),
        ),
        _event(
            "shipyard.delivery.completed",
            t0 + timedelta(minutes=90),
            app,
            "dev",
            cluster="eu-1",
            outcome="delivered",
            digest="sha256:" + "3" * 64,
            flow_run="run-3",
            deployed_at=(t0 + timedelta(minutes=88)).isoformat(),
        ),
        _event(
            "shipyard.delivery.completed",
            t0 + timedelta(minutes=100),
            app,
            "prod",
            cluster="eu-1",
            outcome="delivered",
            digest=digest,
            flow_run="run-4",
        ),
        _event(
            "shipyard.delivery.blocked",
            t0 + timedelta(minutes=120),
            app,
            "dev",
            cause="scan",
            flow_run="run-5",
            reason="HIGH vulnerability",
        ),
        {
            "id": str(uuid.uuid4()),
            "occurred": (t0 + timedelta(minutes=150)).isoformat(),
            "event": "registry.image.pushed",
            "resource": {"prefect.resource.id": f"oci.image.reg/shop/{app}"},
            "related": [],
            "payload": {
                "app": app,
                "digest": "sha256:" + "4" * 64,
                "change_time": (t0 + timedelta(minutes=149)).isoformat(),
            },
        },
    ]
    _post(prefect_api, events)
    _wait_stored(prefect_api, app, len(events), t0 - timedelta(minutes=1))
    yield app, t0


def _export(api: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``shipyard deliveries export ARGS`` in a process of its own, against ``api``."""
    return subprocess.run(
        [sys.executable, "-m", "shipyard.cli.main", "deliveries", "export", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PREFECT_API_URL": api},
        cwd=ROOT,
        timeout=120,
    )


def test_deliveries_export_writes_the_ledger(
    prefect_api: str, story: tuple[str, datetime], tmp_path: Path
) -> None:
    app, t0 = story
    out = tmp_path / "ledger.jsonl"
    since = (t0 - timedelta(hours=1)).isoformat()
    done = _export(prefect_api, "--app", app, "--since", since, "--output", str(out))
    assert done.returncode == 0, done.stderr
    records = list(parse_records(out.read_text().splitlines(), str(out)))
    assert [(r.environment, r.outcome, r.flow_run) for r in records] == [
        ("dev", "succeeded", "run-1"),
        ("dev", "failed", "run-2"),
        ("dev", "succeeded", "run-3"),
        ("prod", "succeeded", "run-4"),
    ]
    first, failed, restoring, promoted = records
    assert first.deployed_at == t0 + timedelta(minutes=9)
    assert first.change_time == t0 - timedelta(minutes=30)
    assert (failed.cause, failed.cluster) == ("verify", "eu-1")
    assert failed.restored_at == restoring.deployed_at == t0 + timedelta(minutes=88)
    assert promoted.change_time == first.change_time  # same digest: same change
    # the window is [since, until) on deployed_at; --environment filters
    only = _export(
        prefect_api,
        *("--app", app, "--environment", "dev"),
        *("--since", (t0 + timedelta(minutes=9)).isoformat()),
        *("--until", (t0 + timedelta(minutes=88)).isoformat()),
    )
    assert only.returncode == 0, only.stderr
    assert [json.loads(line)["flow_run"] for line in only.stdout.splitlines()] == [
        "run-1",
        "run-2",
    ]


def _metrics(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_exporter_serves_metrics_and_survives_the_api_going_down(
    prefect_api: str, story: tuple[str, datetime]
) -> None:
    app, t0 = story
    reader = PrefectReader(prefect_api)
    exporter = Exporter(reader, host="127.0.0.1", port=0, interval=3600)
    exporter.start()
    try:
        exporter.refresh_once()
        got = _metrics(exporter.port)
        dev = (("app", app), ("cluster", "eu-1"), ("environment", "dev"))
        assert got[("shipyard_deliveries_total", (*dev, ("outcome", "succeeded")))] == 2
        assert got[("shipyard_deliveries_total", (*dev, ("outcome", "failed")))] == 1
        assert got[("shipyard_rollbacks_total", (*dev, ("outcome", "failed")))] == 1
        blocked = (("app", app), ("cause", "scan"), ("environment", "dev"))
        assert got[("shipyard_delivery_attempts_blocked_total", blocked)] == 1
        lead = (("app", app), ("environment", "dev"))
        assert got[("shipyard_lead_time_seconds_count", lead)] == 1  # run-3 has no change time
        assert got[("shipyard_lead_time_seconds_sum", lead)] == 39 * 60
        # the push after the blocked attempt waits, in the environment pushes go to
        pending = got[("shipyard_change_pending_since_timestamp_seconds", lead)]
        assert pending == (t0 + timedelta(minutes=149)).timestamp()
        assert got[("shipyard_dora_change_failure_rate", lead)] == pytest.approx(1 / 3)
        assert got[("shipyard_exporter_up", ())] == 1
        text = httpx.get(f"http://127.0.0.1:{exporter.port}/metrics", timeout=10).text
        assert "# TYPE shipyard_work_pool_workers_online gauge" in text
        health = httpx.get(f"http://127.0.0.1:{exporter.port}/healthz", timeout=10).json()
        assert health["prefect_up"] is True
        # the API goes away: last values stay, up is 0
        reader.api_url = "http://127.0.0.1:9/api"
        exporter.refresh_once()
        down = _metrics(exporter.port)
        assert down[("shipyard_exporter_up", ())] == 0
        assert down[("shipyard_deliveries_total", (*dev, ("outcome", "succeeded")))] == 2
        last = ("shipyard_exporter_last_refresh_timestamp_seconds", ())
        assert down[last] == got[last]
        assert httpx.get(f"http://127.0.0.1:{exporter.port}/healthz").json()["prefect_up"] is False
    finally:
        exporter.stop()
        reader.close()


def test_flow_helpers_emit_started_and_blocked(prefect_api: str) -> None:
    """``flows.common``'s helpers through Prefect's own events client: a failure before
    the environment changed is a blocked attempt with its cause; the error is kept."""
    from flows.common import Attempt, publish_started, report_blocked

    app = f"blocked-{uuid.uuid4().hex[:8]}"
    since = datetime.now(UTC) - timedelta(minutes=1)
    attempt = Attempt(app, "dev", "eu-1", digest="sha256:" + "5" * 64, trigger="test")
    publish_started(attempt)
    with pytest.raises(PolicyError), report_blocked(attempt):
        attempt.step = "build"
        raise PolicyError("2 HIGH vulnerabilities")
    _wait_stored(prefect_api, app, 2, since)
    with PrefectReader(prefect_api) as reader:
        mine = [
            e
            for e in reader.read_events(since, datetime.now(UTC) + timedelta(minutes=1))
            if e["payload"].get("app") == app
        ]
    started, blocked = sorted(mine, key=lambda e: e["occurred"])
    assert started["event"] == "shipyard.delivery.started"
    assert blocked["event"] == "shipyard.delivery.blocked"
    assert blocked["payload"]["cause"] == "scan"
    assert blocked["payload"]["reason"] == "2 HIGH vulnerabilities"
    assert {r["prefect.resource.id"] for r in blocked["related"]} == {"shipyard.cluster.eu-1"}


def test_reading_events_follows_every_page(prefect_api: str) -> None:
    """More events than one page (50): every one comes back once, oldest first."""
    app = f"pages-{uuid.uuid4().hex[:8]}"
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    events = [
        _event("shipyard.delivery.started", t0 + timedelta(seconds=i), app, "dev", flow_run=str(i))
        for i in range(130)
    ]
    _post(prefect_api, events)
    _wait_stored(prefect_api, app, len(events), t0 - timedelta(minutes=1))
    with PrefectReader(prefect_api) as reader:
        got = [
            e
            for e in reader.read_events(t0 - timedelta(minutes=1), datetime.now(UTC))
            if e["payload"].get("app") == app
        ]
    assert [e["payload"]["flow_run"] for e in got] == [str(i) for i in range(130)]
