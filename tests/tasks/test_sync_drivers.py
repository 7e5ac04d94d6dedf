"""All sync drivers against the simulator and its Argo CD-like / Flux-like operators."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from shipyard.core.errors import ConfigError, PermanentError
from shipyard.core.kube import KubeClient
from tasks.sync.argocd import judge_application, operation_for
from tasks.sync.flux import judge_kustomization
from tasks.sync_app import SyncConfig, sync
from tasks.verify_rollout import VerifyConfig, watch_rollout
from tests.fakes.operators.testing import GitOpsOperators
from tests.fixtures.simcluster import SimClusterHandle
from tests.tasks.fake_argocd import FakeArgoCD
from tests.tasks.k8s_objects import GitOpsRepo, kustomize_env

DRIVERS = ["apply", "argocd", "argocd-rest", "flux"]
TOKEN = "s3cr3t-argocd-token"


@pytest.fixture
def gitops(tmp_path: Path) -> GitOpsRepo:
    return GitOpsRepo(tmp_path)


@pytest.fixture
def fake_argocd(sim_cluster: SimClusterHandle) -> Iterator[FakeArgoCD]:
    fake = FakeArgoCD(KubeClient(sim_cluster.api_client()), TOKEN).start()
    try:
        yield fake
    finally:
        fake.stop()


def driver_config(
    driver: str,
    ns: str,
    gitops: GitOpsRepo,
    ops: GitOpsOperators,
    fake: FakeArgoCD,
    revision: str | None,
) -> SyncConfig:
    """Declare the app for ``driver`` (Application / Kustomization) and its SyncConfig."""
    common = {"revision": revision, "timeout_seconds": 20}
    if driver == "apply":
        return SyncConfig(
            driver="apply", repo=gitops.url, path="envs/dev", namespace=ns, app="web", **common
        )
    if driver in ("argocd", "argocd-rest"):
        ops.application(ns, "web", gitops.url, "envs/dev", ns)
        extra = (
            {"argocd_url": fake.url, "argocd_token": SecretStr(TOKEN)}
            if driver == "argocd-rest"
            else {}
        )
        return SyncConfig(
            driver=driver,
            application="web",
            application_namespace=ns,
            wait_healthy=False,
            **extra,
            **common,
        )
    ops.kustomization(ns, "web", gitops.url, "envs/dev", ns)
    return SyncConfig(driver="flux", kustomization="web", flux_namespace=ns, **common)


@pytest.mark.parametrize("driver", DRIVERS)
def test_every_driver_syncs_the_commit_and_prunes(
    driver: str,
    sim_cluster: SimClusterHandle,
    sim_namespace: str,
    gitops: GitOpsRepo,
    gitops_operators: GitOpsOperators,
    fake_argocd: FakeArgoCD,
) -> None:
    v1 = gitops.commit(kustomize_env("shop/web", "1"), "v1")
    cfg = driver_config(driver, sim_namespace, gitops, gitops_operators, fake_argocd, v1)
    kube = KubeClient(sim_cluster.api_client())
    result = sync(cfg, sim_cluster.api_client())
    assert result.revision == v1
    dep = kube.get(f"/apis/apps/v1/namespaces/{sim_namespace}/deployments/web") or {}
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "shop/web:1"
    assert kube.get(f"/api/v1/namespaces/{sim_namespace}/configmaps/web-config") is not None
    assert watch_rollout(
        kube, VerifyConfig(namespace=sim_namespace, workload="deployment/web", timeout_seconds=20)
    ).healthy

    v2 = gitops.commit(kustomize_env("shop/web", "2", extra=False), "v2")
    result = sync(cfg.model_copy(update={"revision": v2}), sim_cluster.api_client())
    assert result.revision == v2
    dep = kube.get(f"/apis/apps/v1/namespaces/{sim_namespace}/deployments/web") or {}
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "shop/web:2"
    assert kube.get(f"/api/v1/namespaces/{sim_namespace}/configmaps/web-config") is None


@pytest.mark.parametrize("driver", ["argocd", "argocd-rest"])
def test_argocd_waits_for_healthy_and_reports_it(
    driver: str,
    sim_cluster: SimClusterHandle,
    sim_namespace: str,
    gitops: GitOpsRepo,
    gitops_operators: GitOpsOperators,
    fake_argocd: FakeArgoCD,
) -> None:
    v1 = gitops.commit(kustomize_env("shop/web", "1"), "v1")
    cfg = driver_config(driver, sim_namespace, gitops, gitops_operators, fake_argocd, v1)
    result = sync(cfg.model_copy(update={"wait_healthy": True}), sim_cluster.api_client())
    assert result.health == "Healthy"
    assert "Deployment/web" in result.applied


def test_argocd_another_operation_in_progress_is_waited_out(
    sim_cluster: SimClusterHandle,
    sim_namespace: str,
    gitops: GitOpsRepo,
    gitops_operators: GitOpsOperators,
    fake_argocd: FakeArgoCD,
) -> None:
    v1 = gitops.commit(kustomize_env("shop/web", "1"), "v1")
    cfg = driver_config("argocd", sim_namespace, gitops, gitops_operators, fake_argocd, v1)
    kube = KubeClient(sim_cluster.api_client())
    path = f"/apis/argoproj.io/v1alpha1/namespaces/{sim_namespace}/applications/web"
    gitops_operators.argocd.sync_delay = 0.5
    try:
        kube.merge_patch(path, {"operation": operation_for(v1, "someone-else")})
        result = sync(cfg, sim_cluster.api_client())
    finally:
        gitops_operators.argocd.sync_delay = 0.0
    assert result.revision == v1
    app = kube.get(path) or {}
    infos = app["status"]["operationState"]["operation"]["info"]
    assert infos[0]["value"] != "someone-else"  # our own operation ran after theirs


def test_argocd_rest_rejects_a_bad_token(
    sim_namespace: str,
    gitops: GitOpsRepo,
    gitops_operators: GitOpsOperators,
    fake_argocd: FakeArgoCD,
) -> None:
    v1 = gitops.commit(kustomize_env("shop/web", "1"), "v1")
    cfg = driver_config("argocd-rest", sim_namespace, gitops, gitops_operators, fake_argocd, v1)
    with pytest.raises(PermanentError, match="401"):
        sync(cfg.model_copy(update={"argocd_token": SecretStr("wrong")}))


@pytest.mark.parametrize("driver", ["argocd", "flux"])
def test_operator_reports_a_bad_revision(
    driver: str,
    sim_cluster: SimClusterHandle,
    sim_namespace: str,
    gitops: GitOpsRepo,
    gitops_operators: GitOpsOperators,
    fake_argocd: FakeArgoCD,
) -> None:
    gitops.commit(kustomize_env("shop/web", "1"), "v1")
    cfg = driver_config(driver, sim_namespace, gitops, gitops_operators, fake_argocd, "0" * 40)
    with pytest.raises(PermanentError):
        sync(cfg.model_copy(update={"timeout_seconds": 3}), sim_cluster.api_client())


def test_missing_objects_are_config_errors(
    sim_cluster: SimClusterHandle, sim_namespace: str, gitops_operators: GitOpsOperators
) -> None:
    for cfg in (
        SyncConfig(driver="argocd", application="nope", application_namespace=sim_namespace),
        SyncConfig(driver="flux", kustomization="nope", flux_namespace=sim_namespace),
    ):
        with pytest.raises(ConfigError, match="does not exist"):
            sync(cfg, sim_cluster.api_client())


@pytest.mark.parametrize("kind", ["429", "500", "drop"])
@pytest.mark.parametrize("driver", ["argocd", "flux"])
def test_api_faults_during_operator_sync_are_retried(
    kind: str,
    driver: str,
    sim_cluster: SimClusterHandle,
    sim_namespace: str,
    gitops: GitOpsRepo,
    gitops_operators: GitOpsOperators,
    fake_argocd: FakeArgoCD,
) -> None:
    v1 = gitops.commit(kustomize_env("shop/web", "1"), "v1")
    cfg = driver_config(driver, sim_namespace, gitops, gitops_operators, fake_argocd, v1)
    for verb in ("get", "patch", "list", "watch"):
        sim_cluster.faults.add(kind=kind, verb=verb, count=2, namespace=sim_namespace)
    assert sync(cfg, sim_cluster.api_client()).revision == v1


# --- pure judges -------------------------------------------------------------------------


def _app(
    phase: str, revision: str, health: str, sync_id: str = "me", operation: bool = False
) -> dict[str, object]:
    return {
        **({"operation": {"sync": {}}} if operation else {}),
        "status": {
            "operationState": {
                "phase": phase,
                "message": "m",
                "operation": {"info": [{"name": "shipyard-sync-id", "value": sync_id}]},
                "syncResult": {"revision": revision},
            },
            "sync": {"status": "Synced", "revision": revision},
            "health": {"status": health, "message": "deadline"},
        },
    }


def test_judge_application() -> None:
    sha = "a" * 40
    assert (
        judge_application(
            _app("Succeeded", sha, "Progressing", sync_id="other"), sha, "me", wait_healthy=False
        )
        is None
    )
    assert (
        judge_application(_app("Running", sha, "Progressing"), sha, "me", wait_healthy=False)
        is None
    )
    assert (
        judge_application(
            _app("Succeeded", sha, "Progressing", operation=True), sha, "me", wait_healthy=False
        )
        is None
    )
    ok = judge_application(_app("Succeeded", sha, "Progressing"), sha, "me", wait_healthy=False)
    assert ok is not None and ok.ok
    assert (
        judge_application(_app("Succeeded", sha, "Progressing"), sha, "me", wait_healthy=True)
        is None
    )
    failed = judge_application(_app("Failed", sha, "Healthy"), sha, "me", wait_healthy=True)
    assert failed is not None and not failed.ok and "sync failed" in failed.message
    degraded = judge_application(
        _app("Succeeded", sha, "Degraded"), sha, "me", wait_healthy=True, seen_healthy=True
    )
    assert degraded is not None and "regressed from Healthy to Degraded" in degraded.message
    other = judge_application(_app("Succeeded", "b" * 40, "Healthy"), sha, "me", wait_healthy=True)
    assert other is not None and not other.ok


def test_judge_kustomization() -> None:
    sha = "c" * 40
    ks = {
        "status": {
            "lastHandledReconcileAt": "t1",
            "lastAppliedRevision": f"main@sha1:{sha}",
            "lastAttemptedRevision": f"main@sha1:{sha}",
            "conditions": [{"type": "Ready", "status": "True", "message": "Applied"}],
        }
    }
    assert judge_kustomization(ks, "t0", sha) is None
    verdict = judge_kustomization(ks, "t1", sha[:12])
    assert verdict is not None and verdict.ok
    assert judge_kustomization(ks, "t1", "d" * 40) is None
    ks["status"]["conditions"] = [
        {"type": "Ready", "status": "False", "reason": "ReconciliationFailed", "message": "boom"}
    ]
    failed = judge_kustomization(ks, "t1", sha)
    assert failed is not None and not failed.ok and "boom" in failed.message


@pytest.mark.parametrize("driver", ["argocd", "argocd-rest", "flux"])
def test_cli_sync_with_operator_drivers(
    driver: str,
    sim_cluster: SimClusterHandle,
    sim_namespace: str,
    gitops: GitOpsRepo,
    gitops_operators: GitOpsOperators,
    fake_argocd: FakeArgoCD,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import json

    from shipyard.cli.main import main

    v1 = gitops.commit(kustomize_env("shop/web", "1"), "v1")
    driver_config(driver, sim_namespace, gitops, gitops_operators, fake_argocd, v1)
    args = ["sync", "--kubeconfig", str(sim_cluster.kubeconfig), "--revision", v1, "--json"]
    if driver == "flux":
        args += ["--driver", "flux", "--kustomization", "web", "--flux-namespace", sim_namespace]
    else:
        args += [
            "--driver",
            "argocd",
            "--application",
            "web",
            "--application-namespace",
            sim_namespace,
        ]
    if driver == "argocd-rest":
        monkeypatch.setenv("ARGOCD_AUTH_TOKEN", TOKEN)
        args += ["--argocd-url", fake_argocd.url]
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    assert code == 0, err
    doc = json.loads(out)
    assert doc["revision"] == v1 and doc["driver"] == ("flux" if driver == "flux" else "argocd")
