"""The fleet rollout's state machine: waves in order, halt on the first failure, roll back.

Pure orchestration over callables, so the same machine runs directly (the cores of
:mod:`tasks.fleet.cluster`) and inside a Prefect flow (tasks and one subflow per wave):

- ``roll(name) -> ClusterReport`` takes one cluster to REV;
- ``roll_back(report, why) -> ClusterReport`` puts one back;
- ``recheck(name) -> str | None`` says why a baked cluster regressed;
- ``publish(report)`` sees every change (the live wave table);
- ``gate(cluster)`` (optional; :func:`tasks.fleet.control.await_gate`) is asked before
  each wave (``None``) and each cluster: it blocks while the rollout is paused and says
  why a cluster is skipped (reported ``skipped``, not a halt).

Within a wave up to ``max_parallel`` clusters run at once; after the first failure no
further cluster of the wave starts, the ones running finish, and every cluster of the
wave that REV was written to goes back. Later waves are never touched (their clusters
are reported ``skipped``, with no timestamps). Each worker thread runs in a copy of the
caller's context, so a task called from it belongs to the caller's flow run.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydantic import BaseModel

from tasks.fleet.cluster import ClusterReport, now
from tasks.fleet.config import FleetPlan, PlannedWave

__all__ = ["FleetReport", "WaveReport", "new_report", "run_fleet", "run_wave"]

Roll = Callable[[str], ClusterReport]
RollBack = Callable[[ClusterReport, str], ClusterReport]
Publish = Callable[["FleetReport"], None]
Gate = Callable[[str | None], str | None]
OK = ("healthy", "unchanged")


class WaveReport(BaseModel):
    """One wave's clusters, in the order of the fleet file."""

    name: str
    clusters: list[ClusterReport]
    halted: bool = False


class FleetReport(BaseModel):
    """The whole rollout: the CLI's JSON (``cli_json``) and the exit code (``passed``)."""

    passed: bool = False
    revision: str
    halted_at: str | None = None
    waves: list[WaveReport]

    def cli_json(self) -> dict[str, Any]:
        """Exactly the keys of the contract."""
        return {
            "passed": self.passed,
            "revision": self.revision,
            "halted_at": self.halted_at,
            "waves": [
                {"name": w.name, "clusters": [c.cli_json() for c in w.clusters]} for w in self.waves
            ],
        }


def new_report(plan: FleetPlan) -> FleetReport:
    """Every cluster not started yet."""
    return FleetReport(
        revision=plan.sha,
        waves=[
            WaveReport(name=w.name, clusters=[ClusterReport(name=n) for n in w.clusters])
            for w in plan.waves
        ],
    )


def _noop(report: FleetReport) -> None:
    return None


def run_wave(
    plan: FleetPlan,
    index: int,
    report: FleetReport,
    roll: Roll,
    roll_back: RollBack,
    publish: Publish = _noop,
    gate: Gate | None = None,
) -> WaveReport:
    """Run wave ``index`` (see module docstring); its report, ``halted`` on a failure."""
    wave: PlannedWave = plan.waves[index]
    state = report.model_copy(deep=True)
    lock = threading.Lock()
    halted = threading.Event()
    culprit: list[str] = []

    def put(result: ClusterReport) -> None:
        with lock:
            clusters = state.waves[index].clusters
            clusters[[c.name for c in clusters].index(result.name)] = result
            publish(state.model_copy(deep=True))

    def one(name: str) -> ClusterReport:
        if halted.is_set():
            result = ClusterReport(name=name, status="skipped", reason="not started: wave halted")
            put(result)
            return result
        skipped = gate(name) if gate is not None else None
        if skipped is not None:
            result = ClusterReport(name=name, status="skipped", reason=skipped, finished_at=now())
            put(result)
            return result
        put(ClusterReport(name=name, started_at=None, reason="rolling out"))
        result = roll(name)
        if result.status == "unreachable" and wave.on_unreachable == "skip":
            result = result.model_copy(
                update={"status": "skipped", "reason": f"{result.reason} (on_unreachable: skip)"}
            )
        if result.status in ("failed", "unreachable"):
            with lock:
                culprit.append(name)
            halted.set()
        put(result)
        return result

    workers = min(wave.max_parallel or len(wave.clusters), len(wave.clusters))
    with ThreadPoolExecutor(max_workers=max(workers, 1), thread_name_prefix="fleet") as pool:
        futures = [pool.submit(contextvars.copy_context().run, one, n) for n in wave.clusters]
        results = [f.result() for f in futures]
    if not halted.is_set():
        return WaveReport(name=wave.name, clusters=results)
    why = f"wave {wave.name} halted: {culprit[0]} failed"
    back = [r for r in results if r.written or r.status == "unchanged"]
    with ThreadPoolExecutor(max_workers=max(workers, 1), thread_name_prefix="fleet") as pool:
        pending = [pool.submit(contextvars.copy_context().run, roll_back, r, why) for r in back]
        undone = [f.result() for f in pending]
    for result in undone:
        put(result)
    by_name = {r.name: r for r in results} | {r.name: r for r in undone}
    return WaveReport(name=wave.name, clusters=[by_name[n] for n in wave.clusters], halted=True)


