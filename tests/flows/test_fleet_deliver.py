"""``deliver`` to a catalog environment that targets a fleet, on a real Prefect server,
four simulated clusters (labelled KubernetesCluster blocks), a real registry and a real
GitOps repo: the GitOps write happens once, then the waves go one after the other; an
image the clusters cannot pull halts at the canary, which is rolled back while later
waves are never touched and the commit is reverted; approval between waves through the
Prefect API; pause, resume and skip-a-cluster through ``shipyard fleet``.

The registry sits behind a loopback forwarder (:class:`PullGate`) that answers the
clusters' pull check (``HEAD .../manifests/<digest>``) with 404 for digests marked
unpullable, as a registry does for an image the cluster may not pull; everything else
(the push, Shipyard's own reads) reaches the real registry.
"""

from __future__ import annotations

import contextvars
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from blocks.cluster import KubernetesCluster
from blocks.gitops import GitOpsRepository
from flows.deliver import DeliverOptions, Provenance, deliver
from flows.sync_verify import RolledBackError
from shipyard.cli.main import main
from shipyard.demo.seed import _publish
from tests.fixtures.simcluster import LocalRegistry, start_registry
from tests.tasks.fleet_env import Fleet4, start_fleet4
from tests.tasks.k8s_objects import deployment

pytestmark = [pytest.mark.usefixtures("prefect_api"), pytest.mark.slow]

_HOP = {"connection", "transfer-encoding", "content-encoding", "content-length", "host"}


class PullGate(ThreadingHTTPServer):
    """A forwarder to ``upstream`` that refuses the pull check of ``unpullable`` digests."""

    daemon_threads = True

    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", 0), _Forward)
        self.upstream = upstream
        self.unpullable: set[str] = set()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


