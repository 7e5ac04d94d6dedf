"""The dora-report flow and `shipyard dora` against the session's real stack: a flow run
on the real Prefect server reads a ledger (a records file, or delivery events emitted to
the server), uploads its charts to S3 (moto) and publishes a table, a markdown report and
image artifacts whose links serve the PNGs."""

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

from flows.dora_report import dora_report
from shipyard.core.ledger import DeliveryRecord
from shipyard.core.ledger_events import EVENT_DELIVERED, EVENT_FAILED
from shipyard.core.s3 import s3_client
from tests.fixtures.services import Stack

pytestmark = pytest.mark.slow

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SHIPYARD = [sys.executable, "-m", "shipyard.cli.main"]


@pytest.fixture
def bucket(stack: Stack, prefect_api: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh bucket in the stack's S3, with the stack's (moto) credentials exported."""
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(key, stack.env[key])
    name = f"dora-{uuid.uuid4().hex[:12]}"
    s3_client(stack.s3_endpoint).create_bucket(Bucket=name)
    yield name


def _ledger(app: str, now: datetime) -> list[DeliveryRecord]:
    """Ten days of one app: 8 succeeded deliveries (2 h lead time), 2 failed ones (a
    verify failure restored after 30 min, a sync failure restored after 90 min)."""
    records: list[DeliveryRecord] = []
    for day in range(8):
        at = now - timedelta(days=day + 1)
        records.append(
            DeliveryRecord(
                app=app,
                environment="prod",
                outcome="succeeded",
                change_time=at - timedelta(hours=2),
                deployed_at=at,
            )
        )
    for hours, restore, cause in ((30, 30, "verify"), (80, 90, "sync")):
        at = now - timedelta(hours=hours)
        records.append(
            DeliveryRecord(
                app=app,
                environment="prod",
                outcome="failed",
                change_time=at - timedelta(hours=1),
                deployed_at=at,
                restored_at=at + timedelta(minutes=restore),
                cause=cause,
            )
        )
    return records


def _artifacts(api: str, flow_run_id: str) -> dict[str, dict[str, Any]]:
    response = httpx.post(
        f"{api}/artifacts/filter",
        json={"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}},
    )
    response.raise_for_status()
    return {a["key"]: a for a in response.json() if a.get("key")}


def test_flow_publishes_table_report_and_charts_in_s3(
    stack: Stack, prefect_api: str, bucket: str, tmp_path: Path
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    app = f"dora{uuid.uuid4().hex[:6]}"
    records_file = tmp_path / "ledger.jsonl"
    records_file.write_text("\n".join(r.to_json() for r in _ledger(app, now)) + "\n")

    state = dora_report(
        records_file=str(records_file),
        until=now,
        days=10,
        bucket=bucket,
        s3_endpoint=stack.s3_endpoint,
        return_state=True,
    )
    assert state.is_completed(), state.message
    report = state.result()
    f = report.figures
    assert (f.deployments, f.failures) == (10, 2)
    assert f.deployment_frequency_per_day == pytest.approx(0.8)
    assert f.lead_time_hours_median == pytest.approx(2.0)
    assert f.time_to_restore_minutes_mean == pytest.approx(60.0)
    assert [c.cause for c in report.causes] == ["sync", "verify"] or [
        c.cause for c in report.causes
    ] == ["verify", "sync"]

    # the PNGs are in the bucket, and each artifact's link serves one
    s3 = s3_client(stack.s3_endpoint)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}
    for name in ("deploy-frequency", "lead-time", "failure-causes"):
        matching = [k for k in keys if k.endswith(f"/{name}.png")]
        assert matching, (name, keys)
        body = s3.get_object(Bucket=bucket, Key=matching[0])
        assert body["ContentType"] == "image/png"
        assert body["Body"].read().startswith(PNG_MAGIC)
    assert any(k.endswith("/figures.json") for k in keys)

    run_id = str(state.state_details.flow_run_id)
    artifacts = _artifacts(prefect_api, run_id)
    assert {"dora-figures", "dora-report"} <= set(artifacts)
    images = {k: a for k, a in artifacts.items() if a["type"] == "image"}
    assert set(images) == {"dora-deploy-frequency", "dora-lead-time", "dora-failure-causes"}
    for artifact in images.values():
        served = httpx.get(str(artifact["data"]), timeout=10)
        assert served.status_code == 200
        assert served.content.startswith(PNG_MAGIC)
    table = artifacts["dora-figures"]["data"]
    rows = json.loads(table) if isinstance(table, str) else table
    assert rows[-1]["app"] == "all" and rows[-1]["deployments"] == 10
    assert "| change failure rate | 20.0 % | low |" in artifacts["dora-report"]["data"]


def test_flow_without_storage_publishes_no_images(prefect_api: str, tmp_path: Path) -> None:
    records_file = tmp_path / "empty.jsonl"
    records_file.write_text("")
    state = dora_report(records_file=str(records_file), return_state=True)
    assert state.is_completed(), state.message
    report = state.result()
    assert report.figures.deployments == 0 and report.charts == []
    assert report.figures.platform_score is None


def test_flow_with_a_malformed_ledger_fails_naming_the_line(
    prefect_api: str, tmp_path: Path
) -> None:
    records_file = tmp_path / "bad.jsonl"
    records_file.write_text('{"app": "a"}\n')
    state = dora_report(records_file=str(records_file), return_state=True)
    assert state.is_failed()
    assert "line 1" in str(state.message)


def _emit(app: str, now: datetime) -> None:
    """Delivery outcome events, as deliver flows emit them, straight to the server."""
    from prefect.events import emit_event
    from prefect.events.worker import EventsWorker

    def event(name: str, hours: float, payload: dict[str, Any]) -> None:
        at = now - timedelta(hours=hours)
        emit_event(
            event=name,
            resource={"prefect.resource.id": f"shipyard.delivery.{app}.prod"},
            occurred=at,
            payload={
                "app": app,
                "environment": "prod",
                "deployed_at": at.isoformat(),
                "change_time": (at - timedelta(hours=3)).isoformat(),
                "digest": f"sha256:{uuid.uuid4().hex}",
                **payload,
            },
        )

    event(EVENT_DELIVERED, 50, {"outcome": "delivered"})
    event(EVENT_FAILED, 40, {"cause": "verify"})  # rolled back at once: restored at 40 h
    event(EVENT_DELIVERED, 30, {"outcome": "delivered"})
    event(EVENT_DELIVERED, 20, {"outcome": "delivered"})
    EventsWorker.drain_all()


def test_cli_and_flow_read_the_ledger_from_prefect_events(
    stack: Stack, prefect_api: str, tmp_path: Path
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    app = f"dora{uuid.uuid4().hex[:6]}"
    _emit(app, now)
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    deadline = time.monotonic() + 30
    data: dict[str, Any] = {}
    while time.monotonic() < deadline:
        result = subprocess.run(
            [
                *SHIPYARD,
                "dora",
                "--app",
                app,
                "--since",
                (now - timedelta(days=3)).isoformat(),
                "--until",
                now.isoformat(),
                "--json",
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            check=False,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        data = json.loads(result.stdout)
        if data["deployments"] == 4:
            break
        time.sleep(1)
    assert data["deployments"] == 4 and data["failures"] == 1
    assert data["lead_time_hours_median"] == pytest.approx(3.0)
    assert data["change_failure_rate"] == pytest.approx(0.25)
    assert data["bands"]["lead_time"] == "elite"

    state = dora_report(app=app, until=now, days=3, return_state=True)
    assert state.is_completed(), state.message
    assert state.result().figures.deployments == 4

    # the demo's last word: the same ledger as a table, through `shipyard dora`
    from shipyard.demo.run import dora_table

    table = dora_table(stack.env, app, since=now - timedelta(days=3), timeout=10)
    assert "deployment frequency" in table and "25.0 %" in table, table
    assert "unavailable" not in table


def test_api_reader_follows_every_page(prefect_api: str) -> None:
    """More delivery events than one page (50) of the events API: all become records."""
    from prefect.events import emit_event
    from prefect.events.worker import EventsWorker

    from tasks.dora_report import EVENTS_PAGE, ledger_from_api

    now = datetime.now(UTC).replace(microsecond=0)
    app = f"dora{uuid.uuid4().hex[:6]}"
    count = EVENTS_PAGE + 15
    for i in range(count):
        at = now - timedelta(minutes=count - i)
        emit_event(
            event=EVENT_DELIVERED,
            resource={"prefect.resource.id": f"shipyard.delivery.{app}.dev"},
            occurred=at,
            payload={"app": app, "environment": "dev", "outcome": "delivered"},
        )
    EventsWorker.drain_all()
    since = now - timedelta(days=1)
    deadline = time.monotonic() + 30
    mine: list[DeliveryRecord] = []
    while time.monotonic() < deadline:
        mine = [r for r in ledger_from_api(prefect_api, since, now) if r.app == app]
        if len(mine) == count:
            break
        time.sleep(1)
    assert len(mine) == count
