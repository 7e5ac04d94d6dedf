"""Benchmark of verify_rollout against the simulator, in one run.

For each of N rollouts (a Deployment of R replicas changed to a new image, pods taking
``--startup`` seconds to start) it measures:

- the delay between the rollout *completing in the simulator* (the moment the store
  records a Deployment status with every replica updated and available, seen by a store
  listener inside the simulator) and ``watch_rollout`` returning healthy (goal < 1 s);
- the API requests one verification makes, counted at the simulator's HTTP layer (an
  ASGI wrapper around the simulator's app; the simulator exposes no request counter).

A poll-every-second verifier is measured the same way, as the baseline that "watch,
don't poll-hammer" is about.

Usage: ``.venv/bin/python bench/verify.py [--rollouts 15] [--replicas 3] [--startup 0.5]``
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from simcluster.cluster import SimCluster
from simcluster.config import SimConfig

from shipyard.core.kube import KubeClient
from tasks.verify_rollout import VerifyConfig, evaluate_rollout, watch_rollout


class CountingApp:
    """ASGI wrapper counting HTTP requests (by verb) on their way into the simulator."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.count = 0
        self.lock = threading.Lock()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") == "http":
            with self.lock:
                self.count += 1
        await self.app(scope, receive, send)

    def take(self) -> int:
        with self.lock:
            n, self.count = self.count, 0
            return n


class CompletionClock:
    """Store listener: when did each Deployment's rollout last become complete?"""

    def __init__(self) -> None:
        self.completed: dict[tuple[str, str], float] = {}

    def __call__(self, rt: Any, event: Any) -> None:
        if rt.key != ("apps", "deployments") or event.type == "DELETED":
            return
        obj = event.obj
        meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
        want = int(spec.get("replicas", 1))
        done = (
            int(status.get("observedGeneration") or 0) >= int(meta.get("generation") or 0)
            and int(status.get("updatedReplicas") or 0) == want
            and int(status.get("availableReplicas") or 0) == want
            and int(status.get("replicas") or 0) == want
        )
        key = (meta.get("namespace"), meta["name"])
        if done and key not in self.completed:
            self.completed[key] = time.monotonic()
        elif not done:
            self.completed.pop(key, None)


def deployment(name: str, ns: str, image: str, replicas: int, startup: float) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {
                    "labels": {"app": name},
                    "annotations": {"sim.shipyard.dev/startup-seconds": str(startup)},
                },
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    }


def poll_verify(kube: KubeClient, ns: str, name: str, interval: float, timeout: float) -> bool:
    """The baseline: GET the Deployment and LIST its pods every ``interval`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dep = kube.get(f"/apis/apps/v1/namespaces/{ns}/deployments/{name}")
        pods, _ = kube.list(f"/api/v1/namespaces/{ns}/pods", {"labelSelector": f"app={name}"})
        if dep is not None:
            dep["kind"] = "Deployment"
            state = evaluate_rollout(dep, list(pods)).state
            if state != "progressing":
                return state == "healthy"
        time.sleep(interval)
    return False


def run(
    rollouts: int,
    replicas: int,
    startup: float,
    verifier: Callable[[KubeClient, str, str], bool],
    label: str,
    cluster: SimCluster,
    counter: CountingApp,
    clock: CompletionClock,
) -> None:
    kube = KubeClient(_client(cluster))
    resource = kube.resource("apps/v1", "Deployment")
    ns = "bench-" + "".join(c for c in label if c.isalnum())[:20]
    kube.request("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
    kube.apply(resource, deployment("web", ns, "bench/web:0", replicas, startup), "bench")
    verifier(kube, ns, "web")
    delays, requests = [], []
    for i in range(1, rollouts + 1):
        kube.apply(resource, deployment("web", ns, f"bench/web:{i}", replicas, startup), "bench")
        counter.take()
        ok = verifier(kube, ns, "web")
        returned = time.monotonic()
        requests.append(counter.take())
        done = clock.completed.get((ns, "web"))
        if not ok or done is None:
            raise SystemExit(f"{label}: rollout {i} did not verify")
        delays.append(returned - done)
    delays.sort()
    p90 = delays[int(len(delays) * 0.9) - 1]
    print(
        f"{label:>14}: median delay {statistics.median(delays) * 1000:7.1f} ms, "
        f"p90 {p90 * 1000:7.1f} ms, max {delays[-1] * 1000:7.1f} ms; "
        f"API requests per verification: median {statistics.median(requests):.0f} "
        f"(min {min(requests)}, max {max(requests)})"
    )


def _client(cluster: SimCluster) -> Any:
    from kubernetes import client

    configuration = client.Configuration()
    configuration.host = cluster.url
    configuration.api_key = {"authorization": "Bearer simcluster"}
    configuration.retries = 0
    return client.ApiClient(configuration)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, default=15)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--startup", type=float, default=0.5)
    args = parser.parse_args()

    cluster = SimCluster(SimConfig(startup_delay=0.05, pull_backoff=0.2, max_backoff=1.0))
    counter = CountingApp(cluster.app)
    cluster.app = counter  # type: ignore[assignment]  # wrapped before the server starts
    clock = CompletionClock()
    cluster.store.subscribe(clock)
    cluster.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cluster.write_kubeconfig(Path(tmp) / "kubeconfig")

            def watch(kube: KubeClient, ns: str, name: str) -> bool:
                cfg = VerifyConfig(namespace=ns, workload=f"deployment/{name}", timeout_seconds=60)
                return watch_rollout(kube, cfg).healthy

            print(
                f"{args.rollouts} rollouts of {args.replicas} replicas, pods start in "
                f"{args.startup}s (simulator)"
            )
            run(
                args.rollouts,
                args.replicas,
                args.startup,
                watch,
                "watch (shipyard)",
                cluster,
                counter,
                clock,
            )
            run(
                args.rollouts,
                args.replicas,
                args.startup,
                lambda k, ns, n: poll_verify(k, ns, n, 1.0, 60),
                "poll every 1s",
                cluster,
                counter,
                clock,
            )
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
