"""`shipyard fleet rollout` on four simulated clusters (one simulator each) and a real git
repo: wave order, halt at the canary with rollback, later waves untouched, unreachable
clusters (fail and skip), resume, rollback of every wave, max_parallel, matchExpressions.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from shipyard.cli.main import main
from tests.tasks.fleet_env import BAD, GOOD, WAVES, Fleet4, all_images, start_fleet4

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet4]:
    handle = start_fleet4(tmp_path_factory.mktemp("fleet"))
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture(autouse=True)
def _no_prefect(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The CLI's direct path: no Prefect API, no local stack's env file."""
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("SHIPYARD_STATE_DIR", str(tmp_path / "no-stack"))


def rollout(
    capsys: pytest.CaptureFixture[str], fleet_file: Path, repo: Path, rev: str
) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "fleet",
                "rollout",
                "--fleet",
                str(fleet_file),
                "--repo-dir",
                str(repo),
                "--revision",
                rev,
                "--json",
            ]
        )
    out = capsys.readouterr().out
    return int(exc.value.code or 0), json.loads(out)


def statuses(report: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["status"] for w in report["waves"] for c in w["clusters"]}


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


def intervals(report: dict[str, Any], wave: str) -> list[tuple[datetime, datetime]]:
    clusters = next(w for w in report["waves"] if w["name"] == wave)["clusters"]
    return [(ts(c["started_at"]), ts(c["finished_at"])) for c in clusters]


def most_at_once(spans: list[tuple[datetime, datetime]]) -> int:
    return max(sum(1 for s, f in spans if s <= start < f) for start, _ in spans)


def test_waves_run_in_order_and_max_parallel_bounds_a_wave(
    fleet: Fleet4, capsys: pytest.CaptureFixture[str]
) -> None:
    ns = fleet.namespace()
    rev = fleet.repo.commit(all_images(1), "api: v1")
    waves = [
        {"name": "canary", "selector": {"matchLabels": {"tier": "canary"}}},
        {"name": "rest", "max_parallel": 2},
    ]
    code, report = rollout(capsys, fleet.fleet_file(ns, waves), fleet.repo.root, "main")
    assert code == 0, report
    assert report["passed"] is True and report["halted_at"] is None
    assert report["revision"] == rev
    assert [w["name"] for w in report["waves"]] == ["canary", "rest"]
    assert [c["name"] for c in report["waves"][1]["clusters"]] == ["eu-1", "eu-2", "us-1"]
    assert set(statuses(report).values()) == {"healthy"}
    canary_end = max(f for _, f in intervals(report, "canary"))
    rest = intervals(report, "rest")
    assert canary_end <= min(s for s, _ in rest)  # the canary wave finished first
    assert most_at_once(rest) == 2  # two at once, never three
    for name in fleet.sims:
        dep = fleet.deployment(name, ns)
        assert dep["metadata"]["annotations"]["app.shipyard.dev/revision"] == rev
        assert fleet.record(name, ns) == {
            **(fleet.record(name, ns) or {}),
            "revision": rev,
            "verified-revision": rev,
        }

    # the same revision again: every cluster is already verified there
    code, again = rollout(capsys, fleet.fleet_file(ns, waves), fleet.repo.root, rev)
    assert code == 0 and set(statuses(again).values()) == {"unchanged"}


def test_bad_revision_halts_at_the_canary_rolls_it_back_and_leaves_later_waves(
    fleet: Fleet4, capsys: pytest.CaptureFixture[str]
) -> None:
    ns = fleet.namespace()
    v1 = fleet.repo.commit(all_images(1), "api: v1")
    file = fleet.fleet_file(ns, WAVES)
    code, report = rollout(capsys, file, fleet.repo.root, v1)
    assert code == 0, report
    eu = intervals(report, "eu")
    assert most_at_once(eu) == 1  # max_parallel: 1
    before = {n: fleet.deployment(n, ns)["metadata"]["generation"] for n in fleet.sims}
    bad = fleet.repo.commit({n: BAD for n in fleet.sims}, "api: bad image")

    code, report = rollout(capsys, file, fleet.repo.root, bad)
    assert code == 1
    assert report["passed"] is False and report["halted_at"] == "canary"
    canary = report["waves"][0]["clusters"][0]
    assert canary["status"] == "failed"
    assert "ErrImagePull" in canary["reason"] or "ImagePullBackOff" in canary["reason"]
    assert f"rolled back to {v1[:12]}" in canary["reason"]
    dep = fleet.deployment("canary", ns)
    assert dep["metadata"]["annotations"]["app.shipyard.dev/revision"] == v1
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == GOOD.format(n=1)
    for wave in report["waves"][1:]:
        for c in wave["clusters"]:
            assert c["status"] == "skipped" and c["started_at"] is None
            assert "halted at wave canary" in c["reason"]
            assert fleet.deployment(c["name"], ns)["metadata"]["generation"] == before[c["name"]]
            assert (fleet.record(c["name"], ns) or {})["revision"] == v1

    # fixed: the next revision goes everywhere
    v3 = fleet.repo.commit(all_images(3), "api: v3")
    code, report = rollout(capsys, file, fleet.repo.root, v3)
    assert code == 0 and set(statuses(report).values()) == {"healthy"}


