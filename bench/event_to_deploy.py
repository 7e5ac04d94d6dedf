"""Benchmarks of the event-driven path from a registry push to a deployment.

Two halves:

* ``bridge-throughput`` (implemented): webhooks per second the bridge sustains with
  authentication, dedupe and the durable spool (fsync, group commit) on, under a
  bounded loopback load. The bridge runs in its own process, the load generator
  (keep-alive HTTP/1.1 connections in threads) in this one, so on a 2-core machine
  each gets about one core. Goal: >= 500 events/s.
* ``push-to-run latency``: p50/p95 from a registry push to the ``deliver`` flow run
  being created by the automation, starting on the Kubernetes worker, and ending with a
  verified rollout, on a whole demo platform of its own.

Usage::

    python bench/event_to_deploy.py                       # throughput, bridge without Prefect
    python bench/event_to_deploy.py --prefect-api-url http://127.0.0.1:4200/api
    python bench/event_to_deploy.py --requests 3000 --seconds 5 --connections 8
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

SECRET = "bench-bridge-secret-0123456789"


# --------------------------------------------------------------------------------------
# Bridge throughput
# --------------------------------------------------------------------------------------


def _run_bridge(port: int, spool_dir: str, prefect_api_url: str | None) -> None:
    """Child process: one bridge, as `shipyard bridge serve` would run it."""
    from pydantic import SecretStr

    from shipyard.bridge.server import BridgeConfig, serve

    config = BridgeConfig(
        secret=SecretStr(SECRET), spool_dir=Path(spool_dir), prefect_api_url=prefect_api_url
    )
    serve(config, "127.0.0.1", port)


def notification(i: int, repository: str) -> bytes:
    """A realistic one-event distribution notification (a tagged manifest push)."""
    digest = "sha256:" + uuid.uuid5(uuid.NAMESPACE_OID, str(i)).hex * 2
    return json.dumps(
        {
            "events": [
                {
                    "id": f"bench-{i}",
                    "timestamp": "2026-11-27T23:30:02.123456789Z",
                    "action": "push",
                    "target": {
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "size": 528,
                        "digest": digest,
                        "length": 528,
                        "repository": repository,
                        "url": f"http://127.0.0.1:5000/v2/{repository}/manifests/{digest}",
                        "tag": f"1.0.{i}",
                    },
                    "request": {
                        "id": str(i),
                        "addr": "127.0.0.1:40112",
                        "host": "127.0.0.1:5000",
                        "method": "PUT",
                        "useragent": "bench",
                    },
                    "actor": {"name": "bench"},
                    "source": {"addr": "registry:5000", "instanceID": "bench"},
                }
            ]
        }
    ).encode()


@dataclass
class LoadResult:
    """What the load generator saw."""

    sent: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0


def generate_load(
    port: int, requests: int, seconds: float, connections: int, replay_every: int
) -> LoadResult:
    """POST up to ``requests`` notifications within ``seconds`` over keep-alive connections.

    Every ``replay_every``-th request repeats an earlier delivery, so dedupe is on the
    hot path too.
    """
    bodies = [notification(i, "bench/app") for i in range(requests)]
    for i in range(replay_every, requests, replay_every):
        bodies[i] = bodies[i - replay_every // 2]
    headers = {"Authorization": f"Bearer {SECRET}", "Content-Type": "application/json"}
    result = LoadResult()
    lock = threading.Lock()
    next_index = iter(range(requests))
    deadline = time.monotonic() + seconds

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        statuses: dict[int, int] = {}
        latencies: list[float] = []
        while time.monotonic() < deadline:
            with lock:
                i = next(next_index, None)
            if i is None:
                break
            t0 = time.perf_counter()
            conn.request("POST", "/hooks/distribution", body=bodies[i], headers=headers)
            response = conn.getresponse()
            response.read()
            latencies.append(time.perf_counter() - t0)
            statuses[response.status] = statuses.get(response.status, 0) + 1
        conn.close()
        with lock:
            for status, n in statuses.items():
                result.statuses[status] = result.statuses.get(status, 0) + n
            result.latencies += latencies

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result.seconds = time.perf_counter() - start
    result.sent = sum(result.statuses.values())
    return result


def _wait_up(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("bridge did not start")


def _metric(port: int, name: str) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/metrics")
    for line in conn.getresponse().read().decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def bridge_throughput(
    requests: int, seconds: float, connections: int, prefect_api_url: str | None
) -> dict[str, object]:
    """Run one bounded load against a fresh bridge process; return the figures."""
    from shipyard.stack.probes import free_port

    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bridge-bench-") as spool_dir:
        ctx = multiprocessing.get_context("spawn")
        child = ctx.Process(target=_run_bridge, args=(port, spool_dir, prefect_api_url))
        child.start()
        try:
            _wait_up(port)
            load = generate_load(port, requests, seconds, connections, replay_every=10)
            drained_s: float | None = None
            if prefect_api_url:
                t0 = time.monotonic()
                while _metric(port, "shipyard_bridge_spool_depth") > 0:
                    if time.monotonic() - t0 > 60:
                        break
                    time.sleep(0.1)
                drained_s = time.monotonic() - t0
            emitted = _metric(port, "shipyard_bridge_emitted_total")
        finally:
            child.terminate()
            child.join(10)
    lat = sorted(load.latencies)
    return {
        "requests": load.sent,
        "seconds": round(load.seconds, 3),
        "requests_per_s": round(load.sent / load.seconds, 1),
        "accepted_202": load.statuses.get(202, 0),
        "events_accepted_per_s": round(load.statuses.get(202, 0) / load.seconds, 1),
        "deduplicated_200": load.statuses.get(200, 0),
        "other_statuses": {s: n for s, n in load.statuses.items() if s not in (200, 202)},
        "latency_ms_p50": round(statistics.median(lat) * 1000, 2) if lat else None,
        "latency_ms_p95": round(lat[int(len(lat) * 0.95) - 1] * 1000, 2) if lat else None,
        "connections": connections,
        "emitted_to_prefect": emitted if prefect_api_url else "not measured (no Prefect)",
        "drain_seconds_after_load": None if drained_s is None else round(drained_s, 2),
        "goal_requests_per_s": 500,
    }


# --------------------------------------------------------------------------------------
# Push -> flow run latency, through the whole platform
# --------------------------------------------------------------------------------------


def push_to_run_latency(pushes: int) -> dict[str, object]:
    """p50/p95 from a registry push to the `deliver` run being created (the automation
    fired), starting (worker, Job, pod process up) and ending verified.

    Runs the demo platform on its own stack (free ports, temporary state dir): bridge,
    automation, Kubernetes worker, cluster simulator. Each push is a real image build and
    push of a new app commit; the clock starts when the registry accepted the manifest.
    Pushes are sequential, so runs never queue behind each other.
    """
    import os

    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from shipyard.demo import run as demo
    from shipyard.demo.seed import seed_demo
    from shipyard.stack import StackLayout, stack_down, stack_up
    from shipyard.stack.model import DEFAULT_PORTS
    from shipyard.stack.runner import read_env_file

    created: list[float] = []
    started: list[float] = []
    verified: list[float] = []
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-e2d-") as tmp:
        layout = StackLayout(Path(tmp) / "stack")
        stack_up(layout, ports=dict.fromkeys(DEFAULT_PORTS, 0))
        try:
            env = read_env_file(layout)
            os.environ.update(env)
            with temporary_settings(updates={PREFECT_API_URL: env["PREFECT_API_URL"]}):
                seed_demo(layout, env)
                demo.create_work_pool()
                demo.deploy_all(env)
                demo.start_service(layout, demo.bridge_spec(layout, env), lambda _m: None)
                demo.start_service(layout, demo.worker_spec(env), lambda _m: None)
                for i in range(pushes):
                    change = demo.push_change(env, layout, version=f"bench-{i}")
                    pushed_at = time.time()
                    run = demo.wait_for_delivery(change.commit, timeout=600)
                    with get_client(sync_client=True) as client:
                        run = client.read_flow_run(run.id)
                    if run.state is None or not run.state.is_completed():
                        raise RuntimeError(f"delivery {run.name} ended {run.state}")
                    created.append(run.created.timestamp() - pushed_at)
                    started.append(run.start_time.timestamp() - pushed_at)
                    verified.append(run.end_time.timestamp() - pushed_at)
                    print(
                        f"push {i + 1}/{pushes}: run created {created[-1]:.2f}s, "
                        f"started {started[-1]:.2f}s, verified {verified[-1]:.2f}s",
                        file=sys.stderr,
                    )
        finally:
            stack_down(layout)

    def pct(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))], 2)

    return {
        "pushes": pushes,
        "push_to_run_created_s": {"p50": pct(created, 0.5), "p95": pct(created, 0.95)},
        "push_to_run_started_s": {"p50": pct(started, 0.5), "p95": pct(started, 0.95)},
        "push_to_verified_s": {"p50": pct(verified, 0.5), "p95": pct(verified, 0.95)},
        "goal_p50_push_to_run_start_s": 2.0,
        "note": "started = the Kubernetes worker saw it, created the Job, and the pod's "
        "process began the flow; created = the automation fired",
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks and print one JSON document."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000, help="Upper bound on requests.")
    parser.add_argument("--seconds", type=float, default=6.0, help="Upper bound on duration.")
    parser.add_argument("--connections", type=int, default=8, help="Concurrent connections.")
    parser.add_argument("--prefect-api-url", default=None, help="Also forward to this API.")
    parser.add_argument(
        "--pushes", type=int, default=3, help="Pushes for the latency half (0 skips it)."
    )
    args = parser.parse_args(argv)
    report: dict[str, object] = {
        "bridge_throughput": bridge_throughput(
            args.requests, args.seconds, args.connections, args.prefect_api_url
        )
    }
    if args.pushes > 0:
        report["push_to_run_latency"] = push_to_run_latency(args.pushes)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
