"""The platform the load and chaos benches (and tests/chaos) drive: a whole local stack
with a catalog of many apps in one GitOps repo, the bridge, the crashed-run automations
and Kubernetes workers against the cluster simulator; real image pushes in bursts; and
the judge that says, per push, whether its delivery completed, was lost, duplicated or
left half-applied.

Everything here talks to real services (Prefect server and its automations, CNCF
Distribution, git daemon, moto S3, the simulator); nothing is mocked. A push is a real
OCI image pushed to the registry through its HTTP API (a new image config, the layers
of the demo's seed image), so each push has its own digest, its registry notification,
its bridge event and its `deliver` run, without a container build per push (the build
is measured by bench/build_scan_push.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import yaml

from shipyard.stack import StackLayout, process
from shipyard.stack.model import ServiceSpec

ROOT = Path(__file__).resolve().parents[1]
AUTOMATIONS = ROOT / "deployments" / "automations" / "crashed-runs.yaml"
ENV_NAMES = ("dev", "stage", "prod", "qa", "perf", "canary")
SEED_REPOSITORY = "shop/cart"  # the demo's seed image, pushed by seed_demo
Say = Callable[[str], None]


def _quiet(_msg: str) -> None:
    return None


# --------------------------------------------------------------------------------------
# Catalog and manifests (pure)
# --------------------------------------------------------------------------------------


def app_names(count: int) -> list[str]:
    """``app-000`` ... : the load catalog's app names."""
    return [f"app-{i:03d}" for i in range(count)]


def env_names(count: int) -> list[str]:
    """The first ``count`` environment names (dev first: `deliver` targets it)."""
    if not 1 <= count <= len(ENV_NAMES):
        raise ValueError(f"--environments must be between 1 and {len(ENV_NAMES)}")
    return list(ENV_NAMES[:count])


def namespace(environment: str) -> str:
    """One namespace per environment, shared by every load app."""
    return f"load-{environment}"


def image_repository(app: str) -> str:
    """The registry path of ``app``'s image."""
    return f"load/{app}"


def load_catalog(registry: str, apps: list[str], environments: list[str], base: str = "") -> str:
    """shipyard-catalog.yaml for the load: every app in every environment (apply),
    appended to the apps of ``base`` (the demo's catalog, so its tests keep working)."""
    lines = (
        [base.rstrip("\n")]
        if base
        else [
            "# Load catalog (bench/load.py): many apps in one GitOps repo.",
            "apiVersion: shipyard.dev/v1",
            "apps:",
        ]
    )
    for app in apps:
        lines += [f"  - name: {app}", f"    image: {registry}/{image_repository(app)}"]
        lines.append("    environments:")
        for env in environments:
            lines += [
                f"      - name: {env}",
                f"        path: envs/{env}/{app}",
                f"        namespace: {namespace(env)}",
                "        sync: {driver: apply}",
                f"        verify: {{workloads: [deployment/{app}], timeout_seconds: 120}}",
            ]
    return "\n".join(lines) + "\n"


def app_manifest(registry: str, app: str, environment: str) -> str:
    """One Deployment per app and environment, starting on the app's ``:seed`` image."""
    return f"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {app}
  namespace: {namespace(environment)}
  labels:
    app.kubernetes.io/name: {app}
spec:
  replicas: 1
  selector:
    matchLabels:
      app.kubernetes.io/name: {app}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: {app}
    spec:
      containers:
        - name: {app}
          image: {registry}/{image_repository(app)}:seed
