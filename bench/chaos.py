"""Chaos: the load's burst, smaller, while the platform is hurt, one fault at a time.

One stack (``--database``), seeded as bench/load.py seeds it, with one Kubernetes
worker and the crashed-run automations (deployments/automations/crashed-runs.yaml).
Then, for each fault, a burst of ``--pushes`` real image pushes and the fault during
its deliveries:

* ``worker-kill``: a node dies: SIGKILL the worker and the processes of the running
  `deliver` runs; a new worker starts. Nothing reports the runs: their heartbeats stop,
  the zombie automation marks them Crashed after 90 s, the rerun automation schedules
  them again, and the reruns wait for the per-environment lock the dead processes held
  (its lease, 300 s, expires). With ``--fast``: one run is killed before it takes its
  lock while its worker lives (the worker reports the crash at once), then the worker.
* ``server-restart``: half the burst, stop the Prefect server once a delivery runs,
  push the rest while it is down (the bridge spools the events), start it again. On the
  default profile (memory lease storage and event ordering) the runs in flight lose
  their lock's lease and crash; use ``--messaging redis`` for the production profile.
  With ``--fast`` the server is stopped before the burst (every event waits in the
  spool).
* ``registry-down`` / ``git-down``: stop the registry / the git daemon for
  ``--down-seconds`` while deliveries resolve, scan and write.
* ``kube-throttle``: the simulator answers 429 (Retry-After 1) and 500 bursts to the
  app namespaces' API calls (``POST /_sim/faults``, docs/sim-cluster.md): 6 x 429 and
  3 x 500 per push, more than the Kubernetes client's 6 attempts per call, so Prefect
  retries the `sync-app` task. With ``--fast`` a burst the client absorbs (4 + 1).
* ``s3-outage``: a `backup` run on the worker while S3 hangs (SIGSTOP) for
  ``--down-seconds``.

It prints per fault: completed, failed, lost, duplicated, half-applied (git pins one
image, the cluster runs another) and whether every failure (Failed or Crashed state in a
run's history) carries its explanation. Goal: 0 lost, 0 duplicated, 0 half-applied.

Usage::

    python bench/chaos.py                                   # every fault, sqlite
    python bench/chaos.py --faults worker-kill,git-down --pushes 6 --database postgresql
    python bench/chaos.py --database postgresql --messaging redis    # production profile
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _load_common as lc

FAULTS = (
    "worker-kill",
    "server-restart",
    "registry-down",
    "git-down",
    "kube-throttle",
    "s3-outage",
)
Say = Callable[[str], None]


def _say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _row(
    platform: lc.Platform, fault: str, deliveries: list[lc.Delivery], started: float, **extra: Any
) -> dict[str, Any]:
    counts = lc.summary(deliveries)
    seen, explained = lc.failures_explained(deliveries)
    wrong = lc.half_applied(platform)
    return {
        "fault": fault,
        **counts,
        "half_applied": len(wrong),
        "half_applied_apps": wrong,
        "failures_seen": seen,
        "failures_explained": explained,
        "all_failures_explained": seen == explained,
        "seconds": round(time.time() - started, 1),
        **extra,
    }


def _burst(platform: lc.Platform, pushes: int, fault: str) -> tuple[float, list[lc.Push]]:
    since = time.time()
    return since, lc.push_burst(platform, pushes, f"{fault}-{int(since)}")


def _lock_free_running_run(timeout: float) -> Any | None:
    """A Running deliver run that has not taken its environment's lock yet."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    from shipyard.core.limits import limit_name

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            running = client.read_flow_runs(
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["deliver"])),
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING]))
                ),
            )
            for run in running:
                lock = limit_name("deliver", str(run.parameters.get("app")), "dev")
                try:
                    held = client.read_global_concurrency_limit_by_name(lock).active_slots
                except Exception:  # noqa: BLE001 - not created yet: not held either
                    held = 0
                if held == 0 and lc.flow_run_processes({str(run.id)}):
                    return run
            time.sleep(0.2)
    return None


def worker_kill(platform: lc.Platform, pushes: int, fast: bool, say: Say) -> dict[str, Any]:
    """Kill the worker (and runs) mid-burst; a new worker starts."""
    since, pushed = _burst(platform, pushes, "worker-kill")
    killed = 0
    if fast:
        victim = _lock_free_running_run(timeout=120)
        if victim is not None:
            import os
            import signal

            for pid in lc.flow_run_processes({str(victim.id)}):
                os.kill(pid, signal.SIGKILL)
            killed = 1
            say(f"killed the process of {victim.name} before it took its lock")
            time.sleep(3)  # the worker sees the pod fail and reports the crash
        lc.wait_running(1, timeout=60)
        for name in platform.workers:
            lc.process.stop(platform.layout, name)  # SIGTERM, then SIGKILL
        say("worker stopped mid-burst")
    else:
        lc.wait_running(1, timeout=120)
        killed = lc.kill_worker_and_runs(platform, say)
    time.sleep(2)
    lc.start_workers(platform, len(platform.workers) or 1)
    say("a new worker is up")
    timeout = 240 if fast else 600
    deliveries = lc.wait_settled(platform, pushed, since, timeout, quiet=45, say=say)
    return _row(platform, "worker-kill", deliveries, since, runs_killed=killed)


