"""sync_and_verify against the simulator, a real git remote and a real Prefect server."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from blocks.cluster import KubernetesCluster
from blocks.gitops import GitOpsRepository
from flows.sync_verify import RollbackFailedError, RolledBackError, VerifyPlan, sync_and_verify
from shipyard.core.errors import PolicyError
from shipyard.core.kube import KubeClient
from tasks.sync_app import SyncConfig, sync
from tasks.verify_rollout import VerifyConfig, watch_rollout
from tests.fakes.operators.testing import GitOpsOperators
from tests.fixtures.simcluster import LocalRegistry, SimClusterHandle
from tests.tasks.gitops_repo import fast_forward_only
from tests.tasks.k8s_objects import GitOpsRepo, kustomize_env

DRIVERS = ["apply", "argocd", "flux"]
pytestmark = [pytest.mark.usefixtures("prefect_api"), pytest.mark.slow]


@pytest.fixture
def gitops(tmp_path: Path) -> GitOpsRepo:
    return GitOpsRepo(tmp_path)


def _image(sim: SimClusterHandle, ns: str) -> str:
    dep = KubeClient(sim.api_client()).get(f"/apis/apps/v1/namespaces/{ns}/deployments/web") or {}
    return str(dep["spec"]["template"]["spec"]["containers"][0]["image"])


def _setup(
    sim: SimClusterHandle,
    ns: str,
    gitops: GitOpsRepo,
    registry: LocalRegistry,
    driver: str = "apply",
    ops: GitOpsOperators | None = None,
) -> tuple[str, str, SyncConfig]:
    """v1 deployed (with ``driver``) and healthy; returns (image repo, v1 sha, sync config)."""
    image = f"{registry.host}/{ns}/web"  # a repo per test: the kubelet caches tags
    registry.push_image(f"{ns}/web", "1")
    v1 = gitops.commit(kustomize_env(image, "1"), "web: v1")
    if driver == "apply":
        cfg = SyncConfig(driver="apply", repo=gitops.url, path="envs/dev", namespace=ns, app="web")
    elif driver == "argocd":
        assert ops is not None
        ops.application(ns, "web", gitops.url, "envs/dev", ns)
        cfg = SyncConfig(
            driver="argocd", application="web", application_namespace=ns, wait_healthy=False
        )
    else:
        assert ops is not None
        ops.kustomization(ns, "web", gitops.url, "envs/dev", ns)
        cfg = SyncConfig(driver="flux", kustomization="web", flux_namespace=ns)
    sync(cfg.model_copy(update={"revision": v1}), sim.api_client())
    kube = KubeClient(sim.api_client())
    assert watch_rollout(
        kube, VerifyConfig(namespace=ns, workload="deployment/web", timeout_seconds=20)
    ).healthy
    return image, v1, cfg


def _run(
    sim: SimClusterHandle,
    gitops: GitOpsRepo,
    commit: str,
    cfg: SyncConfig,
    ns: str,
    *,
    digest: str | None = None,
    repo_url: str | None = None,
) -> Any:
    plan = VerifyPlan(
        workloads=[
            VerifyConfig(namespace=ns, workload="deployment/web", digest=digest, timeout_seconds=20)
        ]
    )
    return sync_and_verify(
        KubernetesCluster(kubeconfig_path=str(sim.kubeconfig)),
        GitOpsRepository(url=repo_url or gitops.url),
        commit,
        cfg,
        plan,
        app="web",
        environment="dev",
    )


@pytest.mark.parametrize("driver", DRIVERS)
def test_good_image_rolls_out_and_verifies(
    sim_cluster: SimClusterHandle,
    sim_namespace: str,
    gitops: GitOpsRepo,
    oci_registry: LocalRegistry,
    gitops_operators: GitOpsOperators,
    driver: str,
) -> None:
    image, _, cfg = _setup(
        sim_cluster, sim_namespace, gitops, oci_registry, driver, gitops_operators
    )
    digest = oci_registry.push_image(f"{sim_namespace}/web", "2")
    v2 = gitops.commit(kustomize_env(image, "2"), "web: v2")
    outcome = _run(sim_cluster, gitops, v2, cfg, sim_namespace, digest=digest)
    assert outcome.commit == v2 and outcome.verified[0].healthy
    assert _image(sim_cluster, sim_namespace) == f"{image}:2"
    assert gitops.subjects()[0] == "web: v2"


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize(
    ("crash", "reasons"),
    [(False, ("ErrImagePull", "ImagePullBackOff")), (True, ("CrashLoopBackOff",))],
    ids=["missing-image", "crash-loop"],
)
def test_bad_version_is_rolled_back(
    sim_cluster: SimClusterHandle,
    sim_namespace: str,
    gitops: GitOpsRepo,
    oci_registry: LocalRegistry,
    gitops_operators: GitOpsOperators,
    crash: bool,
    reasons: tuple[str, ...],
    driver: str,
) -> None:
    image, _, cfg = _setup(
        sim_cluster, sim_namespace, gitops, oci_registry, driver, gitops_operators
    )
    if crash:
        oci_registry.push_image(f"{sim_namespace}/web", "3")
    bad = gitops.commit(kustomize_env(image, "3", crash=crash), "web: v3")
    started = time.monotonic()
    with pytest.raises(RolledBackError) as info:
        _run(sim_cluster, gitops, bad, cfg, sim_namespace)
    assert any(r in str(info.value) for r in reasons), info.value
    assert str(info.value).startswith("rolled back: ")
    assert isinstance(info.value.__cause__, PolicyError)  # the original reason, kept
    assert (info.value.commit, info.value.revert_commit) == (bad, gitops.tip())
    assert time.monotonic() - started < 30
    assert gitops.subjects()[:2] == ['Revert "web: v3"', "web: v3"]
    assert fast_forward_only(gitops.bare)
    assert _image(sim_cluster, sim_namespace) == f"{image}:1"
    kube = KubeClient(sim_cluster.api_client())
    assert watch_rollout(
        kube, VerifyConfig(namespace=sim_namespace, workload="deployment/web", timeout_seconds=10)
    ).healthy
    _wait_event("shipyard.delivery.rolled-back", bad)


def test_failed_rollback_is_loud(
    sim_cluster: SimClusterHandle,
    sim_namespace: str,
    gitops: GitOpsRepo,
    oci_registry: LocalRegistry,
    tmp_path: Path,
) -> None:
    image, _, cfg = _setup(sim_cluster, sim_namespace, gitops, oci_registry)
    bad = gitops.commit(kustomize_env(image, "4"), "web: v4 (missing)")
    elsewhere = GitOpsRepo(tmp_path / "elsewhere")
    elsewhere.commit({"x": "1"}, "unrelated")
    with pytest.raises(RollbackFailedError, match="rollback failed") as info:
        _run(sim_cluster, gitops, bad, cfg, sim_namespace, repo_url=elsewhere.url)
    assert info.value.commit == bad and info.value.rollback_error
    _wait_event("shipyard.delivery.rollback-failed", bad)


@pytest.mark.parametrize("kind", ["429", "500", "drop"])
def test_api_faults_do_not_change_the_outcome(
    sim_cluster: SimClusterHandle,
    sim_namespace: str,
    gitops: GitOpsRepo,
    oci_registry: LocalRegistry,
    kind: str,
) -> None:
    image, _, cfg = _setup(sim_cluster, sim_namespace, gitops, oci_registry)
    bad = gitops.commit(kustomize_env(image, "5", crash=True), "web: v5")
    oci_registry.push_image(f"{sim_namespace}/web", "5")
    for verb in ("patch", "list", "watch", "get"):
        sim_cluster.faults.add(kind=kind, verb=verb, count=2, namespace=sim_namespace)
    with pytest.raises(RolledBackError, match="CrashLoopBackOff"):
        _run(sim_cluster, gitops, bad, cfg, sim_namespace)
    assert gitops.subjects()[0] == 'Revert "web: v5"'
    assert _image(sim_cluster, sim_namespace) == f"{image}:1"


def _wait_event(name: str, commit: str, timeout: float = 15.0) -> None:
    from prefect.settings import PREFECT_API_URL

    url = str(PREFECT_API_URL.value()).rstrip("/")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        resp = httpx.post(
            f"{url}/events/filter", json={"filter": {"event": {"name": [name]}}, "limit": 50}
        )
        resp.raise_for_status()
        for event in resp.json().get("events") or []:
            if (event.get("payload") or {}).get("commit") == commit:
                return
        time.sleep(0.3)
    raise AssertionError(f"no {name} event for {commit}")


def test_a_later_failure_of_the_caller_reverts_the_commit(
    sim_cluster: SimClusterHandle,
    sim_namespace: str,
    gitops: GitOpsRepo,
    oci_registry: LocalRegistry,
) -> None:
    from prefect import flow
    from prefect.transactions import transaction

    image, _, cfg = _setup(sim_cluster, sim_namespace, gitops, oci_registry)
    oci_registry.push_image(f"{sim_namespace}/web", "6")
    good = gitops.commit(kustomize_env(image, "6"), "web: v6")

    @flow
    def deliver_then_fail() -> None:
        with transaction():
            _run(sim_cluster, gitops, good, cfg, sim_namespace)
            raise RuntimeError("a later step of the delivery failed")

    with pytest.raises(RuntimeError, match="later step"):
        deliver_then_fail()
    assert gitops.subjects()[:2] == ['Revert "web: v6"', "web: v6"]


def test_a_sync_failing_past_the_client_retries_leaves_git_and_cluster_agreeing(
    sim_cluster: SimClusterHandle,
    sim_namespace: str,
    gitops: GitOpsRepo,
    oci_registry: LocalRegistry,
) -> None:
    """A burst of 500s longer than the Kubernetes client's own retries fails the sync
    attempt. Whatever happens next, git and the cluster must end up agreeing: a Prefect
    task retry inside the transaction once reverted git and then applied the new version
    anyway (half-applied, reported delivered)."""
    image, _, cfg = _setup(sim_cluster, sim_namespace, gitops, oci_registry)
    digest = oci_registry.push_image(f"{sim_namespace}/web", "6")
    v6 = gitops.commit(kustomize_env(image, "6"), "web: v6")
    sim_cluster.faults.add(kind="500", verb="patch", count=8, namespace=sim_namespace)
    with pytest.raises(RolledBackError) as info:
        _run(sim_cluster, gitops, v6, cfg, sim_namespace, digest=digest)
    assert "500" in str(info.value)
    assert gitops.subjects()[0] == 'Revert "web: v6"'
    assert _image(sim_cluster, sim_namespace) == f"{image}:1"