"""


def percentile(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (nearest rank) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))], 2)


# --------------------------------------------------------------------------------------
# The platform
# --------------------------------------------------------------------------------------


@dataclass
class Platform:
    """A running stack seeded with the load catalog."""

    layout: StackLayout
    env: dict[str, str]
    apps: list[str] = field(default_factory=list)
    environments: list[str] = field(default_factory=list)
    workers: list[str] = field(default_factory=list)

    @property
    def registry(self) -> str:
        return self.env["SHIPYARD_REGISTRY"]

    @property
    def api_url(self) -> str:
        return self.env["PREFECT_API_URL"]

    @property
    def gitops_git_dir(self) -> Path:
        return self.layout.data_dir("git") / "gitops.git"


def start_stack(
    root: Path, database: str | None, say: Say = _quiet, messaging: str | None = None
) -> Platform:
    """``stack up`` on free ports under ``root`` (sqlite or postgresql, memory or redis
    messaging); exports its env (PREFECT_API_URL, AWS_*) into this process, as sourcing
    .shipyard/env would."""
    from shipyard.stack import stack_up
    from shipyard.stack.model import DEFAULT_PORTS
    from shipyard.stack.runner import read_env_file

    layout = StackLayout(root)
    stack_up(
        layout,
        ports=dict.fromkeys(DEFAULT_PORTS, 0),
        database=database,
        messaging=messaging,
        progress=say,
    )
    env = read_env_file(layout)
    os.environ.update(env)
    return Platform(layout, env)


def stop_stack(platform: Platform) -> None:
    """Stop the workers, the bridge and the stack (PostgreSQL's files removed too)."""
    from shipyard.stack import stack_down
    from shipyard.stack.database import remove_cluster

    for name in [*platform.workers, "bridge"]:
        process.stop(platform.layout, name)
    stack_down(platform.layout)
    remove_cluster(platform.layout)


def seed_load(platform: Platform, apps: int, environments: int, say: Say = _quiet) -> None:
    """Seed the demo (blocks, base image, namespaces), then the load catalog: every app's
    ``:seed`` image, its manifests in every environment, one GitOps commit; the bridge
    starts first (with the load catalog) so the seed pushes' notifications are emitted
    before any delivery automation exists."""
    from shipyard.demo import content
    from shipyard.demo.seed import _publish, seed_demo

    platform.apps = app_names(apps)
    platform.environments = env_names(environments)
    registry = platform.registry
    demo_catalog = content.catalog(registry, platform.env["SHIPYARD_GIT_URL"])
    text = load_catalog(registry, platform.apps, platform.environments, demo_catalog)
    start_bridge(platform, text)
    say("seeding the demo (blocks, base image)")
    seed_demo(platform.layout, platform.env)
    say(f"seeding {apps} apps x {environments} environments")
    for app in platform.apps:
        _copy_image(registry, SEED_REPOSITORY, "seed", image_repository(app), "seed")
    files = {"shipyard-catalog.yaml": text}
    for app in platform.apps:
        for env in platform.environments:
            files[f"envs/{env}/{app}/deployment.yaml"] = app_manifest(registry, app, env)
    _publish(platform.gitops_git_dir, files, "load: catalog and manifests", only_if_empty=False)
    _ensure_namespaces(platform.env["KUBECONFIG"], [namespace(e) for e in platform.environments])
    wait_spool_empty(platform)


def start_bridge(platform: Platform, catalog_text: str) -> None:
    """The registry-event bridge with the load catalog."""
    from shipyard.demo import run as demo

    spec = demo.bridge_spec(platform.layout, platform.env)  # writes the demo catalog
    (platform.layout.data_dir("bridge") / "catalog.yaml").write_text(catalog_text)
    process.stop(platform.layout, "bridge")  # a running one would keep its old catalog
    demo.start_service(platform.layout, spec, _quiet)


def bridge_spool_depth(platform: Platform) -> float | None:
    """The bridge's spool depth (events not yet confirmed in Prefect); None: no answer."""
    try:
        text = httpx.get(f"{platform.env['SHIPYARD_BRIDGE_URL']}/metrics", timeout=5).text
    except httpx.HTTPError:
        return None
    for line in text.splitlines():
        if line.startswith("shipyard_bridge_spool_depth "):
            return float(line.split()[1])
    return None


def wait_spool_empty(platform: Platform, timeout: float = 120.0) -> None:
    """Until the bridge has confirmed every spooled event in Prefect."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if bridge_spool_depth(platform) == 0:
            return
        time.sleep(0.5)


def deploy(platform: Platform) -> None:
    """The work pool, `prefect deploy --all`, and the crashed-run automations."""
    from shipyard.demo import run as demo

    demo.create_work_pool()
    demo.deploy_all(platform.env)
    install_crash_automations()


def install_crash_automations(path: Path = AUTOMATIONS) -> list[str]:
    """Create the automations of ``path`` (replacing same-named ones): what
    `prefect automation create --from-file` does, made idempotent."""
    from prefect.client.orchestration import get_client
    from prefect.events.schemas.automations import AutomationCore

    data = yaml.safe_load(path.read_text())
    wanted = [AutomationCore.model_validate(a) for a in data["automations"]]
    with get_client(sync_client=True) as client:
        for existing in client.read_automations():
            if existing.name in {w.name for w in wanted}:
                client.delete_automation(existing.id)
        for automation in wanted:
            client.create_automation(automation)
    return [w.name for w in wanted]


def start_workers(platform: Platform, count: int) -> None:
    """Run ``count`` Prefect Kubernetes workers on the pool (stopping any beyond)."""
    from shipyard.demo import run as demo

    names = ["worker"] + [f"worker-{i + 1}" for i in range(1, count)]
    for extra in platform.workers:
        if extra not in names:
            process.stop(platform.layout, extra)
    for name in names:
        spec: ServiceSpec = replace(demo.worker_spec(platform.env), name=name)
        demo.start_service(platform.layout, spec, _quiet)
    platform.workers = names


def _ensure_namespaces(kubeconfig: str, names: list[str]) -> None:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    from shipyard.core.kube import api_client

    with api_client(kubeconfig) as api:
        core = client.CoreV1Api(api)
        for name in names:
            with contextlib.suppress(ApiException):
                core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))


# --------------------------------------------------------------------------------------
# Pushes
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Push:
    """One image pushed as CI would push it."""

    app: str
    repository: str
    tag: str
    digest: str
    pushed_at: float  # epoch seconds, when the registry accepted the manifest


_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
_ACCEPT = ",".join([_MANIFEST, "application/vnd.docker.distribution.manifest.v2+json"])


def _copy_image(
    registry: str, source: str, reference: str, target: str, tag: str, label: str = ""
) -> str:
    """Push ``source:reference``'s image to ``target:tag`` (layers copied), its config
    relabelled with ``label`` (a new digest); return the pushed digest."""
    base = f"http://{registry}/v2"
    with httpx.Client(timeout=30) as client:
        got = client.get(f"{base}/{source}/manifests/{reference}", headers={"Accept": _ACCEPT})
        got.raise_for_status()
        manifest = got.json()
        media_type = manifest.get("mediaType") or got.headers["Content-Type"]
        config = client.get(f"{base}/{source}/blobs/{manifest['config']['digest']}").json()
        if label:
            inner = config.setdefault("config", {})
            inner.setdefault("Labels", {})
            inner["Labels"] = {**(inner["Labels"] or {}), "dev.shipyard.load.push": label}
        for layer in manifest["layers"]:
            digest = layer["digest"]
            if client.head(f"{base}/{target}/blobs/{digest}").status_code == 200:
                continue
            mounted = client.post(
                f"{base}/{target}/blobs/uploads/", params={"mount": digest, "from": source}
            )
            if mounted.status_code != 201:
                data = client.get(f"{base}/{source}/blobs/{digest}").content
                _upload(client, base, target, data, digest, mounted)
        data = json.dumps(config, separators=(",", ":")).encode()
        config_digest = _sha256(data)
        if client.head(f"{base}/{target}/blobs/{config_digest}").status_code != 200:
            started = client.post(f"{base}/{target}/blobs/uploads/")
            _upload(client, base, target, data, config_digest, started)
        manifest = {
            **manifest,
            "config": {**manifest["config"], "digest": config_digest, "size": len(data)},
        }
        body = json.dumps(manifest, separators=(",", ":")).encode()
        put = client.put(
            f"{base}/{target}/manifests/{tag}", content=body, headers={"Content-Type": media_type}
        )
        put.raise_for_status()
        return put.headers.get("Docker-Content-Digest") or _sha256(body)


def _sha256(data: bytes) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()


def _upload(
    client: httpx.Client, base: str, target: str, data: bytes, digest: str, started: Any
) -> None:
    started.raise_for_status()
    location = started.headers["Location"]
    if location.startswith("/"):
        location = base.removesuffix("/v2") + location
    separator = "&" if "?" in location else "?"
    done = client.put(
        f"{location}{separator}digest={digest}",
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    done.raise_for_status()


def push_burst(platform: Platform, count: int, label: str, say: Say = _quiet) -> list[Push]:
    """``count`` pushes, round-robin over the apps, as fast as the registry takes them."""
    pushes: list[Push] = []
    for i in range(count):
        app = platform.apps[i % len(platform.apps)]
        tag = f"{label}-{i}"
        digest = _copy_image(
            platform.registry, SEED_REPOSITORY, "seed", image_repository(app), tag, f"{label}-{i}"
        )
        pushes.append(Push(app, image_repository(app), tag, digest, time.time()))
    say(f"pushed {count} images ({label})")
    return pushes


# --------------------------------------------------------------------------------------
# The judge
# --------------------------------------------------------------------------------------


@dataclass
class Delivery:
    """What became of one push."""

    push: Push
    runs: list[Any] = field(default_factory=list)
    commits: int = 0  # GitOps commits naming the digest

    @property
    def completed_runs(self) -> list[Any]:
        return [r for r in self.runs if r.state is not None and r.state.is_completed()]

    @property
    def status(self) -> str:
        """completed | failed (ended, not completed) | lost (no run, or none final)."""
        if self.completed_runs:
            return "completed"
        if self.runs and all(r.state is not None and r.state.is_final() for r in self.runs):
            return "failed"
        return "lost"

    @property
    def duplicated(self) -> bool:
        return len(self.completed_runs) > 1 or self.commits > 1


def deliver_runs(since: float) -> list[Any]:
    """Every `deliver` flow run created after ``since`` (epoch), all pages."""
    from datetime import UTC, datetime

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterName,
        FlowRunFilter,
        FlowRunFilterExpectedStartTime,
    )

    after = datetime.fromtimestamp(since - 5, UTC)
    runs: list[Any] = []
    with get_client(sync_client=True) as client:
        while True:
            page = client.read_flow_runs(
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["deliver"])),
                flow_run_filter=FlowRunFilter(
                    expected_start_time=FlowRunFilterExpectedStartTime(after_=after)
                ),
                limit=200,
                offset=len(runs),
            )
            runs += page
            if len(page) < 200:
                return runs


def gitops_commits_by_digest(platform: Platform) -> dict[str, int]:
    """How many commits on the GitOps repo's main name each digest."""
    out = subprocess.run(
        ["git", "--git-dir", str(platform.gitops_git_dir), "log", "--format=%B%x00", "main"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    counts: dict[str, int] = {}
    for message in out.split("\x00"):
        # the `Digest:` trailer names the digest the commit pins (the old one is only
        # in the subject, shortened)
        for line in message.splitlines():
            if line.startswith("Digest:"):
                digest = line.split(":", 1)[1].strip()
                counts[digest] = counts.get(digest, 0) + 1
    return counts


def judge(platform: Platform, pushes: list[Push], since: float) -> list[Delivery]:
    """Each push with its deliver runs and the GitOps commits naming its digest."""
    runs = deliver_runs(since)
    commits = gitops_commits_by_digest(platform)
    return [
        Delivery(
            p,
            [r for r in runs if r.parameters.get("digest") == p.digest],
            commits.get(p.digest, 0),
        )
        for p in pushes
    ]


def wait_settled(
    platform: Platform,
    pushes: list[Push],
    since: float,
    timeout: float,
    quiet: float = 20.0,
    say: Say = _quiet,
) -> list[Delivery]:
    """Until every push's delivery completed, or nothing moved for ``quiet`` seconds with
    every run final (a crashed run may still be scheduled again), or ``timeout``."""
    deadline = time.monotonic() + timeout
    last_key: tuple[Any, ...] = ()
    still_since = time.monotonic()
    shown = ""
    while True:
        try:
            deliveries = judge(platform, pushes, since)
        except Exception as exc:
            say(f"API not answering ({type(exc).__name__}); waiting")
            time.sleep(2)
            if time.monotonic() > deadline:
                raise
            continue
        counts = summary(deliveries)
        line = ", ".join(f"{k} {v}" for k, v in counts.items() if k in _SHOWN)
        if line != shown:
            say(line)
            shown = line
        key = tuple((r.id, r.state_type) for d in deliveries for r in d.runs)
        if key != last_key:
            last_key, still_since = key, time.monotonic()
        if all(d.status == "completed" for d in deliveries):
            return deliveries
        all_final = all(d.status != "lost" for d in deliveries)
        if all_final and time.monotonic() - still_since > quiet:
            return deliveries
        if time.monotonic() > deadline:
            return deliveries
        time.sleep(2)


_SHOWN = ("completed", "failed", "lost", "duplicated")


def summary(deliveries: list[Delivery]) -> dict[str, int]:
    """Counts of completed, failed, lost and duplicated deliveries and runs."""
    return {
        "pushes": len(deliveries),
        "completed": sum(d.status == "completed" for d in deliveries),
        "failed": sum(d.status == "failed" for d in deliveries),
        "lost": sum(d.status == "lost" for d in deliveries),
        "duplicated": sum(d.duplicated for d in deliveries),
        "runs": sum(len(d.runs) for d in deliveries),
    }


def latencies(deliveries: list[Delivery]) -> dict[str, dict[str, float | None]]:
    """p50/p95 seconds from push to run created, started and verified (completed runs)."""
    created: list[float] = []
    started: list[float] = []
    verified: list[float] = []
    for d in deliveries:
        for run in d.completed_runs[:1]:
            created.append(run.created.timestamp() - d.push.pushed_at)
            if run.start_time:
                started.append(run.start_time.timestamp() - d.push.pushed_at)
            if run.end_time:
                verified.append(run.end_time.timestamp() - d.push.pushed_at)
    return {
        name: {"p50": percentile(values, 0.5), "p95": percentile(values, 0.95)}
        for name, values in (
            ("push_to_run_created_s", created),
            ("push_to_run_started_s", started),
            ("push_to_verified_s", verified),
        )
    }


def throughput(deliveries: list[Delivery]) -> float | None:
    """Deliveries completed per minute, from the first push to the last verified."""
    ends = [r.end_time.timestamp() for d in deliveries for r in d.completed_runs[:1]]
    if not ends:
        return None
    start = min(d.push.pushed_at for d in deliveries)
    return round(len(ends) / max(max(ends) - start, 1e-6) * 60, 2)


def half_applied(platform: Platform) -> list[str]:
    """Apps whose first environment runs another image in the cluster than git pins."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    from shipyard.core.kube import api_client

    env = platform.environments[0]
    wrong: list[str] = []
    with api_client(platform.env["KUBECONFIG"]) as api:
        apps_api = client.AppsV1Api(api)
        for app in platform.apps:
            text = subprocess.run(
                [
                    "git",
                    "--git-dir",
                    str(platform.gitops_git_dir),
                    "show",
                    f"main:envs/{env}/{app}/deployment.yaml",
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            in_git = yaml.safe_load(text)["spec"]["template"]["spec"]["containers"][0]["image"]
            try:
                live: Any = apps_api.read_namespaced_deployment(app, namespace(env))
                in_cluster = live.spec.template.spec.containers[0].image
            except ApiException as exc:
                if exc.status != 404:
                    raise
                in_cluster = None  # never delivered: fine while git still pins the seed
                if in_git.endswith(":seed"):
                    continue
            if in_cluster != in_git:
                wrong.append(f"{app}: git {in_git}, cluster {in_cluster}")
    return wrong


def failures_explained(deliveries: list[Delivery]) -> tuple[int, int]:
    """(failed or crashed states in the runs' histories, how many carry a message)."""
    from prefect.client.orchestration import get_client

    seen = explained = 0
    with get_client(sync_client=True) as client:
        for d in deliveries:
            for run in d.runs:
                for state in client.read_flow_run_states(run.id):
                    if state.type.value in ("FAILED", "CRASHED"):
                        seen += 1
                        explained += bool((state.message or "").strip())
    return seen, explained


def task_retries(deliveries: list[Delivery], task_name: str) -> int:
    """Retries (run_count - 1) of the task ``task_name`` across the deliveries' runs."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        TaskRunFilter,
        TaskRunFilterName,
    )

    ids = [r.id for d in deliveries for r in d.runs]
    if not ids:
        return 0
    with get_client(sync_client=True) as client:
        tasks = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)),
            task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_=task_name)),
            limit=200,
        )
    return sum(max(0, (t.run_count or 1) - 1) for t in tasks)


def writer_waits(deliveries: list[Delivery]) -> tuple[int, float]:
    """Writer-lock waits derived from the `commit-and-push` task runs: writers of one
    repo and branch hold one slot, so a write that started before the previous one
    ended waited for it. Returns (writes that waited, total seconds waited)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        TaskRunFilter,
        TaskRunFilterName,
    )

    ids = [r.id for d in deliveries for r in d.runs]
    if not ids:
        return 0, 0.0
    with get_client(sync_client=True) as client:
        tasks = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)),
            task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="commit-and-push")),
            limit=200,
        )
    spans = sorted(
        (t.start_time.timestamp(), t.end_time.timestamp())
        for t in tasks
        if t.start_time and t.end_time
    )
    waits, total, free_at = 0, 0.0, 0.0
    for start, end in spans:
        if start < free_at:
            waits += 1
            total += free_at - start
        free_at = max(free_at, end)
    return waits, round(total, 2)


