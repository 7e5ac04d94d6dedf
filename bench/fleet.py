"""Benchmark a fleet rollout across many simulated clusters.

    .venv/bin/python bench/fleet.py [--clusters 50] [--max-parallel 10]

Hosts every cluster in this one process (a ``SimCluster`` each, on its own port), commits
a Deployment ``api`` (2 replicas) to a real git repo, and rolls it out with
:func:`flows.fleet_rollout.fleet_rollout_directly` in waves (a canary, then the rest in
waves of about a third). Prints the total time, the sum of the per-wave times (first
start to last finish of each wave's clusters), the per-cluster overhead (goal: under
0.2 s per cluster) and the process's memory per simulated cluster (RSS growth / N).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path

import yaml
from simcluster.cluster import SimCluster
from simcluster.config import SimConfig


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=b", "-c", "user.email=b@example.com", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=50)
    parser.add_argument("--max-parallel", type=int, default=10)
    args = parser.parse_args()
    from flows.fleet_rollout import fleet_rollout_directly

    n = args.clusters
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as scratch:
        root = Path(scratch)
        rss0 = _rss_mib()
        sims: list[SimCluster] = []
        clusters = []
        try:
            for i in range(n):
                sim = SimCluster(SimConfig(startup_delay=0.05, bookmark_interval=5.0)).start()
                sims.append(sim)
                kc = sim.write_kubeconfig(root / f"kc-{i}")
                tier = "canary" if i == 0 else f"ring-{1 + (i - 1) * 3 // max(n - 1, 1)}"
                clusters.append({"name": f"c{i}", "kubeconfig": str(kc), "labels": {"ring": tier}})
                import httpx

                httpx.post(
                    f"{sim.url}/api/v1/namespaces",
                    json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}},
                    headers={"Authorization": "Bearer simcluster"},
                ).raise_for_status()
            rss = _rss_mib()
            repo = root / "gitops"
            (repo / "api").mkdir(parents=True)
            _git("init", "-q", "-b", "main", str(repo), cwd=root)
            dep = {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "api"},
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": {"app": "api"}},
                    "template": {
                        "metadata": {"labels": {"app": "api"}},
                        "spec": {"containers": [{"name": "api", "image": "shop/api:1"}]},
                    },
                },
            }
            (repo / "api" / "deployment.yaml").write_text(json.dumps(dep))
            _git("add", "-A", cwd=repo)
            _git("commit", "-q", "-m", "api: v1", cwd=repo)
            rings = sorted({str(c["labels"]["ring"]) for c in clusters[1:]})  # type: ignore[index]
            waves = [{"name": "canary", "selector": {"matchLabels": {"ring": "canary"}}}] + [
                {
                    "name": r,
                    "selector": {"matchLabels": {"ring": r}},
                    "max_parallel": args.max_parallel,
                }
                for r in rings
            ]
            fleet = {
                "apiVersion": "shipyard.dev/v1",
                "kind": "Fleet",
                "metadata": {"name": "bench"},
                "clusters": clusters,
                "rollout": {
                    "path": "api",
                    "namespace": "shop",
                    "verify": {"workloads": ["deployment/api"], "timeout_seconds": 60},
                    "waves": waves,
                },
            }
            file = root / "fleet.yaml"
            file.write_text(yaml.safe_dump(fleet))
            started = time.monotonic()
            report = fleet_rollout_directly(str(file), str(repo), "main")
            total = time.monotonic() - started
            rss_after = _rss_mib()
        finally:
            for sim in sims:
                sim.stop()
    assert report.passed, report.cli_json()
    per_wave = []
    busy = 0.0
    for wave in report.waves:
        starts = [datetime.fromisoformat(c.started_at or "") for c in wave.clusters]
        ends = [datetime.fromisoformat(c.finished_at or "") for c in wave.clusters]
        per_wave.append((max(ends) - min(starts)).total_seconds())
        busy += sum((e - s).total_seconds() for s, e in zip(starts, ends, strict=True))
    print(f"clusters: {n} in {len(report.waves)} waves (max_parallel {args.max_parallel})")
    print(f"total: {total:.2f}s; sum of per-wave times: {sum(per_wave):.2f}s")
    print(f"per wave: {', '.join(f'{w:.2f}s' for w in per_wave)}")
    print(f"overhead outside the waves: {(total - sum(per_wave)) / n * 1000:.1f} ms per cluster")
    print(f"cluster time (probe+record+sync+verify): {busy / n:.2f}s per cluster on average")
    print(
        f"memory: {(rss - rss0) / n:.1f} MiB RSS per simulated cluster when started, "
        f"{(rss_after - rss0) / n:.1f} MiB after the rollout (objects, pods, watches)"
    )


if __name__ == "__main__":
    main()
