"""The fleet_rollout flow on a real Prefect server and four simulated clusters: the CLI
runs it as a flow run, one subflow per wave, one task run per cluster, the wave table
artifact, and a halted rollout ending Failed with the report still printed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shipyard.cli.main import main
from tests.tasks.fleet_env import BAD, WAVES, Fleet4, all_images, start_fleet4

pytestmark = [pytest.mark.usefixtures("prefect_api"), pytest.mark.slow]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet4]:
    handle = start_fleet4(tmp_path_factory.mktemp("fleet-flow"))
    try:
        yield handle
    finally:
        handle.stop()


def rollout(
    capsys: pytest.CaptureFixture[str], file: Path, repo: Path, rev: str
) -> tuple[int, Any]:
    capsys.readouterr()
    args = ["fleet", "rollout", "--fleet", str(file), "--repo-dir", str(repo)]
    with pytest.raises(SystemExit) as exc:
        main([*args, "--revision", rev, "--json"])
    return int(exc.value.code or 0), json.loads(capsys.readouterr().out)


def runs_of(api: str, fleet_file: Path) -> tuple[dict[str, Any], list[dict[str, Any]], list[str]]:
    """(the fleet-rollout run of ``fleet_file``, its wave subflow runs, its task run names)."""
    with httpx.Client(base_url=api, timeout=30) as client:
        runs = client.post(
            "/flow_runs/filter",
            json={"flows": {"name": {"any_": ["fleet-rollout"]}}, "limit": 200},
        ).json()
        [run] = [r for r in runs if r["parameters"].get("fleet_file") == str(fleet_file)]
        children = client.post(
            "/flow_runs/filter",
            json={"flow_runs": {"parent_flow_run_id": {"any_": [run["id"]]}}, "limit": 200},
        ).json()
        ids = [run["id"], *(c["id"] for c in children)]
        tasks = client.post(
            "/task_runs/filter",
            json={"task_runs": {"flow_run_id": {"any_": ids}}, "limit": 200},
        ).json()
    waves = sorted(
        (c for c in children if c["name"].startswith("wave-")), key=lambda c: c["start_time"]
    )
    return run, waves, sorted(t["name"] for t in tasks)


def test_flow_run_has_a_subflow_per_wave_a_task_per_cluster_and_a_live_table(
    fleet: Fleet4, capsys: pytest.CaptureFixture[str], prefect_api: str
) -> None:
    ns = fleet.namespace()
    rev = fleet.repo.commit(all_images(1), "api: v1")
    file = fleet.fleet_file(ns, WAVES)
    code, report = rollout(capsys, file, fleet.repo.root, rev)
    assert code == 0, report
    run, waves, tasks = runs_of(prefect_api, file)
    assert run["state_type"] == "COMPLETED"
    assert [w["name"] for w in waves] == ["wave-canary", "wave-eu", "wave-rest"]
    rolled = [t for t in tasks if t.startswith("roll-out-")]
    assert rolled == ["roll-out-canary", "roll-out-eu-1", "roll-out-eu-2", "roll-out-us-1"]
    with httpx.Client(base_url=prefect_api, timeout=30) as client:
        versions = client.post(
            "/artifacts/filter", json={"artifacts": {"key": {"any_": [f"fleet-{ns}"]}}}
        ).json()
    assert len(versions) > 4  # a new version at every change: updated live
    latest = max(versions, key=lambda a: a["created"])
    rows = json.loads(latest["data"]) if isinstance(latest["data"], str) else latest["data"]
    assert [(r["wave"], r["cluster"], r["status"]) for r in rows] == [
        ("canary", "canary", "healthy"),
        ("eu", "eu-1", "healthy"),
        ("eu", "eu-2", "healthy"),
        ("rest", "us-1", "healthy"),
    ]

    bad = fleet.repo.commit({n: BAD for n in fleet.sims}, "api: bad")
    file2 = fleet.fleet_file(ns, WAVES)
    code, report = rollout(capsys, file2, fleet.repo.root, bad)
    assert code == 1 and report["halted_at"] == "canary"
    run, waves, tasks = runs_of(prefect_api, file2)
    assert run["state_type"] == "FAILED"
    assert [w["name"] for w in waves] == ["wave-canary"]  # later waves never started
    assert "roll-back-canary" in tasks and not any("eu" in t or "us" in t for t in tasks)


def test_approval_between_waves_through_the_prefect_api(
    fleet: Fleet4, capsys: pytest.CaptureFixture[str], prefect_api: str
) -> None:
    ns = fleet.namespace()
    rev = fleet.repo.commit(all_images(2), "api: v2")
    waves = [
        {"name": "canary", "selector": {"matchLabels": {"tier": "canary"}}},
        {"name": "rest", "approve": True},
    ]
    file = fleet.fleet_file(ns, waves)
    args = ["fleet", "rollout", "--fleet", str(file), "--repo-dir", str(fleet.repo.root)]
    shipyard = str(Path(sys.executable).with_name("shipyard"))
    proc = subprocess.Popen(
        [shipyard, *args, "--revision", rev, "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PREFECT_API_URL": prefect_api},
    )
    try:
        deadline = time.monotonic() + 120
        paused, mine = None, []
        while time.monotonic() < deadline and paused is None and proc.poll() is None:
            runs = httpx.post(
                f"{prefect_api}/flow_runs/filter",
                json={"flows": {"name": {"any_": ["fleet-rollout"]}}, "limit": 200},
            ).json()
            mine = [r for r in runs if r["parameters"].get("fleet_file") == str(file)]
            paused = next((r for r in mine if r["state_type"] == "PAUSED"), None)
            time.sleep(0.5)
        assert paused is not None, [(r["state_type"], r["state_name"]) for r in mine]
        assert fleet.record("us-1", ns) is None  # the wave waits: nothing written yet
        assert (fleet.record("canary", ns) or {}).get("verified-revision") == rev
        answer = {"decision": "approve", "approver": "qa", "reason": "canary looks good"}
        resp = httpx.post(
            f"{prefect_api}/flow_runs/{paused['id']}/resume", json={"run_input": answer}
        )
        assert resp.status_code < 300 and resp.json()["status"] == "ACCEPT", resp.text
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out + err
    report = json.loads(out)
    assert {c["status"] for w in report["waves"] for c in w["clusters"]} == {"healthy"}
    canary_end = report["waves"][0]["clusters"][0]["finished_at"]
    assert all(c["started_at"] > canary_end for c in report["waves"][1]["clusters"])