# --------------------------------------------------------------------------------------
# Sampling the API and the processes while the load runs
# --------------------------------------------------------------------------------------


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def tree_rss_mib(pid: int | None) -> float:
    """Resident memory of ``pid`` and its descendants, MiB (0 when gone)."""
    if pid is None:
        return 0.0
    tree, todo, total = _children(), [pid], 0
    while todo:
        current = todo.pop()
        todo += tree.get(current, [])
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return round(total / 1024, 1)


@dataclass
class Samples:
    """API latencies (s) and peak RSS (MiB) seen while sampling."""

    api: list[float] = field(default_factory=list)
    api_errors: int = 0
    server_rss: float = 0.0
    worker_rss: float = 0.0
    load: list[float] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        return {
            "prefect_api_p50_ms": _ms(percentile(self.api, 0.5)),
            "prefect_api_p95_ms": _ms(percentile(self.api, 0.95)),
            "prefect_api_samples": len(self.api),
            "prefect_api_errors": self.api_errors,
            "server_rss_mib_peak": self.server_rss,
            "workers_rss_mib_peak": self.worker_rss,
            "load_average_1m_mean": round(statistics.mean(self.load), 2) if self.load else None,
            "load_average_1m_max": round(max(self.load), 2) if self.load else None,
        }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


