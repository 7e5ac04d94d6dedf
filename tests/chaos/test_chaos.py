"""Chaos, CI-sized: a small burst of real pushes per fault on the session's real stack,
and every delivery still ends exactly once.

The faults (bench/chaos.py, ``--fast`` variant of the worker kill): a flow-run process
killed before it takes its lock (the worker reports the crash, the rerun automation
schedules the run again) and the worker killed mid-burst; the Prefect server restarted
with pushes arriving while it is down (the bridge spools them); the registry and the
git daemon down for 10 s; Kubernetes API 429/500 bursts from the simulator; S3 hanging
during a backup. Asserted for each: 0 lost, 0 duplicated, 0 half-applied (git and the
cluster agree), every delivery completed, every failure explained in its run.
"""

from __future__ import annotations

import time

import pytest

from bench import _load_common as lc
from bench import chaos
from shipyard.stack import process
from tests.fixtures.services import Stack

PUSHES = 2
DOWN_SECONDS = 10.0


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.usefixtures("prefect_api")
def test_every_delivery_ends_exactly_once_through_faults(stack: Stack) -> None:
    started = time.monotonic()
    platform = lc.Platform(stack.layout, stack.env)
    lc.seed_load(platform, apps=4, environments=1, say=print)
    lc.deploy(platform)
    lc.start_workers(platform, 1)
    print(f"platform ready after {time.monotonic() - started:.0f}s")

    try:
        rows = chaos.run_faults(
            platform, list(chaos.FAULTS), PUSHES, DOWN_SECONDS, fast=True, say=print
        )
    finally:
        # The session's later tests drive deliveries themselves: leave no worker or
        # bridge delivering their pushes in the background.
        for name in [*platform.workers, "bridge"]:
            process.stop(stack.layout, name)
    print(chaos.table(rows))
    print(f"chaos test took {time.monotonic() - started:.0f}s")

    assert [r["fault"] for r in rows] == list(chaos.FAULTS)
    for row in rows:
        where = f"{row['fault']}: {row}"
        assert row["lost"] == 0, where
        assert row["duplicated"] == 0, where
        assert row["half_applied"] == 0, where
        assert row["all_failures_explained"], where
        expected = 1 if row["fault"] == "s3-outage" else PUSHES
        assert row["completed"] == expected, where
    kill = next(r for r in rows if r["fault"] == "worker-kill")
    assert kill["runs_killed"] == 1 and kill["failures_seen"] >= 1, kill  # crashed, rerun
    throttle = next(r for r in rows if r["fault"] == "kube-throttle")
    assert throttle["faults_injected"] > 0, throttle
