"""Pause, resume and skip (tasks.fleet.control) and the gate in the wave machine
(tasks.fleet.run): the control value as CLI and UI write it, a gate that waits while
paused, a skipped cluster reported ``skipped`` without halting its wave."""

from __future__ import annotations

import threading
import time

from shipyard.core.catalog import VerifySpec
from shipyard.core.fleet import Wave
from tasks.fleet.cluster import ClusterReport
from tasks.fleet.config import (
    Fleet,
    FleetCluster,
    FleetMeta,
    FleetPlan,
    PlannedWave,
    RolloutSpec,
)
from tasks.fleet.control import (
    FleetControl,
    await_gate,
    control_variable,
    parse_control,
    with_pause,
    with_skip,
)
from tasks.fleet.run import run_fleet


def test_control_value_as_the_cli_writes_it_round_trips() -> None:
    control = with_skip(with_pause(FleetControl(), True, "alice"), "us-1", "bob")
    assert parse_control(control.model_dump()) == control
    assert parse_control(control.model_dump_json()) == control
    assert control_variable("0b4e") == "shipyard-fleet-0b4e"


def test_control_value_typed_in_the_ui_is_read_leniently() -> None:
    assert parse_control({"paused": "true"}).paused
    assert parse_control({"skip": ["us-1"], "by": "carol"}).skip == {"us-1": "carol"}
    assert parse_control({"skip": ["us-1"]}).skip == {"us-1": "the UI"}
    assert parse_control("not json") == FleetControl()
    assert parse_control(None) == FleetControl()
    assert parse_control([1, 2]) == FleetControl()
    assert parse_control({"paused": {"x": 1}}) == FleetControl()


class Controls:
    """A control value that changes over time, as a person would edit it."""

    def __init__(self, *values: object) -> None:
        self.values = list(values)
        self.reads = 0

    def read(self) -> object:
        self.reads += 1
        return self.values[min(self.reads - 1, len(self.values) - 1)]


def test_gate_waits_while_paused_and_then_says_why_a_cluster_is_skipped() -> None:
    controls = Controls(
        {"paused": True, "by": "alice"},
        {"paused": True, "by": "alice"},
        {"paused": False, "by": "bob", "skip": {"us-1": "bob"}},
    )
    said: list[str] = []
    slept: list[float] = []
    why = await_gate(controls.read, "us-1", say=said.append, sleep=slept.append)
    assert why == "skipped by bob"
    assert len(slept) == 2 and controls.reads == 3
    assert said == [
        "rollout paused by alice: waiting before cluster us-1 until resumed",
        "rollout resumed by bob",
    ]
    assert await_gate(Controls({"skip": {"us-1": "bob"}}).read, "eu-1") is None
    assert await_gate(Controls({"skip": {"us-1": "bob"}}).read, None) is None


def test_a_pause_longer_than_the_limit_skips_the_cluster() -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    why = await_gate(
        Controls({"paused": True}).read,
        "eu-1",
        sleep=sleep,
        clock=lambda: now[0],
        max_pause_seconds=5,
    )
    assert why == "not started: paused longer than 5s"


def _plan() -> FleetPlan:
    clusters = [FleetCluster(name=n, kubeconfig="/dev/null") for n in ("canary", "eu-1", "us-1")]
    fleet = Fleet(
        apiVersion="shipyard.dev/v1",
        kind="Fleet",
        metadata=FleetMeta(name="t"),
        clusters=clusters,
        rollout=RolloutSpec(
            path="p",
            namespace="ns",
            verify=VerifySpec(workloads=["deployment/api"]),
            waves=[Wave(name="canary"), Wave(name="rest")],
        ),
    )
    return FleetPlan(
        fleet=fleet,
        repo_dir="/r",
        revision="abc",
        sha="abc",
        waves=[
            PlannedWave(name="canary", clusters=["canary"]),
            PlannedWave(name="rest", clusters=["eu-1", "us-1"]),
        ],
    )


def test_run_fleet_asks_the_gate_before_each_wave_and_cluster_and_skips_without_halting() -> None:
    asked: list[str | None] = []
    rolled: list[str] = []

    def gate(cluster: str | None) -> str | None:
        asked.append(cluster)
        return "skipped by qa" if cluster == "us-1" else None

    def roll(name: str) -> ClusterReport:
        rolled.append(name)
        return ClusterReport(name=name, status="healthy", reason="verified")

    report = run_fleet(
        _plan(), roll, lambda r, why: r, lambda name: None, gate=gate, sleep=lambda s: None
    )
    assert sorted(rolled) == ["canary", "eu-1"]
    assert asked[:2] == [None, "canary"] and asked[2] is None
    assert sorted(c for c in asked[3:] if c) == ["eu-1", "us-1"]
    us = report.waves[1].clusters[1]
    assert (us.status, us.reason) == ("skipped", "skipped by qa")
    assert us.finished_at is not None and report.halted_at is None
    assert not report.passed  # not every cluster runs REV


def test_a_paused_gate_holds_the_next_wave_until_resumed() -> None:
    paused = threading.Event()
    paused.set()
    rolled: list[tuple[str, float]] = []

    def gate(cluster: str | None) -> str | None:
        if cluster is None and rolled:  # before the second wave
            while paused.is_set():
                time.sleep(0.01)
        return None

    def roll(name: str) -> ClusterReport:
        rolled.append((name, time.monotonic()))
        return ClusterReport(name=name, status="healthy")

    done: list[object] = []
    worker = threading.Thread(
        target=lambda: done.append(
            run_fleet(_plan(), roll, lambda r, w: r, lambda n: None, gate=gate)
        )
    )
    worker.start()
    time.sleep(0.3)
    assert [n for n, _ in rolled] == ["canary"]  # the second wave waits
    resumed = time.monotonic()
    paused.clear()
    worker.join(10)
    assert done and sorted(n for n, _ in rolled[1:]) == ["eu-1", "us-1"]
    assert all(t >= resumed for _, t in rolled[1:])
