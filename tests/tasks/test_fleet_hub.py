"""Argo CD hub mode of `shipyard fleet rollout`: one Application per cluster in a hub
cluster (its own simulator), the simulated Argo CD deploying each to its member (four
more simulators): wave by wave, REV verified (never a stale status), a bad canary rolled
back through its Application while later waves' Applications stay untouched, resume."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from shipyard.cli.main import main
from shipyard.core.errors import ConfigError
from shipyard.core.kube import KubeClient
from tasks.fleet.config import load_fleet, plan_rollout
from tasks.fleet.hub import PREVIOUS_REVISION, PREVIOUS_TARGET, VERIFIED, judge_synced
from tests.fakes.operators.argocd_hub import HubArgoCD
from tests.fakes.operators.crds import install_crds
from tests.fixtures.simcluster import SimClusterHandle, start_sim_cluster
from tests.tasks.fleet_env import BAD, GOOD, Fleet4, all_images, start_fleet4

APP_PATH = "/apis/argoproj.io/v1alpha1/namespaces/{ns}/applications/api-{cluster}"
WAVES: list[dict[str, Any]] = [
    {"name": "canary", "selector": {"matchLabels": {"tier": "canary"}}},
    {"name": "eu", "selector": {"matchLabels": {"region": "eu"}}},
    {"name": "rest"},
]


# -- the pure judgement --------------------------------------------------------------


def application(
    revision: str = "a" * 40,
    *,
    phase: str = "Succeeded",
    finished: str = "2030-01-01T00:00:10Z",
    health: str = "Healthy",
    operation: bool = False,
) -> dict[str, Any]:
    return {
        **({"operation": {"sync": {}}} if operation else {}),
        "status": {
            "operationState": {
                "phase": phase,
                "finishedAt": finished,
                "syncResult": {"revision": revision},
            },
            "sync": {"status": "Synced", "revision": revision},
            "health": {"status": health},
        },
    }


def test_judge_synced_never_trusts_a_stale_status() -> None:
    rev = "a" * 40
    since = datetime(2030, 1, 1, 0, 0, 10, 500000, tzinfo=UTC)
    assert judge_synced(application(), rev, since) is None  # same second: Argo's precision
    stale = judge_synced(application(), rev, since + timedelta(seconds=1))
    assert stale is not None and "stale" in stale
    assert "not bbbbbbbbbbbb" in str(judge_synced(application(), "b" * 40))
    assert "in progress" in str(judge_synced(application(operation=True), rev))
    assert "Failed" in str(judge_synced(application(phase="Failed"), rev))
    assert "Progressing" in str(judge_synced(application(health="Progressing"), rev))
    assert judge_synced(None, rev) == "the Application does not exist"


# -- the fleet file ------------------------------------------------------------------


def _doc(hub: dict[str, Any], driver: str = "argocd", application: str = "{app}-{cluster}") -> Any:
    return {
        "apiVersion": "shipyard.dev/v1",
        "kind": "Fleet",
        "metadata": {"name": "hubbed"},
        "clusters": [{"name": "c1", "kubeconfig": "kc"}],
        "rollout": {
            "path": "envs/{cluster}/api",
            "namespace": "shop",
            "sync": {"driver": driver, "application": application, "hub": hub},
            "verify": {"workloads": ["deployment/api"]},
            "waves": [{"name": "all"}],
        },
    }


def test_hub_fields_are_checked(tmp_path: Path) -> None:
    file = tmp_path / "fleet.yaml"
    file.write_text(yaml.safe_dump(_doc({"kubeconfig": "hub-kc", "namespace": "argocd"})))
    fleet = load_fleet(file)
    assert fleet.rollout.sync.hub is not None and fleet.rollout.sync.hub.namespace == "argocd"
    for doc, message in (
        (_doc({"kubeconfig": "k"}, driver="flux"), "needs"),
        (_doc({"kubeconfig": "k"}, application="one-app"), "must contain {cluster}"),
        (_doc({"namespace": "argocd"}), "kubeconfig"),
    ):
        file.write_text(yaml.safe_dump(doc))
        with pytest.raises(ConfigError, match=message):
            load_fleet(file)
    # the hub's kubeconfig must be a file, relative to the fleet file
    (tmp_path / "kc").write_text("x")
    subprocess_git(tmp_path)
    file.write_text(yaml.safe_dump(_doc({"kubeconfig": "hub-kc"})))
    with pytest.raises(ConfigError, match=r"sync\.hub: kubeconfig hub-kc is not a file"):
        plan_rollout(file, str(tmp_path), "HEAD")
    (tmp_path / "hub-kc").write_text("x")
    with pytest.raises(ConfigError, match="does not exist at"):  # past the hub check
        plan_rollout(file, str(tmp_path), "HEAD")


def subprocess_git(root: Path) -> None:
    from tests.tasks.fleet_env import git

    git("init", "-q", "-b", "main", str(root), cwd=root)
    git("commit", "-q", "--allow-empty", "-m", "empty", cwd=root)


# -- on simulated clusters -----------------------------------------------------------


class Hub:
    """Four member clusters, a hub cluster and the simulated Argo CD in the hub."""

    def __init__(self, fleet: Fleet4, hub: SimClusterHandle, argocd: HubArgoCD) -> None:
        self.fleet, self.hub, self.argocd = fleet, hub, argocd
        self.kube = KubeClient(hub.api_client())

    def setup(self) -> str:
        """A fresh namespace in every member and in the hub; one Application per member."""
        ns = self.fleet.namespace()
        self.kube.request("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
        resource = self.kube.resource("argoproj.io/v1alpha1", "Application")
        for name in self.fleet.sims:
            app = {
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "Application",
                "metadata": {"name": f"api-{name}", "namespace": ns},
                "spec": {
                    "project": "default",
                    "source": {
                        "repoURL": str(self.fleet.repo.root),
                        "path": f"envs/{name}/api",
                        "targetRevision": "main",
                    },
                    "destination": {"name": name, "namespace": ns},
                },
            }
            self.kube.apply(resource, app, "test")
        return ns

    def fleet_file(self, ns: str) -> Path:
        path = self.fleet.fleet_file(ns, WAVES, timeout=15)
        doc = yaml.safe_load(path.read_text())
        doc["rollout"]["sync"] = {
            "driver": "argocd",
            "application": "{app}-{cluster}",
            "hub": {"kubeconfig": str(self.hub.kubeconfig), "namespace": ns},
        }
        path.write_text(yaml.safe_dump(doc))
        return path

    def application(self, ns: str, cluster: str) -> dict[str, Any]:
        app = self.kube.get(APP_PATH.format(ns=ns, cluster=cluster))
        assert app is not None
        return app


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    fleet = start_fleet4(tmp_path_factory.mktemp("hub-fleet"))
    handle = start_sim_cluster(tmp_path_factory.mktemp("hub"))
    argocd = None
    try:
        install_crds(KubeClient(handle.api_client()))
        members = {name: sim.api_client() for name, sim in fleet.sims.items()}
        argocd = HubArgoCD(handle.api_client(), members, poll_seconds=0.3).start()
        yield Hub(fleet, handle, argocd)
    finally:
        if argocd is not None:
            argocd.stop()
        handle.cluster.stop()
        fleet.stop()


@pytest.fixture(autouse=True)
def _no_prefect(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("SHIPYARD_STATE_DIR", str(tmp_path / "no-stack"))


def rollout(
    capsys: pytest.CaptureFixture[str], fleet_file: Path, repo: Path, rev: str
) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    args = ["fleet", "rollout", "--fleet", str(fleet_file), "--repo-dir", str(repo)]
    with pytest.raises(SystemExit) as exc:
        main([*args, "--revision", rev, "--json"])
    return int(exc.value.code or 0), json.loads(capsys.readouterr().out)


def statuses(report: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["status"] for w in report["waves"] for c in w["clusters"]}


def image(kube: KubeClient, ns: str) -> str:
    dep = kube.get(f"/apis/apps/v1/namespaces/{ns}/deployments/api")
    assert dep is not None
    return str(dep["spec"]["template"]["spec"]["containers"][0]["image"])


@pytest.mark.slow
def test_hub_rollout_waves_halt_rollback_and_resume(
    hub: Hub, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet, root = hub.fleet, hub.fleet.repo.root
    ns = hub.setup()
    fleet_file = hub.fleet_file(ns)
    rev1 = fleet.repo.commit(all_images(1), "v1")

    code, report = rollout(capsys, fleet_file, root, rev1)
    assert code == 0, report
    assert set(statuses(report).values()) == {"healthy"}
    waves = {w["name"]: w["clusters"] for w in report["waves"]}
    assert max(c["finished_at"] for c in waves["canary"]) <= min(
        c["started_at"] for c in waves["eu"]
    )
    assert max(c["finished_at"] for c in waves["eu"]) <= waves["rest"][0]["started_at"]
    for name in fleet.sims:
        app = hub.application(ns, name)
        assert app["spec"]["source"]["targetRevision"] == rev1
        assert app["status"]["sync"]["revision"] == rev1
        notes = app["metadata"]["annotations"]
        assert notes[PREVIOUS_TARGET] == "main" and notes[VERIFIED] == rev1
        assert image(fleet.kube(name), ns) == GOOD.format(n=1)

    # a bad canary: halted there, rolled back through its Application; later waves untouched
    before = {
        n: (
            hub.application(ns, n)["spec"]["source"]["targetRevision"],
            hub.application(ns, n)["status"]["operationState"]["startedAt"],
            fleet.deployment(n, ns)["metadata"]["generation"],
        )
        for n in ("eu-1", "eu-2", "us-1")
    }
    rev2 = fleet.repo.commit({**all_images(2), "canary": BAD}, "v2, bad canary")
    code, report = rollout(capsys, fleet_file, root, rev2)
    assert code == 1 and report["halted_at"] == "canary"
    assert statuses(report) == {
        "canary": "failed",
        "eu-1": "skipped",
        "eu-2": "skipped",
        "us-1": "skipped",
    }
    canary = report["waves"][0]["clusters"][0]
    assert f"rolled back to {rev1[:12]}" in canary["reason"], canary
    app = hub.application(ns, "canary")
    assert app["spec"]["source"]["targetRevision"] == rev1
    assert app["status"]["sync"]["revision"] == rev1
    assert PREVIOUS_REVISION not in (app["metadata"].get("annotations") or {})
    assert image(fleet.kube("canary"), ns) == GOOD.format(n=1)
    for n, was in before.items():
        now = hub.application(ns, n)
        assert (
            now["spec"]["source"]["targetRevision"],
            now["status"]["operationState"]["startedAt"],
            fleet.deployment(n, ns)["metadata"]["generation"],
        ) == was

    # resume: what is verified at REV is left alone
    code, report = rollout(capsys, fleet_file, root, rev1)
    assert code == 0, report
    assert set(statuses(report).values()) == {"unchanged"}

    # drift-check of the same fleet at rev1 (the tip is rev2): what Argo CD applied,
    # labelled with each Application, matches git
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["drift-check", "--fleet", str(fleet_file), "--repo", str(root), "--revision", rev1])
    out = capsys.readouterr().out
    assert exc.value.code in (0, None), out
    assert out.count(" clean ") == 4, out


@pytest.mark.slow
def test_hub_missing_application_and_unreachable_hub(
    hub: Hub, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    fleet, root = hub.fleet, hub.fleet.repo.root
    ns = hub.setup()
    rev = fleet.repo.commit(all_images(3), "v3")
    fleet_file = hub.fleet_file(ns)
    doc = yaml.safe_load(fleet_file.read_text())
    doc["rollout"]["sync"]["application"] = "nope-{cluster}"
    fleet_file.write_text(yaml.safe_dump(doc))
    code, report = rollout(capsys, fleet_file, root, rev)
    assert code == 1 and report["halted_at"] == "canary"
    canary = report["waves"][0]["clusters"][0]
    assert canary["status"] == "failed"
    assert "Application nope-canary does not exist in the hub" in canary["reason"]

    dead = tmp_path / "dead-hub"
    dead.write_text(hub.hub.kubeconfig.read_text().replace(hub.hub.url, "http://127.0.0.1:9"))
    doc["rollout"]["sync"]["application"] = "{app}-{cluster}"
    doc["rollout"]["sync"]["hub"]["kubeconfig"] = str(dead)
    fleet_file.write_text(yaml.safe_dump(doc))
    code, report = rollout(capsys, fleet_file, root, rev)
    assert code == 1 and statuses(report)["canary"] == "unreachable"
    assert "Argo CD hub unreachable" in report["waves"][0]["clusters"][0]["reason"]
    assert hub.application(ns, "canary")["spec"]["source"]["targetRevision"] == "main"
