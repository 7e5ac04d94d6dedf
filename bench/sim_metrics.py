"""Benchmark the simulator's ``GET /metrics`` (kube-state-metrics and Argo CD series).

    .venv/bin/python bench/sim_metrics.py [--deployments 100] [--replicas 3] [--configmaps 2000]

Runs the simulator as a subprocess (4 nodes), fills it with Deployments (hence pods,
with requests and limits), ConfigMaps and Argo CD Applications, then prints the scrape's
size and latency, and the latency of an API call (GET of one ConfigMap) with and
without a scrape every 100 ms running beside it: /metrics is computed on the API's
event loop, so this is what a Prometheus scraping it costs the API.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import yaml

APP_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "applications.argoproj.io"},
    "spec": {
        "group": "argoproj.io",
        "scope": "Namespaced",
        "names": {"kind": "Application", "plural": "applications", "singular": "application"},
        "versions": [
            {
                "name": "v1alpha1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
            }
        ],
    },
}


SIM_FLAGS = ("--no-pull-images", "--nodes", "4")


def _start(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    kubeconfig = tmp / "kubeconfig"
    proc = subprocess.Popen(
        [sys.executable, "-m", "simcluster", "--kubeconfig", str(kubeconfig), *SIM_FLAGS],
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


def _deployment(name: str, replicas: int) -> dict[str, object]:
    container = {
        "name": "app",
        "image": "app:1",
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "20m"}},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [container]},
            },
        },
    }


def _application(name: str) -> dict[str, object]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name},
        "spec": {
            "project": "default",
            "source": {"repoURL": "https://git.example/x.git", "path": name},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": "bench"},
        },
        "status": {"sync": {"status": "Synced"}, "health": {"status": "Healthy"}},
    }


def _timed(client: httpx.Client, path: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        client.get(path).raise_for_status()
        out.append((time.perf_counter() - start) * 1000)
    return out


def _fill(client: httpx.Client, args: argparse.Namespace) -> None:
    client.post("/api/v1/namespaces", json={"metadata": {"name": "bench"}}).raise_for_status()
    client.post(
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=APP_CRD
    ).raise_for_status()
    for i in range(args.deployments):
        client.post(
            "/apis/apps/v1/namespaces/bench/deployments", json=_deployment(f"d{i}", args.replicas)
        ).raise_for_status()
        client.post(
            "/apis/argoproj.io/v1alpha1/namespaces/bench/applications", json=_application(f"a{i}")
        ).raise_for_status()
    for i in range(args.configmaps):
        body = {"metadata": {"name": f"cm{i}"}, "data": {"k": "x" * 64}}
        client.post("/api/v1/namespaces/bench/configmaps", json=body).raise_for_status()
    want = args.deployments * args.replicas
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        pods = client.get("/api/v1/namespaces/bench/pods").json()["items"]
        if len(pods) >= want:
            return
        time.sleep(0.5)
    raise SystemExit(f"only {len(pods)} of {want} pods after 120 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--deployments", type=int, default=100)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--configmaps", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = _start(Path(tmp))
        try:
            with httpx.Client(base_url=url, timeout=60) as client:
                _fill(client, args)
                body = client.get("/metrics").text
                scrape = _timed(client, "/metrics", 20)
                quiet = _timed(client, "/api/v1/namespaces/bench/configmaps/cm1", 200)
                stop = threading.Event()

                def scraper() -> None:
                    with httpx.Client(base_url=url, timeout=60) as c:
                        while not stop.wait(0.1):
                            c.get("/metrics")

                thread = threading.Thread(target=scraper, daemon=True)
                thread.start()
                busy = _timed(client, "/api/v1/namespaces/bench/configmaps/cm1", 200)
                stop.set()
                thread.join()
        finally:
            proc.terminate()
            proc.wait(10)
    series = sum(1 for line in body.splitlines() if line and not line.startswith("#"))
    pods = args.deployments * args.replicas
    print(f"simulator /metrics benchmark ({pods} pods, {args.deployments} deployments and")
    print(f"  applications, {args.configmaps} configmaps, 4 nodes)")
    print(f"  /metrics size                 {len(body) / 1024:8.1f} KiB, {series} series")
    print(
        f"  /metrics latency              median {statistics.median(scrape):6.1f} ms, "
        f"max {max(scrape):6.1f} ms"
    )
    for label, values in (("quiet", quiet), ("scraped every 100 ms", busy)):
        q = statistics.quantiles(values, n=20)
        print(
            f"  GET configmap, {label:21} median {statistics.median(values):5.2f} ms, "
            f"p95 {q[18]:5.2f} ms"
        )


if __name__ == "__main__":
    main()