class _Forward(BaseHTTPRequestHandler):
    server: PullGate

    def log_message(self, *args: Any) -> None:
        return None

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        refused = self.command == "HEAD" and "/manifests/" in self.path
        if refused and self.path.rsplit("/", 1)[-1] in self.server.unpullable:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
        resp = httpx.request(
            self.command, self.server.upstream + self.path, headers=headers, content=body
        )
        self.send_response(resp.status_code)
        for key, value in resp.headers.items():
            if key.lower() not in _HOP:
                self.send_header(key, value)
        size = resp.headers.get("content-length", "0") if self.command == "HEAD" else None
        self.send_header("Content-Length", size or str(len(resp.content)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(resp.content)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _forward


@dataclass
class FleetApp:
    """The app, its fleet environment, the blocks and the repo of this module."""

    fleet: Fleet4
    registry: LocalRegistry
    gate: PullGate
    bare: Path
    app: str
    namespace: str
    tag_ids: dict[str, str] = field(default_factory=dict)

    @property
    def image(self) -> str:
        return f"{self.gate.host}/fleet/api"

    @property
    def options(self) -> DeliverOptions:
        return DeliverOptions(
            gitops_block=f"{self.app}-gitops",
            cluster_block=f"{self.app}-canary",  # loaded by deliver, unused by a fleet
            registry_block=None,
            docker_block=None,
            scan=False,
        )

    def push(self, tag: str) -> str:
        digest = self.registry.push_image("fleet/api", tag)
        self.tag_ids[tag] = digest
        return digest

    def catalog(self, waves: list[dict[str, Any]], rollback: str = "wave") -> None:
        dev = {  # one cluster (the options' cluster block: the canary's simulator)
            "name": "dev",
            "path": "envs/dev/api",
            "namespace": f"dev-{self.namespace}",
            "verify": {"workloads": ["deployment/api"], "timeout_seconds": 20},
        }
        doc = {
            "apiVersion": "shipyard.dev/v1",
            "apps": [
                {
                    "name": self.app,
                    "image": self.image,
                    "environments": [
                        dev,
                        {
                            "name": "prod",
                            "path": "envs/prod/api",
                            "namespace": self.namespace,
                            "fleet": {
                                "selector": {"matchLabels": {"fleet": self.app}},
                                "waves": waves,
                                "rollback": rollback,
                            },
                            "verify": {"workloads": ["deployment/api"], "timeout_seconds": 20},
                        },
                    ],
                }
            ],
        }
        _publish(self.bare, {"shipyard-catalog.yaml": yaml.safe_dump(doc)}, "catalog", False)

    def deliver(self, tag: str, **kwargs: Any) -> Any:
        return deliver(
            app=self.app,
            environment="prod",
            tag=tag,
            trigger="test",
            options=self.options,
            **kwargs,
        )

    def image_of(self, cluster: str) -> str:
        dep = self.fleet.kube(cluster).get(
            f"/apis/apps/v1/namespaces/{self.namespace}/deployments/api"
        )
        return "" if dep is None else str(dep["spec"]["template"]["spec"]["containers"][0]["image"])

    def generation(self, cluster: str) -> int | None:
        dep = self.fleet.kube(cluster).get(
            f"/apis/apps/v1/namespaces/{self.namespace}/deployments/api"
        )
        return None if dep is None else int(dep["metadata"]["generation"])

    def record(self, cluster: str) -> dict[str, str]:
        obj = self.fleet.kube(cluster).get(
            f"/api/v1/namespaces/{self.namespace}/configmaps/shipyard-fleet-{self.app}-prod"
        )
        return dict((obj or {}).get("data") or {})

    def log(self) -> list[str]:
        out = subprocess.run(
            ["git", "--git-dir", str(self.bare), "log", "--format=%H %s", "main"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return out.splitlines()


WAVES: list[dict[str, Any]] = [
    {"name": "canary", "selector": {"matchLabels": {"tier": "canary"}}},
    {"name": "eu", "selector": {"matchLabels": {"region": "eu"}}},
    {"name": "rest"},
]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetApp]:
    root = tmp_path_factory.mktemp("fleet-deliver")
    fleet = start_fleet4(root / "clusters")
    registry = start_registry()
    gate = PullGate(registry.url)
    threading.Thread(target=gate.serve_forever, daemon=True).start()
    try:
        app = f"api-{uuid.uuid4().hex[:6]}"
        bare = root / "gitops.git"
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
        handle = FleetApp(fleet, registry, gate, bare, app, fleet.namespace())
        handle.push("v1")
        manifest = deployment("api", None, f"{handle.image}:v1", replicas=2)
        text = yaml.safe_dump(manifest, sort_keys=False)
        files = {f"envs/{e}/api/deployment.yaml": text for e in ("dev", "prod")}
        fleet.kube("canary").request(
            "POST", "/api/v1/namespaces", {"metadata": {"name": f"dev-{handle.namespace}"}}
        )
        _publish(bare, files, "api: manifests", False)
        handle.catalog(WAVES)
        GitOpsRepository(url=str(bare)).save(f"{app}-gitops", overwrite=True)
        from tests.tasks.fleet_env import LABELS

        for name, labels in LABELS.items():
            KubernetesCluster(
                kubeconfig_path=str(fleet.kubeconfigs[name]), labels={**labels, "fleet": app}
            ).save(f"{app}-{name}", overwrite=True)
        yield handle
    finally:
        gate.shutdown()
        registry.stop()
        fleet.stop()


def wave_runs(api: str, parent: str) -> list[dict[str, Any]]:
    with httpx.Client(base_url=api, timeout=30) as client:
        children = client.post(
            "/flow_runs/filter",
            json={"flow_runs": {"parent_flow_run_id": {"any_": [parent]}}, "limit": 200},
        ).json()
    return sorted(
        (c for c in children if c["name"].startswith("wave-")), key=lambda c: c["start_time"]
    )


def table(api: str, app: str) -> dict[str, dict[str, str]]:
    """The latest wave table, by cluster (block names ``<app>-<cluster>``, prefix dropped)."""
    with httpx.Client(base_url=api, timeout=30) as client:
        [latest] = client.post(
            "/artifacts/latest/filter",
            json={"artifacts": {"key": {"any_": [f"fleet-{app}-prod"]}}, "limit": 1},
        ).json()
    data = latest["data"]
    rows = yaml.safe_load(data) if isinstance(data, str) else data
    return {str(r["cluster"]).removeprefix(f"{app}-"): r for r in rows}


def test_deliver_to_a_fleet_writes_once_then_goes_wave_by_wave(
    env: FleetApp, prefect_api: str
) -> None:
    digest = env.push("v2")
    before = env.log()
    record: Provenance = env.deliver("v2")
    after = env.log()
    assert len(after) == len(before) + 1  # one GitOps write for the whole fleet
    assert record.gitops_commit == after[0].split()[0] == record.synced_revision
    for name in ("canary", "eu-1", "eu-2", "us-1"):
        assert env.image_of(name).endswith(f"@{digest}"), name
        assert env.record(name)["verified-revision"] == record.gitops_commit
    waves = wave_runs(prefect_api, str(record.flow_run))
    assert [w["name"] for w in waves] == ["wave-canary", "wave-eu", "wave-rest"]
    assert all(w["state_type"] == "COMPLETED" for w in waves)
    rows = table(prefect_api, env.app)
    assert {r["status"] for r in rows.values()} == {"healthy"}
    canary_done = rows["canary"]["finished_at"]
    eu_done = max(rows["eu-1"]["finished_at"], rows["eu-2"]["finished_at"])
    assert rows["eu-1"]["started_at"] > canary_done and rows["eu-2"]["started_at"] > canary_done
    assert rows["us-1"]["started_at"] > eu_done


def test_an_unpullable_image_halts_at_the_canary_rolls_it_back_and_reverts_git(
    env: FleetApp, prefect_api: str
) -> None:
    good = env.push("v3")
    env.deliver("v3")
    bad = env.push("v4-bad")
    env.gate.unpullable.add(bad)
    untouched = {n: env.generation(n) for n in ("eu-1", "eu-2", "us-1")}
    before = env.log()
    state = env.deliver("v4-bad", return_state=True)
    assert state.is_failed()
    halted = f"rolled back: halted at wave canary: {env.app}-canary failed, {env.app}-eu-1 skipped"
    assert state.message.startswith(halted), state.message
    assert "ErrImagePull" in state.message  # why the canary failed
    with pytest.raises(RolledBackError):
        state.result()
    revert, written, *rest = env.log()
    assert rest == before and revert.split(" ", 1)[1].startswith('Revert "')
    assert env.image_of("canary").endswith(f"@{good}")  # back on what it ran before
    assert env.record("canary")["revision"] != written.split()[0]
    assert {n: env.generation(n) for n in untouched} == untouched  # later waves: same generation
    for name in untouched:
        assert env.image_of(name).endswith(f"@{good}")
    rows = table(prefect_api, env.app)
    assert rows["canary"]["status"] == "failed" and "rolled back to" in rows["canary"]["reason"]
    assert {rows[n]["status"] for n in untouched} == {"skipped"}
    assert all(rows[n]["started_at"] == "" for n in untouched)


def _in_thread(target: Any, **kwargs: Any) -> tuple[threading.Thread, dict[str, Any], str]:
    """Run ``target`` in a thread (Prefect context copied); its box and a run tag."""
    from prefect import tags

    box: dict[str, Any] = {}
    marker = f"fleet-test-{time.monotonic_ns()}"

    def run() -> None:
        try:
            with tags(marker):
                box["result"] = target(**kwargs)
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            box["error"] = exc

    thread = threading.Thread(target=contextvars.copy_context().run, args=(run,), daemon=True)
    thread.start()
    return thread, box, marker


def _run_with(api: str, marker: str, state: str | None = None, timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = httpx.post(
            f"{api}/flow_runs/filter",
            json={"flow_runs": {"tags": {"all_": [marker]}}, "limit": 5},
        ).json()
        top = [r for r in runs if r["parent_task_run_id"] is None]
        if top and (state is None or top[0]["state_type"] == state):
            return top[0]
        time.sleep(0.3)
    raise AssertionError(f"no run tagged {marker} in state {state}")


def _resume(api: str, run_id: str, answer: dict[str, str]) -> httpx.Response:
    """Answer a paused run's form; a busy server's 503 is retried, as a person would."""
    for _ in range(20):
        resp = httpx.post(
            f"{api}/flow_runs/{run_id}/resume", json={"run_input": answer}, timeout=30
        )
        if resp.status_code != 503:
            return resp
        time.sleep(1)
    return resp


@pytest.fixture(autouse=True)
def _no_rollout_left_waiting(env: FleetApp, prefect_api: str) -> Iterator[None]:
    """A test that fails while its rollout waits (for approval, or paused from the CLI)
    must not leave it holding the app's delivery slot for the next test: reject or
    resume whatever still waits."""
    yield
    runs = httpx.post(
        f"{prefect_api}/flow_runs/filter",
        json={"flow_runs": {"state": {"type": {"any_": ["PAUSED", "RUNNING"]}}}, "limit": 50},
        timeout=30,
    ).json()
    for run in runs:
        if not str(run["name"]).startswith(env.app):
            continue
        if run["state_type"] == "PAUSED":
            answer = {"decision": "reject", "approver": "test", "reason": "test cleanup"}
            _resume(prefect_api, run["id"], answer)
        elif run["parent_task_run_id"] is None:
            try:
                main(["fleet", "resume", "--run", run["id"], "--by", "test cleanup"])
            except SystemExit:
                pass  # no fleet controls: it is not waiting on them


def _wait_for(check: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError("condition never held")


def test_approval_between_waves_through_the_prefect_api(env: FleetApp, prefect_api: str) -> None:
    env.catalog([*WAVES[:2], {"name": "rest", "approve": True}])
    try:
        digest = env.push("v5")
        thread, box, marker = _in_thread(env.deliver, tag="v5")
        paused = _run_with(prefect_api, marker, "PAUSED")
        assert env.image_of("eu-1").endswith(f"@{digest}")
        assert not env.image_of("us-1").endswith(f"@{digest}")  # waits: nothing written yet
        answer = {"decision": "approve", "approver": "qa", "reason": "eu looks good"}
        resp = _resume(prefect_api, paused["id"], answer)
        assert resp.status_code < 300 and resp.json()["status"] == "ACCEPT", resp.text
        thread.join(120)
    finally:
        env.catalog(WAVES)
    assert "error" not in box, box
    assert env.image_of("us-1").endswith(f"@{digest}")


def test_a_rejected_wave_undoes_the_earlier_waves_and_reverts_git(
    env: FleetApp, prefect_api: str
) -> None:
    env.catalog([*WAVES[:2], {"name": "rest", "approve": True}])
    try:
        previous = env.image_of("eu-1")
        env.push("v7")
        before = env.log()
        thread, box, marker = _in_thread(env.deliver, tag="v7", return_state=True)
        paused = _run_with(prefect_api, marker, "PAUSED")
        answer = {"decision": "reject", "approver": "qa", "reason": "error budget spent"}
        resp = _resume(prefect_api, paused["id"], answer)
        assert resp.status_code < 300 and resp.json()["status"] == "ACCEPT", resp.text
        thread.join(120)
    finally:
        env.catalog(WAVES)
    state = box["result"]
    assert state.is_failed() and state.message.startswith("rolled back: halted at wave rest")
    assert "error budget spent" in state.message
    _catalog_restored, revert, _written, *rest = env.log()
    assert rest == before and revert.split(" ", 1)[1].startswith('Revert "')
    for name in ("canary", "eu-1", "eu-2", "us-1"):  # every cluster back where it was
        assert env.image_of(name) == previous, name
    rows = table(prefect_api, env.app)
    assert {rows[n]["status"] for n in ("canary", "eu-1", "eu-2")} == {"rolled-back"}
    assert rows["us-1"]["status"] == "skipped"


def test_pause_skip_and_resume_from_the_cli(
    env: FleetApp, prefect_api: str, capsys: pytest.CaptureFixture[str]
) -> None:
    env.catalog([{**WAVES[0], "bake_seconds": 3}, *WAVES[1:]])
    try:
        digest = env.push("v6")
        us_generation = env.generation("us-1")
        thread, box, marker = _in_thread(env.deliver, tag="v6")
        run = _run_with(prefect_api, marker)
        _wait_for(lambda: env.image_of("canary").endswith(f"@{digest}"))
        for args in (["pause"], ["skip", "--cluster", f"{env.app}-us-1"]):
            with pytest.raises(SystemExit) as exc:
                main(["fleet", *args, "--run", run["id"], "--by", "qa"])
            assert exc.value.code in (0, None), capsys.readouterr()
        out = capsys.readouterr().out
        assert "paused" in out and f"{env.app}-us-1 will be skipped" in out
        time.sleep(6)  # past the bake: the rollout waits, nothing written to the next wave
        assert not env.image_of("eu-1").endswith(f"@{digest}")
        assert thread.is_alive()
        resumed = time.time()
        with pytest.raises(SystemExit) as exc:
            main(["fleet", "resume", "--run", run["id"], "--by", "qa"])
        assert exc.value.code in (0, None)
        thread.join(120)
    finally:
        env.catalog(WAVES)
    assert "error" not in box, box
    assert env.image_of("eu-1").endswith(f"@{digest}")
    assert env.generation("us-1") == us_generation  # skipped: never written
    rows = table(prefect_api, env.app)
    assert (rows["us-1"]["status"], rows["us-1"]["reason"]) == ("skipped", "skipped by qa")
    assert rows["eu-1"]["status"] == "healthy"
    from datetime import datetime

    assert datetime.fromisoformat(rows["eu-1"]["started_at"]).timestamp() >= resumed - 1
    with pytest.raises(SystemExit) as exc:  # the run ended: its controls are gone
        main(["fleet", "pause", "--run", run["id"]])
    assert exc.value.code == 2
    assert "has no fleet controls" in capsys.readouterr().err


def test_promote_to_a_fleet_environment_goes_through_the_waves(
    env: FleetApp, prefect_api: str
) -> None:
    from flows.promote import promote

    digest = env.push("v8")
    dev = deliver(app=env.app, environment="dev", tag="v8", trigger="test", options=env.options)
    assert isinstance(dev, Provenance)
    assert dev.environment == "dev" and dev.digest == digest
    assert not env.image_of("us-1").endswith(f"@{digest}")
    record = promote(
        app=env.app, from_environment="dev", to_environment="prod", options=env.options
    )
    assert isinstance(record, Provenance)
    assert record.environment == "prod" and record.digest == digest
    for name in ("canary", "eu-1", "eu-2", "us-1"):
        assert env.image_of(name).endswith(f"@{digest}"), name
        assert env.record(name)["verified-revision"] == record.gitops_commit
    waves = wave_runs(prefect_api, str(record.flow_run))
    assert [w["name"] for w in waves] == ["wave-canary", "wave-eu", "wave-rest"]
