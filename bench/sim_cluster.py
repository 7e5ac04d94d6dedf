"""Benchmark the Kubernetes cluster simulator (``shipyard sim-cluster``).

    .venv/bin/python bench/sim_cluster.py [--objects 5000] [--watchers 200] [--clients 4]

Runs the simulator as a subprocess (as the demo does) and prints: objects created per
second (one client, then several concurrent clients), watch fan-out (time for one
change to reach every one of N watchers), and the simulator's RSS at N objects.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import yaml


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _start(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    kubeconfig = tmp / "kubeconfig"
    shipyard = Path(sys.executable).with_name("shipyard")
    proc = subprocess.Popen(
        [str(shipyard), "sim-cluster", "--kubeconfig", str(kubeconfig), "--no-pull-images"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not kubeconfig.exists():
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise SystemExit("simulator did not start")
        time.sleep(0.05)
    doc = yaml.safe_load(kubeconfig.read_text())
    return proc, doc["clusters"][0]["cluster"]["server"]


def _cm(name: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"bench": "yes"}},
        "data": {"key": "x" * 64},
    }


def _create(url: str, ns: str, names: list[str]) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        for name in names:
            client.post(f"/api/v1/namespaces/{ns}/configmaps", json=_cm(name)).raise_for_status()


def _rate(url: str, ns: str, prefix: str, count: int, clients: int) -> float:
    names = [f"{prefix}-{i}" for i in range(count)]
    chunks = [names[i::clients] for i in range(clients)]
    threads = [threading.Thread(target=_create, args=(url, ns, c)) for c in chunks]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return count / (time.perf_counter() - start)


async def _fanout(url: str, ns: str, watchers: int, rounds: int) -> list[float]:
    """Seconds from issuing a create until all ``watchers`` streams have received it.

    Watchers are raw asyncio connections (no HTTP client library), so the figure is
    dominated by the simulator's fan-out, not by client-side parsing.
    """
    host, port = url.removeprefix("http://").split(":")
    rv = httpx.get(f"{url}/api/v1/namespaces/{ns}/configmaps", params={"limit": 1}).json()
    rv = rv["metadata"]["resourceVersion"]
    target: dict[str, Any] = {"needle": b"", "count": 0}
    done = asyncio.Event()
    request = (
        f"GET /api/v1/namespaces/{ns}/configmaps?watch=1&resourceVersion={rv}"
        f"&timeoutSeconds=300 HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\n\r\n"
    ).encode()
    connected = 0
    all_connected = asyncio.Event()

    async def watch() -> None:
        nonlocal connected
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(request)
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")
        connected += 1
        if connected == watchers:
            all_connected.set()
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                if target["needle"] and target["needle"] in data:
                    target["count"] += 1
                    if target["count"] == watchers:
                        done.set()
        finally:
            writer.close()

    tasks = [asyncio.create_task(watch()) for _ in range(watchers)]
    await asyncio.wait_for(all_connected.wait(), 60)
    await asyncio.sleep(0.5)
    results = []
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        for i in range(rounds):
            name = f"fanout-{i}"
            target.update(needle=f'"name":"{name}"'.encode(), count=0)
            done.clear()
            start = time.perf_counter()
            resp = await client.post(f"/api/v1/namespaces/{ns}/configmaps", json=_cm(name))
            resp.raise_for_status()
            await asyncio.wait_for(done.wait(), 60)
            results.append(time.perf_counter() - start)
            await asyncio.sleep(0.2)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--objects", type=int, default=5000)
    parser.add_argument("--watchers", type=int, default=200)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="simbench-") as tmp:
        proc, url = _start(Path(tmp))
        try:
            httpx.post(
                f"{url}/api/v1/namespaces", json={"metadata": {"name": "bench"}}
            ).raise_for_status()
            rss_start = _rss_mib(proc.pid)
            single = _rate(url, "bench", "one", 1000, 1)
            many = _rate(url, "bench", "many", args.objects - 1000, args.clients)
            total = int(httpx.get(f"{url}/_sim/stats").json()["objects"])
            rss_full = _rss_mib(proc.pid)
            fan = asyncio.run(_fanout(url, "bench", args.watchers, 5))
            listed = time.perf_counter()
            httpx.get(f"{url}/api/v1/namespaces/bench/configmaps", timeout=60).raise_for_status()
            list_seconds = time.perf_counter() - listed
        finally:
            proc.terminate()
            proc.wait(15)
    print(f"simulated cluster benchmark ({os.cpu_count()} cores)")
    print(f"  create ConfigMap, 1 client          {single:8.0f} objects/s")
    print(f"  create ConfigMap, {args.clients} clients         {many:8.0f} objects/s")
    print(
        f"  watch fan-out, {args.watchers} watchers        "
        f"median {statistics.median(fan) * 1000:6.1f} ms,"
        f" max {max(fan) * 1000:6.1f} ms (one create -> seen by all)"
    )
    print(f"  list {args.objects} ConfigMaps            {list_seconds * 1000:8.1f} ms")
    print(f"  RSS at start                        {rss_start:8.1f} MiB")
    print(f"  RSS at {total} objects             {rss_full:8.1f} MiB")


if __name__ == "__main__":
    main()
