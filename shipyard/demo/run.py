"""Run the demo on the local stack: deployments on the Kubernetes work pool, the
registry-event bridge and a Prefect Kubernetes worker, then a change pushed as CI would
push it, and the delivery it sets off followed to its verified end.

The same steps back the quick start (`shipyard demo`) and the end-to-end test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipyard.core.errors import PermanentError, TransientError
from shipyard.demo import content
from shipyard.stack import process
from shipyard.stack.model import ServiceSpec, StackLayout
from shipyard.stack.probes import http_ok
from shipyard.stack.services import bridge_secret

ROOT = Path(__file__).resolve().parents[2]
POOL = "shipyard-k8s"
FLOW_IMAGE = "shipyard/flows:local"  # no registry host: the simulator treats it as present
TEMPLATE = ROOT / "deployments" / "work-pool" / "kubernetes-base-job-template.json"

Say = Callable[[str], None]


@dataclass(frozen=True)
class PushedChange:
    """A change of the demo app, built and pushed as CI would."""

    commit: str
    reference: str
    digest: str


def _prefect_env(env: dict[str, str]) -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return {
        **os.environ,
        **env,
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
        "SHIPYARD_PROJECT_DIR": str(ROOT),
        "SHIPYARD_FLOW_IMAGE": FLOW_IMAGE,
        "PREFECT_WORKER_QUERY_SECONDS": "2",
    }


def create_work_pool() -> None:
    """Create (or update) the Kubernetes work pool with the project's base job template."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectAlreadyExists

    template = json.loads(TEMPLATE.read_text())
    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(
                WorkPoolCreate(name=POOL, type="kubernetes", base_job_template=template)
            )
        except ObjectAlreadyExists:
            client.update_work_pool(POOL, WorkPoolUpdate(base_job_template=template))


