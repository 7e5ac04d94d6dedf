"""Restore-from-git drill: render an env dir, rebuild it in the simulator, compare with live."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard.core.errors import ConfigError
from shipyard.core.kube import KubeClient
from tasks.restore_git_drill import render_env, run_git_drill
from tasks.restore_objects import compare_environments
from tasks.steps.dr import checkout_env
from tests.fixtures.simcluster import SimClusterHandle

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: shop/web:1.0
"""
SERVICE_AND_CONFIG = """\
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  mode: prod
"""


def write_env(root: Path, namespace: str) -> Path:
    """A GitOps layout: base/ with manifests, envs/prod with a kustomization overlay."""
    base = root / "base"
    base.mkdir(parents=True)
    (base / "deployment.yaml").write_text(DEPLOYMENT)
    (base / "service.yaml").write_text(SERVICE_AND_CONFIG)
    (base / "kustomization.yaml").write_text("resources: [deployment.yaml, service.yaml]\n")
    env = root / "envs" / "prod"
    env.mkdir(parents=True)
    (env / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"namespace: {namespace}\nresources:\n  - ../../base\n"
        "images:\n  - name: shop/web\n    newTag: '1.1'\n"
    )
    return env


def test_render_env_applies_namespace_and_image_overrides(tmp_path: Path) -> None:
    objects = render_env(write_env(tmp_path, "shop"), root=tmp_path)
    assert sorted(o["kind"] for o in objects) == ["ConfigMap", "Deployment", "Service"]
    assert {o["metadata"]["namespace"] for o in objects} == {"shop"}
    deploy = next(o for o in objects if o["kind"] == "Deployment")
    image = deploy["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "shop/web:1.1"


def test_render_env_renders_real_kustomize_and_reports_its_errors(tmp_path: Path) -> None:
    env = write_env(tmp_path, "shop")
    (env / "kustomization.yaml").write_text(
        "resources: [../../base]\nnamePrefix: prod-\n"
        "patches:\n  - target: {kind: Deployment}\n"
        "    patch: |-\n      - {op: replace, path: /spec/replicas, value: 2}\n"
        "configMapGenerator:\n  - name: extra\n    literals: [a=1]\n"
    )
    objects = render_env(env, root=tmp_path)
    names = sorted(f"{o['kind']}/{o['metadata']['name']}" for o in objects)
    assert names[:2] == [
        "ConfigMap/prod-extra-" + names[0].rsplit("-", 1)[1],
        "ConfigMap/prod-settings",
    ]
    deploy = next(o for o in objects if o["kind"] == "Deployment")
    assert (deploy["metadata"]["name"], deploy["spec"]["replicas"]) == ("prod-web", 2)
    (env / "kustomization.yaml").write_text("resources: [../../base]\npatchez: []\n")
    with pytest.raises(ConfigError, match=r'envs/prod: kustomize: .*unknown field "patchez"'):
        render_env(env, root=tmp_path)
    (env / "kustomization.yaml").write_text("resources: [../../missing]\n")
    with pytest.raises(ConfigError, match=r"envs/prod: kustomize: .*missing"):
        render_env(env, root=tmp_path)
    with pytest.raises(ConfigError, match="outside the repository"):
        render_env(env, root=tmp_path / "base")
    with pytest.raises(ConfigError, match="does not exist"):
        render_env(tmp_path / "nope")


def test_compare_environments_reports_each_side() -> None:
    a = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "1"}}
    b = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}}
    a_live = {**a, "data": {"k": "2"}}
    parity, only_git, only_live, mismatches = compare_environments([a, b], [a_live])
    assert parity == 0.0
    assert only_git == ["ConfigMap/b"] and only_live == []
    assert mismatches == ["ConfigMap/a .data.k: changed '1' -> '2'"]


@pytest.fixture
def kube(sim_cluster: SimClusterHandle) -> KubeClient:
    return KubeClient(sim_cluster.api_client())


@pytest.fixture
def live(kube: KubeClient, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A live namespace built from the same manifests (the image bumped to 1.1)."""
    ns = f"prod-{uuid.uuid4().hex[:6]}"
    env = write_env(tmp_path / "repo", ns)
    (tmp_path / "repo" / ".git").mkdir()  # the work tree bounds what the env may include
    kube.request("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
    for obj in render_env(env):
        kind = obj["kind"]
        path = {
            "Deployment": f"/apis/apps/v1/namespaces/{ns}/deployments",
            "Service": f"/api/v1/namespaces/{ns}/services",
            "ConfigMap": f"/api/v1/namespaces/{ns}/configmaps",
        }[kind]
        kube.request("POST", path, obj)
    yield ns, env
    kube.request("DELETE", f"/api/v1/namespaces/{ns}")


def _drill_namespaces(kube: KubeClient) -> list[str]:
    items = (kube.get("/api/v1/namespaces") or {}).get("items") or []
    return [o["metadata"]["name"] for o in items if "-drill-" in o["metadata"]["name"]]


def test_git_rebuild_matches_live(kube: KubeClient, live: tuple[str, Path]) -> None:
    ns, env = live
    result = run_git_drill(kube, env, ns, ready_timeout=30)
    assert result.passed, result.failures
    assert result.parity == 1.0 and result.objects == 3 and result.restored == 3
    assert _drill_namespaces(kube) == []


def test_git_drill_detects_drift(kube: KubeClient, live: tuple[str, Path]) -> None:
    ns, env = live
    kube.request(
        "POST",
        f"/api/v1/namespaces/{ns}/configmaps",
        {"metadata": {"name": "hotfix"}, "data": {"a": "1"}},
    )
    cm = kube.get(f"/api/v1/namespaces/{ns}/configmaps/settings")
    assert cm is not None
    cm["data"]["mode"] = "debug"
    kube.request("PUT", f"/api/v1/namespaces/{ns}/configmaps/settings", cm)
    result = run_git_drill(kube, env, ns, ready_timeout=30)
    assert not result.passed
    assert result.only_in_live == ["ConfigMap/hotfix"]
    assert result.mismatches == ["ConfigMap/settings .data.mode: changed 'prod' -> 'debug'"]
    assert _drill_namespaces(kube) == []


def test_checkout_env_from_a_real_repo(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_env(src, "shop")
    bare = tmp_path / "gitops.git"
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q", "-b", "main", str(src)], check=True)
    subprocess.run([*git, "-C", str(src), "add", "."], check=True)
    subprocess.run([*git, "-C", str(src), "commit", "-qm", "env"], check=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(src), str(bare)], check=True)
    env_dir = checkout_env.fn(f"file://{bare}", "main", "envs/prod")
    assert len(render_env(Path(env_dir))) == 3
    with pytest.raises(ConfigError, match="leaves the repository"):
        checkout_env.fn(f"file://{bare}", "main", "../..")
    with pytest.raises(ConfigError, match="cannot clone"):
        checkout_env.fn(f"file://{bare}", "no-such-branch", "envs/prod")