def server_restart(
    platform: lc.Platform, pushes: int, down: float, in_flight: bool, say: Say
) -> dict[str, Any]:
    """Stop the Prefect server and push while it is down (the bridge spools the events).

    ``in_flight``: half the burst first, the server stopped once a delivery runs (runs
    in flight lose the API for the outage); else the server is stopped before the burst
    and every push waits in the spool.
    """
    from shipyard.stack import process
    from shipyard.stack.runner import build_specs

    first = max(1, pushes // 2) if in_flight else 0
    since = time.time()
    pushed = lc.push_burst(platform, first, f"server-restart-{int(since)}") if first else []
    if in_flight:
        lc.wait_running(1, timeout=60)
    ports = platform.layout.load_ports()
    spec = next(s for s in build_specs(platform.layout, ports) if s.name == "prefect")
    process.stop(platform.layout, "prefect")
    say("prefect server stopped")
    later = lc.push_burst(platform, pushes - first, f"server-restart-down-{int(since)}")
    time.sleep(2)
    spooled = lc.bridge_spool_depth(platform)
    say(f"{len(later)} pushed while the server is down; bridge spool depth {spooled}")
    time.sleep(max(0.0, down - 2))
    process.spawn(platform.layout, spec)
    deadline = time.monotonic() + 180
    while not spec.health() and time.monotonic() < deadline:
        time.sleep(0.5)
    say("prefect server is back")
    deliveries = lc.wait_settled(platform, pushed + later, since, 600, quiet=45, say=say)
    return _row(
        platform,
        "server-restart",
        deliveries,
        since,
        spooled_while_down=spooled or 0,
        runs_in_flight=in_flight,
    )


def service_down(
    platform: lc.Platform, pushes: int, service: str, down: float, say: Say
) -> dict[str, Any]:
    """Stop ``service`` (registry | git) for ``down`` seconds right after the burst."""
    fault = f"{service}-down"
    since, pushed = _burst(platform, pushes, fault)
    lc.wait_running(1, timeout=60)
    lc.restart_service(platform, service, down, say)
    deliveries = lc.wait_settled(platform, pushed, since, 600, quiet=45, say=say)
    return _row(platform, fault, deliveries, since, down_seconds=down)


def kube_throttle(platform: lc.Platform, pushes: int, heavy: bool, say: Say) -> dict[str, Any]:
    """429 and 500 bursts on the app namespaces' API calls during the deliveries.

    The light burst (4 x 429 with Retry-After 1, then one 500) fits in the Kubernetes
    client's own budget of 6 attempts per call even when every fault hits one call; the
    heavy one (6 x 429 and 3 x 500 per push) outlasts it, so the `sync-app` task fails
    an attempt and Prefect retries the task.
    """
    ns = lc.namespace(platform.environments[0])
    rules: list[dict[str, Any]] = (
        [
            {"kind": "429", "namespace": ns, "count": 6 * pushes, "retry_after": 1},
            {"kind": "500", "namespace": ns, "count": 3 * pushes},
        ]
        if heavy
        else [
            {"kind": "429", "namespace": ns, "count": 4, "retry_after": 1},
            {"kind": "500", "namespace": ns, "count": 1},
        ]
    )
    lc.sim_faults(platform, rules)
    before = lc.sim_faults_injected(platform)
    since, pushed = _burst(platform, pushes, "kube-throttle")
    deliveries = lc.wait_settled(platform, pushed, since, 600, quiet=45, say=say)
    injected = lc.sim_faults_injected(platform) - before
    lc.sim_faults(platform, [])
    say(f"the simulator injected {injected} faults")
    return _row(platform, "kube-throttle", deliveries, since, faults_injected=injected, heavy=heavy)


def s3_outage(platform: lc.Platform, down: float, say: Say) -> dict[str, Any]:
    """A `backup` run on the worker while S3 hangs for ``down`` seconds."""
    import threading

    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    since = time.time()
    ns = lc.namespace(platform.environments[0])
    run: Any = run_deployment(
        "backup/backup",
        parameters={"namespaces": [ns], "keep_last": 100},
        timeout=0,
    )
    # Freeze S3 once the run is up, so the outage hits it mid-backup.
    with get_client(sync_client=True) as client:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            state = client.read_flow_run(run.id).state
            if state is not None and (state.is_running() or state.is_final()):
                break
            time.sleep(0.3)
    done = threading.Event()

    def outage() -> None:
        with lc.frozen(platform, "s3"):
            say(f"S3 frozen for {down:.0f}s")
            done.wait(down)
        say("S3 answers again")

    thread = threading.Thread(target=outage)
    thread.start()
    thread.join()
    with get_client(sync_client=True) as client:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            final = client.read_flow_run(run.id)
            if final.state is not None and final.state.is_final():
                break
            time.sleep(1)
        states = client.read_flow_run_states(run.id)
    manifests, partial = _backups(platform)
    failures = [s for s in states if s.type.value in ("FAILED", "CRASHED")]
    completed = bool(final.state and final.state.is_completed())
    return {
        "fault": "s3-outage",
        "pushes": 0,
        "completed": int(completed),
        "failed": int(not completed and bool(final.state and final.state.is_final())),
        "lost": int(not (final.state and final.state.is_final())),
        "duplicated": int(manifests > 1),
        "half_applied": partial,
        "failures_seen": len(failures),
        "failures_explained": sum(bool((s.message or "").strip()) for s in failures),
        "all_failures_explained": all((s.message or "").strip() for s in failures),
        "runs": 1,
        "backup_manifests": manifests,
        "seconds": round(time.time() - since, 1),
        "state": final.state.name if final.state else None,
    }


def _backups(platform: lc.Platform) -> tuple[int, int]:
    """(backups with a manifest, backups with objects but no manifest) in the bucket."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=platform.env["SHIPYARD_S3_ENDPOINT"])
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket="shipyard-backups"):
        keys += [o["Key"] for o in page.get("Contents", [])]
    backups: dict[str, set[str]] = {}
    for key in keys:
        parts = key.split("/")
        if len(parts) >= 4:
            backups.setdefault("/".join(parts[:3]), set()).add(parts[-1])
    with_manifest = sum(any(n.startswith("manifest") for n in v) for v in backups.values())
    return with_manifest, len(backups) - with_manifest


def run_faults(
    platform: lc.Platform,
    faults: list[str],
    pushes: int,
    down: float,
    fast: bool = False,
    say: Say = _say,
) -> list[dict[str, Any]]:
    """Each fault in turn on ``platform`` (seeded, deployed, one worker running)."""
    rows: list[dict[str, Any]] = []
    for fault in faults:
        say(f"--- {fault}")
        if fault == "worker-kill":
            rows.append(worker_kill(platform, pushes, fast, say))
        elif fault == "server-restart":
            rows.append(server_restart(platform, pushes, min(down, 20), not fast, say))
        elif fault == "registry-down":
            rows.append(service_down(platform, pushes, "registry", down, say))
        elif fault == "git-down":
            rows.append(service_down(platform, pushes, "git", down, say))
        elif fault == "kube-throttle":
            rows.append(kube_throttle(platform, pushes, not fast, say))
        elif fault == "s3-outage":
            rows.append(s3_outage(platform, down, say))
        say(json.dumps({k: v for k, v in rows[-1].items() if k != "half_applied_apps"}))
    return rows


COLUMNS = (
    "completed",
    "failed",
    "lost",
    "duplicated",
    "half_applied",
    "runs",
    "failures_explained",
    "seconds",
)


def table(rows: list[dict[str, Any]]) -> str:
    """One line per fault."""
    widths = [max(10, len(c) + 2) for c in COLUMNS]
    head = "fault".ljust(16) + "".join(
        c.replace("_", "-").rjust(w) for c, w in zip(COLUMNS, widths, strict=True)
    )
    lines = [head]
    for row in rows:
        cells = []
        for c, w in zip(COLUMNS, widths, strict=True):
            value = row.get(c)
            if c == "failures_explained":
                value = f"{value}/{row.get('failures_seen')}"
            cells.append(str(value).rjust(w))
        lines.append(f"{row['fault']:<16}" + "".join(cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Start a stack, seed it, run the chosen faults, print the table and JSON."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=8, help="Apps in the catalog.")
    parser.add_argument("--pushes", type=int, default=4, help="Pushes per fault.")
    parser.add_argument("--faults", default=",".join(FAULTS), help="Comma-separated faults.")
    parser.add_argument("--down-seconds", type=float, default=30.0, help="Outage length.")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--messaging", choices=["memory", "redis"], default="memory")
    parser.add_argument(
        "--fast",
        action="store_true",
        help="The CI test's variants: kill one run before its lock, restart the server "
        "before the burst.",
    )
    args = parser.parse_args(argv)
    faults = [f.strip() for f in args.faults.split(",") if f.strip()]
    unknown = set(faults) - set(FAULTS)
    if unknown:
        parser.error(f"unknown faults: {', '.join(sorted(unknown))}; known: {', '.join(FAULTS)}")
    started = time.monotonic()
    with lc.temp_root("shipyard-chaos-") as tmp:
        platform = lc.start_stack(Path(tmp) / "stack", args.database, _say, args.messaging)
        try:
            with temporary_settings(updates={PREFECT_API_URL: platform.api_url}):
                lc.seed_load(platform, args.apps, 1, _say)
                lc.deploy(platform)
                lc.start_workers(platform, 1)
                rows = run_faults(platform, faults, args.pushes, args.down_seconds, args.fast)
        finally:
            lc.stop_stack(platform)
    print(table(rows))
    print(
        json.dumps(
            {
                "database": args.database,
                "messaging": args.messaging,
                "apps": args.apps,
                "pushes_per_fault": args.pushes,
                "down_seconds": args.down_seconds,
                "total_seconds": round(time.monotonic() - started, 1),
                "faults": rows,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