@contextlib.contextmanager
def sampling(platform: Platform, every: float = 1.0) -> Iterator[Samples]:
    """Sample the Prefect API (a flow-run query, as the UI and workers make) and the RSS
    of the server (with its database) and the workers, in a thread, while the body runs."""
    samples, stop = Samples(), threading.Event()
    backing = ("prefect", "postgres", "redis")

    def loop() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                t0 = time.perf_counter()
                try:
                    client.post(
                        f"{platform.api_url}/flow_runs/filter", json={"limit": 10}
                    ).raise_for_status()
                    samples.api.append(time.perf_counter() - t0)
                except httpx.HTTPError:
                    samples.api_errors += 1
                server = sum(tree_rss_mib(process.read_pid(platform.layout, n)) for n in backing)
                workers = sum(
                    tree_rss_mib(process.read_pid(platform.layout, n)) for n in platform.workers
                )
                samples.server_rss = max(samples.server_rss, round(server, 1))
                samples.worker_rss = max(samples.worker_rss, round(workers, 1))
                samples.load.append(os.getloadavg()[0])
                stop.wait(every)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join(15)


# --------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------


def restart_service(platform: Platform, name: str, down_seconds: float, say: Say = _quiet) -> None:
    """Stop the stack service ``name``, keep it down ``down_seconds``, start it again
    with the same spec (same port, same data) and wait until it is healthy."""
    from shipyard.stack.runner import build_specs

    spec = next(
        s for s in build_specs(platform.layout, platform.layout.load_ports()) if s.name == name
    )
    say(f"stopping {name} for {down_seconds:.0f}s")
    process.stop(platform.layout, name)
    time.sleep(down_seconds)
    process.spawn(platform.layout, spec)
    deadline = time.monotonic() + 120
    while not spec.health():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not come back")
        time.sleep(0.5)
    say(f"{name} is back")