def run_fleet(
    plan: FleetPlan,
    roll: Roll,
    roll_back: RollBack,
    recheck: Callable[[str], str | None],
    *,
    wave: Callable[[FleetPlan, int, FleetReport], WaveReport] | None = None,
    publish: Publish = _noop,
    sleep: Callable[[float], None] = time.sleep,
    approve: Callable[[PlannedWave], str | None] | None = None,
    gate: Gate | None = None,
) -> FleetReport:
    """Run every wave in order (see module docstring); the final report.

    ``wave`` runs one wave (default :func:`run_wave` with ``roll``/``roll_back``); the
    flow passes a subflow there. Before a wave with ``approve: true``, ``approve(wave)``
    asks for approval and returns why not (None: approved); without it such a wave is
    not approved. A wave not approved halts the rollout there, nothing written to it,
    and nothing rolled back (no cluster failed). ``gate(None)`` is asked before each
    wave (it waits while paused); the default ``wave`` passes ``gate`` to
    :func:`run_wave`, a custom one is expected to do the same.
    """
    report = new_report(plan)
    publish(report)
    run_one = wave or (lambda p, i, r: run_wave(p, i, r, roll, roll_back, publish, gate))
    ask = approve or _not_approved
    halted_at: int | None = None
    refused: str | None = None
    for index, planned in enumerate(plan.waves):
        if gate is not None:
            gate(None)
        if planned.approve:
            refused = ask(planned)
            if refused is not None:
                halted_at = index
                break
        done = run_one(plan, index, report)
        report.waves[index] = done
        if not done.halted and planned.bake_seconds > 0:
            publish(report)
            sleep(planned.bake_seconds)
            done = _after_bake(plan, index, done, recheck, roll_back)
            report.waves[index] = done
        publish(report)
        if done.halted:
            halted_at = index
            break
    if halted_at is not None:
        report.halted_at = plan.waves[halted_at].name
        why = f"rollout halted at wave {report.halted_at}"
        if refused is not None:
            why = f"{why}: {refused}"
            report.waves[halted_at].clusters = [
                ClusterReport(name=c.name, status="skipped", reason=f"not started: {refused}")
                for c in report.waves[halted_at].clusters
            ]
        elif plan.fleet.rollback == "all":
            for index in range(halted_at):
                clusters = report.waves[index].clusters
                report.waves[index].clusters = [
                    roll_back(c, why) if c.status in OK else c for c in clusters
                ]
                publish(report)
        for index in range(halted_at + 1, len(plan.waves)):
            report.waves[index].clusters = [
                ClusterReport(name=c.name, status="skipped", reason=f"not started: {why}")
                for c in report.waves[index].clusters
            ]
    report.passed = halted_at is None and all(
        c.status in OK for w in report.waves for c in w.clusters
    )
    publish(report)
    return report


def _not_approved(wave: PlannedWave) -> str:
    return f"wave {wave.name} needs approval (run it as a flow run: the run pauses for it)"


def _after_bake(
    plan: FleetPlan,
    index: int,
    done: WaveReport,
    recheck: Callable[[str], str | None],
    roll_back: RollBack,
) -> WaveReport:
    """Re-check a baked wave; a cluster that regressed halts it and rolls it back."""
    clusters = list(done.clusters)
    regressed = {}
    for c in clusters:
        if c.status in OK:
            why = recheck(c.name)
            if why:
                regressed[c.name] = why
    if not regressed:
        return done
    first = next(iter(regressed))
    why = f"wave {done.name} halted: {first} regressed during bake"
    out = []
    for c in clusters:
        if c.name in regressed:
            c = c.model_copy(
                update={"status": "failed", "reason": f"regressed during bake: {regressed[c.name]}"}
            )
        out.append(roll_back(c, why) if c.status in (*OK, "failed") else c)
    return WaveReport(name=done.name, clusters=out, halted=True)
