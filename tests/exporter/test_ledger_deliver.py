"""The ledger from real `deliver` runs on the local stack: a delivered change, a change
rolled back by its failing smoke check, and an attempt blocked before it changed
anything, read back from the Prefect server's events as ``deliveries export`` does."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from flows.deliver import Provenance, deliver
from shipyard.core.errors import ConfigError
from shipyard.core.ledger import DeliveryRecord
from shipyard.core.ledger_events import BlockedAttempt, blocked_attempts, derive_records
from shipyard.demo.seed import DemoSeed, seed_demo
from shipyard.exporter.prefect_api import PrefectReader
from shipyard.exporter.snapshot import ExporterState, refresh
from tests.fixtures.services import Stack


@pytest.fixture(scope="module")
def demo(stack: Stack, prefect_api: str) -> DemoSeed:
    return seed_demo(stack.layout, stack.env)


def _ledger(api: str, since: datetime, flow_runs: set[str]) -> list[DeliveryRecord]:
    """The records of ``flow_runs`` once their events are stored (a few seconds)."""
    deadline = time.monotonic() + 60
    records: list[DeliveryRecord] = []
    while time.monotonic() < deadline:
        with PrefectReader(api) as reader:
            events = list(reader.read_events(since, datetime.now(UTC) + timedelta(minutes=1)))
        records = [r for r in derive_records(events) if r.flow_run in flow_runs]
        if len(records) == len(flow_runs):
            return records
        time.sleep(1)
    pytest.fail(f"ledger has {records} for runs {flow_runs}")


@pytest.mark.slow
def test_deliveries_make_the_ledger(stack: Stack, demo: DemoSeed, prefect_api: str) -> None:
    from shipyard.demo import content
    from shipyard.demo import run as demo_run
    from shipyard.demo.seed import _publish

    since = datetime.now(UTC) - timedelta(minutes=1)
    pushed_at = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)
    good = demo_run.push_change(stack.env, stack.layout, version="ledger-good")
    record = deliver(
        app="cart", tag=good.commit, trigger="ledger-test", change_time=pushed_at.isoformat()
    )
    assert isinstance(record, Provenance) and record.outcome == "delivered"

    gitops = stack.git_root / "gitops.git"
    catalog = content.catalog(stack.registry, stack.git_url)
    dev_verify = "          timeout_seconds: 120\n      - name: prod"
    smoke = "          smoke: [{url: 'http://127.0.0.1:9/health', attempts: 1}]\n"
    failing = catalog.replace(
        dev_verify, dev_verify.replace("      - name", smoke + "      - name")
    )
    assert failing != catalog
    _publish(gitops, {"shipyard-catalog.yaml": failing}, "dev: a smoke check that fails", False)
    try:
        bad = demo_run.push_change(stack.env, stack.layout, version="ledger-bad")
        state = deliver(app="cart", tag=bad.commit, trigger="ledger-bad", return_state=True)
    finally:
        _publish(gitops, {"shipyard-catalog.yaml": catalog}, "dev: catalog restored", False)
    assert state.is_failed() and str(state.message).startswith("rolled back: ")
    with pytest.raises(ConfigError):
        deliver(app="cart", tag="no-such-tag", trigger="ledger-blocked")

    failed_run = str(state.state_details.flow_run_id)
    succeeded, failed = _ledger(prefect_api, since, {str(record.flow_run), failed_run})
    assert (succeeded.app, succeeded.environment, succeeded.outcome) == ("cart", "dev", "succeeded")
    assert succeeded.digest == record.digest and succeeded.source_commit == good.commit
    assert succeeded.change_time == pushed_at
    assert succeeded.cluster is not None
    assert succeeded.deployed_at > succeeded.change_time
    assert (failed.outcome, failed.cause, failed.digest) == ("failed", "verify", bad.digest)
    assert failed.change_time is None  # nobody said when the bad change was made
    assert failed.cluster == succeeded.cluster
    assert failed.restored_at is not None and failed.restored_at >= failed.deployed_at
    assert failed.deployed_at > succeeded.deployed_at

    deadline = time.monotonic() + 60  # the blocked event is stored a few seconds later
    blocked: list[BlockedAttempt] = []
    while not blocked and time.monotonic() < deadline:
        with PrefectReader(prefect_api) as reader:
            events = list(reader.read_events(since, datetime.now(UTC) + timedelta(minutes=1)))
        # This attempt's: in a shared session the bridge and worker may run deliveries
        # of the same pushes beside ours (their outcomes are theirs).
        blocked = [
            b for b in blocked_attempts(events) if b.app == "cart" and "no-such-tag" in b.reason
        ]
        time.sleep(0 if blocked else 1)
    assert [(b.environment, b.cause) for b in blocked] == [("dev", "config")]
    assert "does not exist in the registry" in blocked[0].reason

    # the exporter sees the same runs: step durations from their task runs, totals from
    # the top-level deliver runs, the ledger's counters
    known = ExporterState()
    with PrefectReader(prefect_api) as reader:
        snap = refresh(known, reader, datetime.now(UTC), timedelta(hours=1))
    assert snap.up
    assert snap.steps["sync"].count >= 2 and snap.steps["verify"].count >= 2
    assert snap.steps["gitops"].count >= 2 and snap.steps["total"].count >= 3
    key = ("cart", "dev", str(succeeded.cluster))
    assert snap.deliveries[(*key, "succeeded")] >= 1 and snap.deliveries[(*key, "failed")] >= 1
    assert snap.rollbacks[(*key, "succeeded")] >= 1
    assert snap.blocked[("cart", "dev", "config")] >= 1

    # What `shipyard deliveries export` writes is what `shipyard dora` measures: the
    # figures of these two deliveries follow from what happened above.
    _dora_matches_what_happened(stack, since, succeeded, failed, pushed_at)


def _dora_matches_what_happened(
    stack: Stack,
    since: datetime,
    succeeded: DeliveryRecord,
    failed: DeliveryRecord,
    pushed_at: datetime,
) -> None:
    import json
    import os
    import subprocess
    import sys

    from shipyard.core.ledger import parse_records

    env = {**os.environ, **stack.env, "SHIPYARD_STATE_DIR": str(stack.layout.root)}
    until = (datetime.now(UTC) + timedelta(minutes=1)).replace(microsecond=0)
    start = since.replace(microsecond=0)
    cli = [sys.executable, "-m", "shipyard.cli.main"]
    export = subprocess.run(
        [*cli, "deliveries", "export", "--since", start.isoformat(), "--until",
         until.isoformat(), "--app", "cart", "--environment", "dev"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert export.returncode == 0, export.stderr
    ours = {str(succeeded.flow_run), str(failed.flow_run)}
    lines = [ln for ln in export.stdout.splitlines() if json.loads(ln)["flow_run"] in ours]
    assert sorted(r.outcome for r in parse_records(lines)) == ["failed", "succeeded"]
    records_file = stack.layout.root / "ledger-dora.jsonl"
    records_file.write_text("\n".join(lines) + "\n")
    dora = subprocess.run(
        [*cli, "dora", "--records", str(records_file), "--since", start.isoformat(),
         "--until", until.isoformat(), "--json"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert dora.returncode == 0, dora.stderr
    figures = json.loads(dora.stdout)

    window_days = (until - start).total_seconds() / 86400
    assert failed.restored_at is not None
    downtime_min = (failed.restored_at - failed.deployed_at).total_seconds() / 60
    lead_hours = (succeeded.deployed_at - pushed_at).total_seconds() / 3600
    assert figures["deployments"] == 2 and figures["failures"] == 1
    assert figures["change_failure_rate"] == pytest.approx(0.5)
    assert figures["window_days"] == pytest.approx(window_days)
    assert figures["deployment_frequency_per_day"] == pytest.approx(1 / window_days)
    assert figures["lead_time_hours_median"] == pytest.approx(lead_hours, rel=1e-6)
    assert figures["time_to_restore_minutes_mean"] == pytest.approx(downtime_min, rel=1e-6)
    availability = 100 * (1 - downtime_min / (window_days * 1440))
    assert figures["availability_percent"] == pytest.approx(availability, rel=1e-6)
    assert figures["bands"]["change_failure_rate"] == "low"  # 50 % > 15 %
