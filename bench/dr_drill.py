"""Benchmark: backup and restore-drill times at 500, 1,000 and 2,000 objects (10 namespaces).

Starts its own moto S3 server and simulated cluster (``shipyard sim-cluster``) as
separate processes on loopback, seeds 10 namespaces with ConfigMaps, Secrets,
Services and a few Deployments, then times :func:`tasks.backup_export.run_backup`
and :func:`tasks.restore_backup_drill.run_drill` (the cores the flows run, without the
Prefect API round trips); each size runs ``--repeat`` times and the fastest run
counts, since the machine is shared. Prints one line per size and the growth ratio
t(2000)/t(1000) (goal <= 2.2; goal for 2,000 objects: < 60 s on 2 cores).

    .venv/bin/python bench/dr_drill.py [--sizes 500,1000,2000] [--workers 8]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shipyard.core.kube import KubeClient, Retry, api_client
from shipyard.core.parallel import parallel_map
from shipyard.core.s3 import S3Store, s3_client
from tasks.backup_export import BackupConfig, run_backup
from tasks.drill_report import DrillConfig
from tasks.restore_backup_drill import run_drill

NAMESPACES = 10
DEPLOYMENTS_PER_NS = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception:  # noqa: BLE001 - still starting
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not start")


def start_services(workdir: Path) -> tuple[list[subprocess.Popen[bytes]], str, Path]:
    """moto S3 and the simulator, each in its own process."""
    venv_bin = Path(sys.executable).parent
    port = free_port()
    moto = subprocess.Popen(
        [str(venv_bin / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    kubeconfig = workdir / "kubeconfig"
    sim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "shipyard.cli.main",
            "sim-cluster",
            "--kubeconfig",
            str(kubeconfig),
            "--no-pull-images",
            "--startup-delay",
            "0.05",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=str(Path(__file__).resolve().parents[1]),
    )
    import httpx

    wait_for(lambda: httpx.get(endpoint, timeout=1).status_code < 500, 30, "moto")
    wait_for(kubeconfig.exists, 60, "simulator")
    return [moto, sim], endpoint, kubeconfig


def seed(kube: KubeClient, size: int, tag: str, workers: int) -> list[str]:
    """``size`` objects (namespaces included) across 10 namespaces."""
    namespaces = [f"bench-{tag}-{i}" for i in range(NAMESPACES)]
    parallel_map(
        lambda ns: kube.request("POST", "/api/v1/namespaces", {"metadata": {"name": ns}}),
        namespaces,
        workers,
    )
    per_ns = size // NAMESPACES - 1  # the Namespace object itself counts
    requests: list[tuple[str, dict[str, Any]]] = []
    for ns in namespaces:
        for d in range(DEPLOYMENTS_PER_NS):
            labels = {"app": f"web{d}"}
            requests.append(
                (
                    f"/apis/apps/v1/namespaces/{ns}/deployments",
                    {
                        "metadata": {"name": f"web{d}", "labels": labels},
                        "spec": {
                            "replicas": 1,
                            "selector": {"matchLabels": labels},
                            "template": {
                                "metadata": {"labels": labels},
                                "spec": {"containers": [{"name": "web", "image": "bench/web:1"}]},
                            },
                        },
                    },
                )
            )
            requests.append(
                (
                    f"/api/v1/namespaces/{ns}/services",
                    {
                        "metadata": {"name": f"web{d}"},
                        "spec": {"selector": labels, "ports": [{"port": 80}]},
                    },
                )
            )
        rest = per_ns - 2 * DEPLOYMENTS_PER_NS
        for i in range(rest):
            if i % 4 == 3:
                requests.append(
                    (
                        f"/api/v1/namespaces/{ns}/secrets",
                        {"metadata": {"name": f"s{i}"}, "data": {"token": "c2VjcmV0"}},
                    )
                )
            else:
                requests.append(
                    (
                        f"/api/v1/namespaces/{ns}/configmaps",
                        {
                            "metadata": {"name": f"c{i}", "labels": {"n": str(i)}},
                            "data": {"key": "v" * 200, "index": str(i)},
                        },
                    )
                )
    parallel_map(lambda r: kube.request("POST", r[0], r[1]), requests, workers)
    return namespaces


def delete_namespaces(kube: KubeClient, namespaces: list[str]) -> None:
    for ns in namespaces:
        kube.request("DELETE", f"/api/v1/namespaces/{ns}")
    wait_for(
        lambda: all(kube.get(f"/api/v1/namespaces/{ns}") is None for ns in namespaces),
        120,
        "namespace deletion",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="500,1000,2000")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument(
        "--repeat", type=int, default=2, help="Runs per size; the fastest counts (as timeit)."
    )
    parser.add_argument("--json", action="store_true", help="Also print results as JSON.")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench-secret")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    workdir = Path(tempfile.mkdtemp(prefix="dr-bench-"))
    procs, endpoint, kubeconfig = start_services(workdir)
    results: list[dict[str, Any]] = []
    try:
        kube = KubeClient(
            api_client(str(kubeconfig)), retry=Retry(attempts=4), request_timeout=60.0
        )
        client = s3_client(endpoint)
        client.create_bucket(Bucket="dr-bench")
        store = S3Store(client, "dr-bench")
        print(
            f"{'objects':>8} {'backed up':>10} {'backup s':>9} {'drill s':>8} {'rto s':>7} "
            f"{'parity':>7} passed"
        )
        for size in sizes:
            namespaces = seed(kube, size, str(size), args.workers)
            time.sleep(1.0)  # let controllers create pods/replicasets (skipped by backup)
            t_backup = t_drill = float("inf")
            phases: dict[str, float] = {}
            for _ in range(max(1, args.repeat)):
                t0 = time.perf_counter()
                backup = run_backup(
                    kube,
                    store,
                    BackupConfig(
                        namespaces=namespaces, cluster=f"bench{size}", workers=args.workers
                    ),
                    prefix="bench",
                )
                t_backup = min(t_backup, time.perf_counter() - t0)
                t0 = time.perf_counter()
                drill = run_drill(
                    kube,
                    store,
                    DrillConfig(cluster=f"bench{size}", workers=args.workers),
                    prefix="bench",
                )
                elapsed = time.perf_counter() - t0
                if elapsed < t_drill:
                    t_drill, phases = elapsed, drill.timings
            row = {
                "objects": size,
                "backed_up": backup.objects,
                "backup_seconds": round(t_backup, 2),
                "drill_seconds": round(t_drill, 2),
                "rto_seconds": round(drill.rto_seconds, 2),
                "parity": drill.parity,
                "passed": drill.passed,
            }
            results.append(row)
            print(
                f"{size:>8} {backup.objects:>10} {t_backup:>9.2f} {t_drill:>8.2f} "
                f"{drill.rto_seconds:>7.2f} {drill.parity:>7.4f} {drill.passed}",
                flush=True,
            )
            print("  drill phases (s):", ", ".join(f"{k} {v:.2f}" for k, v in phases.items()))
            if not drill.passed:
                print("  failures:", drill.failures[:3])
            delete_namespaces(kube, namespaces)
        by_size = {r["objects"]: r for r in results}
        if 1000 in by_size and 2000 in by_size:
            for key in ("backup_seconds", "drill_seconds"):
                ratio = by_size[2000][key] / max(by_size[1000][key], 1e-9)
                print(f"growth t(2000)/t(1000) {key.split('_')[0]}: {ratio:.2f} (goal <= 2.2)")
            total = by_size[2000]["backup_seconds"] + by_size[2000]["drill_seconds"]
            print(
                f"2,000 objects backup + drill: {total:.1f} s (goal < 60 s), {os.cpu_count()} cores"
            )
        if args.json:
            print(json.dumps(results))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