@contextlib.contextmanager
def frozen(platform: Platform, name: str) -> Iterator[None]:
    """An outage that keeps the service's state: SIGSTOP its processes (connections hang,
    then time out, as with a network partition), SIGCONT at the end. Used for moto S3,
    whose buckets live in memory and would not survive a restart."""
    pid = process.read_pid(platform.layout, name)
    if pid is None:
        raise RuntimeError(f"{name} is not running")
    os.killpg(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(pid, signal.SIGCONT)


def flow_run_processes(run_ids: set[str]) -> list[int]:
    """Pids of flow-run processes (the simulator's process-backed flow pods) executing
    one of ``run_ids`` (found by the PREFECT__FLOW_RUN_ID the worker gives the pod)."""
    pids: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\x00")
        except OSError:
            continue
        for item in environ:
            if item.startswith(b"PREFECT__FLOW_RUN_ID="):
                if item.split(b"=", 1)[1].decode() in run_ids:
                    pids.append(int(entry.name))
                break
    return pids


def kill_worker_and_runs(platform: Platform, say: Say = _quiet) -> int:
    """A node dies: SIGKILL every worker and the processes of the `deliver` runs that are
    Running now (nothing gets to report). Returns how many runs were killed."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    with get_client(sync_client=True) as client:
        running = client.read_flow_runs(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["deliver"])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING]))
            ),
        )
    for name in platform.workers:
        pid = process.read_pid(platform.layout, name)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    victims = flow_run_processes({str(r.id) for r in running})
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    say(f"killed {len(platform.workers)} worker(s) and {len(victims)} flow-run process(es)")
    return len(running)


def wait_running(count: int, timeout: float) -> int:
    """Until at least ``count`` deliver runs are Running (or ``timeout``); how many are."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    deadline, n = time.monotonic() + timeout, 0
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            n = len(
                client.read_flow_runs(
                    deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["deliver"])),
                    flow_run_filter=FlowRunFilter(
                        state=FlowRunFilterState(
                            type=FlowRunFilterStateType(any_=[StateType.RUNNING])
                        )
                    ),
                )
            )
            if n >= count:
                return n
            time.sleep(0.5)
    return n


def sim_faults(platform: Platform, rules: list[dict[str, Any]]) -> None:
    """Set the simulator's fault rules (``POST /_sim/faults``, docs/sim-cluster.md)."""
    server = _sim_url(platform)
    httpx.post(f"{server}/_sim/faults", json={"rules": rules}, timeout=10).raise_for_status()


def sim_faults_injected(platform: Platform) -> int:
    """How many faults the simulator injected so far."""
    return int(httpx.get(f"{_sim_url(platform)}/_sim/faults", timeout=10).json()["injected"])


def _sim_url(platform: Platform) -> str:
    config = yaml.safe_load(Path(platform.env["KUBECONFIG"]).read_text())
    return str(config["clusters"][0]["cluster"]["server"]).rstrip("/")


def temp_root(prefix: str) -> tempfile.TemporaryDirectory[str]:
    """A temporary state dir for one bench stack."""
    return tempfile.TemporaryDirectory(prefix=prefix)