def deploy_all(env: dict[str, str]) -> None:
    """`prefect deploy --all` from prefect.yaml, as a user would run it."""
    result = subprocess.run(
        [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"],
        cwd=ROOT,
        env=_prefect_env(env),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise PermanentError(f"prefect deploy --all failed:\n{tail}")


def _catalog_file(layout: StackLayout, env: dict[str, str]) -> Path:
    path = layout.data_dir("bridge") / "catalog.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content.catalog(env["SHIPYARD_REGISTRY"], env["SHIPYARD_GIT_URL"]))
    return path


def bridge_spec(layout: StackLayout, env: dict[str, str]) -> ServiceSpec:
    """The registry-event bridge on the port the registry notifies."""
    url = env["SHIPYARD_BRIDGE_URL"]
    host, _, port = url.removeprefix("http://").partition(":")
    catalog = _catalog_file(layout, env)
    return ServiceSpec(
        name="bridge",
        argv=[
            sys.executable,
            "-m",
            "shipyard.cli.main",
            "bridge",
            "serve",
            "--host",
            host,
            "--port",
            port,
            "--spool-dir",
            str(layout.data_dir("bridge") / "spool"),
            "--catalog",
            str(catalog),
            "--prefect-api-url",
            env["PREFECT_API_URL"],
        ],
        env={**_prefect_env(env), "SHIPYARD_BRIDGE_SECRET": bridge_secret(layout)},
        health=lambda: http_ok(f"{url}/healthz"),
    )


def worker_spec(env: dict[str, str]) -> ServiceSpec:
    """A Prefect Kubernetes worker polling the pool, talking to the stack's cluster."""
    return ServiceSpec(
        name="worker",
        argv=[
            sys.executable,
            "-m",
            "prefect",
            "worker",
            "start",
            "--pool",
            POOL,
            "--type",
            "kubernetes",
            "--limit",
            "4",
        ],
        env=_prefect_env(env),
        health=lambda: _worker_online(),
        ready_timeout=90,
    )


def _worker_online() -> bool:
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            workers = client.read_workers_for_work_pool(POOL)
    except Exception:  # noqa: BLE001 - a probe answers yes or no
        return False
    return any(str(w.status).upper().endswith("ONLINE") for w in workers)


def start_service(layout: StackLayout, spec: ServiceSpec, say: Say) -> None:
    """Start ``spec`` unless running; wait until healthy (stopped again on failure)."""
    if process.read_pid(layout, spec.name) is not None and spec.health():
        return
    process.stop(layout, spec.name)
    say(f"starting {spec.name}")
    process.spawn(layout, spec)
    deadline = time.monotonic() + spec.ready_timeout
    while time.monotonic() < deadline:
        if spec.health():
            return
        if process.read_pid(layout, spec.name) is None:
            break
        time.sleep(0.25)
    log = process.tail(layout.log_file(spec.name), 8)
    process.stop(layout, spec.name)
    raise TransientError(f"{spec.name} did not become healthy; last log lines:\n{log}")


def push_change(env: dict[str, str], layout: StackLayout, version: str) -> PushedChange:
    """Commit a new version of the app and build + push it tagged with the commit, as CI."""
    from blocks.docker import DockerHost
    from blocks.registry import RegistryCredentials
    from shipyard.demo.seed import _git
    from tasks.build_image import BuildImageConfig, run_build
    from tasks.push_image import PushImageConfig, run_push

    source = layout.data_dir("git") / f"{content.SOURCE_REPO}.git"
    with tempfile.TemporaryDirectory(prefix="shipyard-ci-") as tmp:
        work = Path(tmp) / "w"
        subprocess.run(["git", "clone", "-q", str(source), str(work)], check=True)
        (work / "index.html").write_text(f"<h1>cart v{version}</h1>\n")
        _git(work, "commit", "-q", "-am", f"cart: version {version}")
        _git(work, "push", "-q", "origin", "HEAD:main")
        commit = _git(work, "rev-parse", "HEAD")
    registry = env["SHIPYARD_REGISTRY"]
    host = DockerHost(base_url=env["DOCKER_HOST"])
    credentials = RegistryCredentials(registry=registry, insecure=True)
    image = f"{registry}/{content.IMAGE_PATH}"
    built = run_build(
        BuildImageConfig(
            repo_url=f"{env['SHIPYARD_GIT_URL']}/{content.SOURCE_REPO}.git",
            commit=commit,
            repository=image,
        ),
        host,
        credentials,
    )
    pushed = run_push(PushImageConfig(repository=image, tags=built.tags), host, credentials)
    return PushedChange(commit, pushed.reference, pushed.digest)


def wait_for_delivery(tag: str, timeout: float = 300.0, say: Say | None = None) -> Any:
    """The `deliver` flow run started for ``tag`` by the automation, once final."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    deadline = time.monotonic() + timeout
    seen: str | None = None
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["deliver"]))
            )
            mine = [r for r in runs if r.parameters.get("tag") == tag]
            if mine:
                run = mine[0]
                state = run.state.name if run.state else "?"
                if say and state != seen:
                    say(f"deliver run {run.name}: {state}")
                    seen = state
                if run.state is not None and run.state.is_final():
                    return run
            time.sleep(1)
    raise TransientError(f"no finished deliver run for tag {tag} after {timeout:.0f}s")


def dora_table(
    env: dict[str, str], app: str, since: Any, timeout: float = 30.0, say: Say | None = None
) -> str:
    """`shipyard dora --app APP --since SINCE` as the demo's last word: the DORA table over
    the deliveries the demo just made, read from the Prefect API like a user would. Waits
    (up to ``timeout``) until the ledger shows them; a report never fails the demo, so a
    problem comes back as one line instead."""
    start = since.isoformat() if since is not None else None
    argv = [sys.executable, "-m", "shipyard.cli.main", "dora", "--app", app]
    argv += ["--since", start] if start else []

    def shipyard(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*argv, *extra], env=_prefect_env(env), capture_output=True, text=True, check=False
        )

    deadline = time.monotonic() + timeout
    while True:
        probe = shipyard("--json")
        if probe.returncode != 0:
            why = (probe.stderr.strip().splitlines() or [f"exit {probe.returncode}"])[-1]
            return f"DORA table unavailable: {why}"
        if json.loads(probe.stdout).get("deployments", 0) > 0 or time.monotonic() > deadline:
            break
        if say:
            say("waiting for the delivery events to reach the ledger")
        time.sleep(2)
    return shipyard().stdout.rstrip()


def monitoring_lines(env: dict[str, str], app: str, timeout: float = 30.0) -> list[str]:
    """Where the delivery shows in the stack's Prometheus and Alertmanager: their URLs,
    with a Prometheus graph of ``app``'s deliveries. Waits (up to ``timeout``) until the
    exporter's count is scraped, and says so; never fails the demo."""
    from urllib.parse import quote

    import httpx

    prometheus = env.get("SHIPYARD_PROMETHEUS_URL")
    alertmanager = env.get("SHIPYARD_ALERTMANAGER_URL")
    if not prometheus or not alertmanager:
        return ["  Prometheus, Alertmanager: not in this stack (run `shipyard stack up`)"]
    query = f'sum by (environment, outcome) (shipyard_deliveries_total{{app="{app}"}})'
    graph = f"{prometheus}/graph?g0.expr={quote(query)}&g0.tab=0&g0.range_input=1h"
    seen = "its delivery is not scraped yet; the graph fills in within seconds"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = httpx.get(f"{prometheus}/api/v1/query", params={"query": query}, timeout=5)
            result = found.json()["data"]["result"] if found.is_success else []
        except (httpx.HTTPError, ValueError, KeyError):
            result = []
        if result:
            total = sum(float(r["value"][1]) for r in result)
            seen = f"{total:.0f} delivery(ies) of {app} counted"
            break
        time.sleep(2)
    return [
        f"  Prometheus:       {graph}",
        f"    ({seen}; alerts: {prometheus}/alerts)",
        f"  Alertmanager:     {alertmanager}  (routes alerts to the bridge: docs/bridge.md)",
    ]
