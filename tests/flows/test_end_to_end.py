"""The whole platform, end to end, on real services:

a push to the real registry -> its notification -> the bridge -> a Prefect event ->
the deliver deployment's trigger -> a flow run picked up by the Prefect Kubernetes
worker -> a Job in the cluster simulator whose process-backed pod runs `deliver` ->
digest pinned in the GitOps repo, applied and verified in the cluster.

Also through the worker: one digest pushed under two tags is one delivery (one run, one
GitOps commit, one rollout), and a `deliver` of a source commit (as the UI's custom run
form starts it) builds with the Docker host the flow pod gets from its block.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from shipyard.demo import content
from shipyard.demo import run as demo
from shipyard.demo.seed import _git
from tests.fixtures.services import Stack


def _deployment(stack: Stack, namespace: str = "shop-dev") -> Any:
    from kubernetes import client

    from shipyard.core.kube import api_client

    with api_client(stack.env["KUBECONFIG"]) as api:
        return client.AppsV1Api(api).read_namespaced_deployment("cart", namespace)


def _image_in(stack: Stack, namespace: str) -> Any:
    deployment = _deployment(stack, namespace)
    return deployment.spec.template.spec.containers[0].image, deployment.status.ready_replicas


def _gitops_log(stack: Stack) -> list[str]:
    out = subprocess.run(
        ["git", "--git-dir", str(stack.git_root / "gitops.git"), "log", "--format=%H", "main"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()


def _gitops_message(stack: Stack, sha: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(stack.git_root / "gitops.git"), "log", "-1", "--format=%B", sha],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def _commit_source(stack: Stack, version: str) -> str:
    """Commit a new version of the demo app's source (no image: nothing built yet)."""
    source = stack.layout.data_dir("git") / f"{content.SOURCE_REPO}.git"
    with tempfile.TemporaryDirectory(prefix="shipyard-src-") as tmp:
        work = Path(tmp) / "w"
        subprocess.run(["git", "clone", "-q", str(source), str(work)], check=True)
        (work / "index.html").write_text(f"<h1>cart v{version}</h1>\n")
        _git(work, "commit", "-q", "-am", f"cart: version {version}")
        _git(work, "push", "-q", "origin", "HEAD:main")
        return _git(work, "rev-parse", "HEAD")


def _deliver_runs(predicate: Any) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["deliver"]))
        )
    return [r for r in runs if predicate(r)]


def _wait_final(predicate: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = _deliver_runs(predicate)
        if runs and all(r.state is not None and r.state.is_final() for r in runs):
            return runs
        time.sleep(1)
    raise AssertionError(
        f"no finished deliver run after {timeout:.0f}s: {_deliver_runs(predicate)}"
    )


@pytest.mark.slow
@pytest.mark.usefixtures("platform")
def test_registry_push_is_delivered_through_the_kubernetes_worker(stack: Stack) -> None:
    change = demo.push_change(stack.env, stack.layout, version="2")
    run = demo.wait_for_delivery(change.commit, timeout=300, say=print)

    assert run.state.is_completed(), run.state
    assert run.parameters["digest"] == change.digest
    assert run.parameters["trigger"].startswith("registry-push:distribution:")
    image, ready = _image_in(stack, "shop-dev")
    assert image.endswith(f"@{change.digest}")
    assert ready == 1


@pytest.mark.slow
@pytest.mark.usefixtures("platform")
def test_one_digest_pushed_under_two_tags_is_one_delivery(stack: Stack) -> None:
    """CI pushes one image as `<sha>` and `v3`: the registry notifies both tags, and the
    platform makes one deliver run, one GitOps commit and one rollout."""
    from blocks.docker import DockerHost
    from blocks.registry import RegistryCredentials
    from tasks.build_image import BuildImageConfig, run_build
    from tasks.push_image import PushImageConfig, run_push

    commit = _commit_source(stack, "3")
    registry = stack.env["SHIPYARD_REGISTRY"]
    host = DockerHost(base_url=stack.env["DOCKER_HOST"])
    credentials = RegistryCredentials(registry=registry, insecure=True)
    image = f"{registry}/{content.IMAGE_PATH}"
    built = run_build(
        BuildImageConfig(
            repo_url=f"{stack.env['SHIPYARD_GIT_URL']}/{content.SOURCE_REPO}.git",
            commit=commit,
            repository=image,
            extra_tags=["v3"],
        ),
        host,
        credentials,
    )
    assert sorted(built.tags) == sorted([commit, "v3"])
    # Let deliveries that earlier tests' pushes set off on this platform finish first, so
    # the commits and the rollout counted below are this push's alone.
    _wait_final(lambda r: True, timeout=300)
    log_before = _gitops_log(stack)
    generation = _deployment(stack).metadata.generation
    pushed = run_push(PushImageConfig(repository=image, tags=built.tags), host, credentials)

    mine = _wait_final(lambda r: r.parameters.get("digest") == pushed.digest, timeout=300)
    time.sleep(10)  # a second tag's run, if any, would have been created by now
    mine = _deliver_runs(lambda r: r.parameters.get("digest") == pushed.digest)
    assert len(mine) == 1, [(r.name, r.parameters.get("tag")) for r in mine]
    assert mine[0].state.is_completed(), mine[0].state
    # One GitOps commit for this digest. Count by digest, not by length: deliveries that
    # other tests' pushes set off on the same platform may still be landing commits.
    new = _gitops_log(stack)[: len(_gitops_log(stack)) - len(log_before)]
    for_digest = [sha for sha in new if pushed.digest in _gitops_message(stack, sha)]
    assert len(for_digest) == 1, [_gitops_message(stack, sha) for sha in new]
    deployment = _deployment(stack)
    assert deployment.metadata.generation == generation + 1  # one rollout
    assert deployment.spec.template.spec.containers[0].image.endswith(f"@{pushed.digest}")


@pytest.mark.slow
@pytest.mark.usefixtures("platform")
def test_deliver_of_a_source_commit_runs_on_the_kubernetes_worker(stack: Stack) -> None:
    """What the UI's custom run form does: `deliver` with only app and commit. The flow
    pod builds with the Docker host of the `shipyard-docker` block."""
    from prefect.deployments import run_deployment

    commit = _commit_source(stack, "4")
    run = run_deployment(
        "deliver/deliver",
        parameters={"app": "cart", "commit": commit, "trigger": "ui-commit"},
        timeout=0,
    )
    (done,) = _wait_final(lambda r: r.id == run.id, timeout=600)
    assert done.state.is_completed(), done.state
    image, ready = _image_in(stack, "shop-dev")
    assert f":{commit}@sha256:" in image and ready == 1