def test_unreachable_cluster_fails_its_wave_then_resumes_after_the_fix(
    fleet: Fleet4, capsys: pytest.CaptureFixture[str]
) -> None:
    ns = fleet.namespace()
    rev = fleet.repo.commit(all_images(4), "api: v4")
    fleet.break_cluster("us-1")
    try:
        file = fleet.fleet_file(ns, WAVES)
        code, report = rollout(capsys, file, fleet.repo.root, rev)
        assert code == 1 and report["halted_at"] == "rest"
        assert statuses(report) == {
            "canary": "healthy",
            "eu-1": "healthy",
            "eu-2": "healthy",
            "us-1": "unreachable",
        }
        assert "unreachable" in report["waves"][2]["clusters"][0]["reason"]
    finally:
        fleet.heal_cluster("us-1")
    code, report = rollout(capsys, file, fleet.repo.root, rev)  # resume
    assert code == 0, report
    assert statuses(report) == {
        "canary": "unchanged",
        "eu-1": "unchanged",
        "eu-2": "unchanged",
        "us-1": "healthy",
    }


def test_unreachable_cluster_is_skipped_when_its_wave_says_so(
    fleet: Fleet4, capsys: pytest.CaptureFixture[str]
) -> None:
    ns = fleet.namespace()
    rev = fleet.repo.commit(all_images(5), "api: v5")
    waves = [
        {"name": "eu", "selector": {"matchLabels": {"region": "eu"}}, "on_unreachable": "skip"},
        {"name": "rest"},
    ]
    fleet.break_cluster("eu-2")
    try:
        code, report = rollout(capsys, fleet.fleet_file(ns, waves), fleet.repo.root, rev)
    finally:
        fleet.heal_cluster("eu-2")
    assert code == 1  # not every cluster is at REV
    assert report["halted_at"] is None and report["passed"] is False
    assert statuses(report) == {
        "canary": "healthy",
        "eu-1": "healthy",
        "eu-2": "skipped",
        "us-1": "healthy",
    }
    assert "on_unreachable: skip" in report["waves"][0]["clusters"][2]["reason"]


def test_match_expressions_and_rollback_all(
    fleet: Fleet4, capsys: pytest.CaptureFixture[str]
) -> None:
    ns = fleet.namespace()
    v1 = fleet.repo.commit(all_images(6), "api: v6")
    waves = [
        {
            "name": "canary",
            "selector": {"matchExpressions": [{"key": "tier", "operator": "Exists"}]},
        },
        {
            "name": "eu",
            "selector": {
                "matchExpressions": [
                    {"key": "region", "operator": "In", "values": ["eu"]},
                    {"key": "tier", "operator": "DoesNotExist"},
                ]
            },
        },
        {
            "name": "us",
            "selector": {
                "matchExpressions": [{"key": "region", "operator": "NotIn", "values": ["eu"]}]
            },
        },
    ]
    file = fleet.fleet_file(ns, waves, rollback="all")
    code, report = rollout(capsys, file, fleet.repo.root, v1)
    assert code == 0, report
    assert [[c["name"] for c in w["clusters"]] for w in report["waves"]] == [
        ["canary"],
        ["eu-1", "eu-2"],
        ["us-1"],
    ]
    # bad only on eu-2: the eu wave halts; rollback: all also takes the canary back
    v2 = fleet.repo.commit({**all_images(7), "eu-2": BAD}, "api: v7, bad on eu-2")
    code, report = rollout(capsys, file, fleet.repo.root, v2)
    assert code == 1 and report["halted_at"] == "eu"
    assert statuses(report) == {
        "canary": "rolled-back",
        "eu-1": "rolled-back",
        "eu-2": "failed",
        "us-1": "skipped",
    }
    for name in ("canary", "eu-1", "eu-2"):
        dep = fleet.deployment(name, ns)
        assert dep["metadata"]["annotations"]["app.shipyard.dev/revision"] == v1
        assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == GOOD.format(n=6)


def test_a_wave_that_needs_approval_halts_without_a_prefect_api(
    fleet: Fleet4, capsys: pytest.CaptureFixture[str]
) -> None:
    ns = fleet.namespace()
    rev = fleet.repo.commit(all_images(8), "api: v8")
    waves = [
        {"name": "canary", "selector": {"matchLabels": {"tier": "canary"}}},
        {"name": "rest", "approve": True},
    ]
    code, report = rollout(capsys, fleet.fleet_file(ns, waves), fleet.repo.root, rev)
    assert code == 1 and report["halted_at"] == "rest"
    assert statuses(report) == {
        "canary": "healthy",
        "eu-1": "skipped",
        "eu-2": "skipped",
        "us-1": "skipped",
    }
    assert "needs approval" in report["waves"][1]["clusters"][0]["reason"]
    assert fleet.record("us-1", ns) is None  # nothing written to the wave
