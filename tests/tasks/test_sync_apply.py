"""Direct apply: render (pure), server-side apply, prune by ownership label; the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shipyard.cli.main import main
from shipyard.core.errors import ConfigError
from shipyard.core.kube import KubeClient
from tasks.sync.render import APP_LABEL, MANAGED_BY_LABEL, plan_prune, render
from tasks.sync_app import SyncConfig, sync
from tests.fixtures.simcluster import SimClusterHandle
from tests.tasks.k8s_objects import GitOpsRepo, kustomize_env

DEP = (
    "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n"
    "    spec:\n      containers:\n        - name: a\n          image: reg:5000/shop/web:1\n"
)


# --- pure render ------------------------------------------------------------------------


def test_kustomize_images_override_and_nested_resources() -> None:
    files = {
        "envs/dev/kustomization.yaml": (
            "resources: [../base, extra.yaml]\nnamespace: shop\n"
            "images:\n  - name: reg:5000/shop/web\n    newTag: '2'\n"
        ),
        "envs/dev/extra.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\n",
        "envs/base/kustomization.yaml": "resources: [deploy.yaml]\n",
        "envs/base/deploy.yaml": DEP,
    }
    objs = render(files, "envs/dev")
    assert sorted(o["kind"] for o in objs) == ["ConfigMap", "Deployment"]
    dep = next(o for o in objs if o["kind"] == "Deployment")
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "reg:5000/shop/web:2"
    assert {o["metadata"]["namespace"] for o in objs} == {"shop"}


def test_kustomize_images_digest_and_new_name() -> None:
    digest = "sha256:" + "a" * 64
    files = {
        "d/kustomization.yaml": (
            "resources: [a.yaml]\nimages:\n"
            f"  - name: reg:5000/shop/web\n    newName: mirror:5000/web\n    digest: {digest}\n"
        ),
        "d/a.yaml": DEP,
    }
    dep = render(files, "d")[0]
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == f"mirror:5000/web@{digest}"


def test_plain_directory_with_lists_nested_dirs_and_go_yaml() -> None:
    files = {
        "d/a.yaml": DEP.replace("name: web\n", "name: web\t\n", 1)  # a trailing tab
        + "      volumes:\n        - name: s\n"
        + "          secret: {secretName: s, defaultMode: 0755}\n",
        "d/sub/b.json": json.dumps(
            {
                "kind": "List",
                "items": [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}}],
            }
        ),
        "d/README.md": "x",
    }
    objs = render(files, "d")
    assert sorted(o["kind"] for o in objs) == ["Deployment", "Service"]
    dep = next(o for o in objs if o["kind"] == "Deployment")
    assert dep["metadata"]["name"] == "web"
    assert dep["spec"]["template"]["spec"]["volumes"][0]["secret"]["defaultMode"] == 0o755 == 493
    assert [o["kind"] for o in render(files, "d/a.yaml")] == ["Deployment"]
    assert render({"e/notes.txt": "x"}, "e") == []


@pytest.mark.parametrize(
    ("files", "path", "match"),
    [
        ({"a.yaml": "x: [1"}, ".", "kustomize: .*a.yaml"),
        ({"a.yaml": "kind: Service\n"}, ".", "kustomize: .*"),
        ({"a/kustomization.yaml": "resources: [missing.yaml]\n"}, "a", "^a: kustomize: .*missing"),
        ({"a/kustomization.yaml": "resources: [../base]\n"}, "a", "^a: kustomize: .*base"),
        ({"a/kustomization.yaml": "bogus: 1\n"}, "a", 'unknown field "bogus"'),
        ({"a.yaml": DEP}, "nope", "does not exist"),
        ({"a.yaml": DEP}, "../x", "leaves the repository"),
    ],
)
def test_render_errors_are_config_errors(files: dict[str, str], path: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as caught:
        render(files, path)
    assert "shipyard-" not in str(caught.value)  # scratch directories are not named


def test_plan_prune_keeps_declared_and_owned_objects() -> None:
    live: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "keep"}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "gone"}},
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "owned", "ownerReferences": [{"kind": "X"}]},
        },
    ]
    desired = [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "keep"}}]
    assert [o["metadata"]["name"] for o in plan_prune(live, desired)] == ["gone"]


# --- against the simulator --------------------------------------------------------------


@pytest.fixture
def gitops(tmp_path: Path) -> GitOpsRepo:
    return GitOpsRepo(tmp_path)


def _cfg(repo: str, ns: str, revision: str | None = None) -> SyncConfig:
    return SyncConfig(
        driver="apply", repo=repo, path="envs/dev", namespace=ns, app="web", revision=revision
    )


def test_apply_then_prune(
    sim_cluster: SimClusterHandle, sim_namespace: str, gitops: GitOpsRepo
) -> None:
    first = gitops.commit(kustomize_env("shop/web", "1"), "v1")
    kube = KubeClient(sim_cluster.api_client())
    other = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "other",
            "namespace": sim_namespace,
            "labels": {MANAGED_BY_LABEL: "shipyard", APP_LABEL: "other"},
        },
    }
    kube.apply(kube.resource("v1", "ConfigMap"), other, "test")
    result = sync(_cfg(gitops.url, sim_namespace), kube=kube)
    assert result.revision == first and result.driver == "apply"
    assert result.applied == ["ConfigMap/web-config", "Deployment/web"] and result.pruned == []
    dep = kube.get(f"/apis/apps/v1/namespaces/{sim_namespace}/deployments/web")
    assert dep is not None
    assert dep["metadata"]["labels"][APP_LABEL] == "web"
    assert dep["metadata"]["annotations"]["app.shipyard.dev/revision"] == first
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "shop/web:1"
    assert any(m["manager"] == "shipyard" for m in dep["metadata"]["managedFields"])

    second = gitops.commit(kustomize_env("shop/web", "2", extra=False), "v2 without config")
    result = sync(_cfg(gitops.url, sim_namespace), kube=kube)
    assert (result.revision, result.pruned) == (second, ["ConfigMap/web-config"])
    assert kube.get(f"/api/v1/namespaces/{sim_namespace}/configmaps/other") is not None
    # syncing an older revision puts it back
    result = sync(_cfg(gitops.url, sim_namespace, first), kube=kube)
    assert result.revision == first and "ConfigMap/web-config" in result.applied


def test_cluster_scoped_objects_are_refused(
    sim_cluster: SimClusterHandle, sim_namespace: str, gitops: GitOpsRepo
) -> None:
    gitops.commit(
        {"envs/dev/ns.yaml": "apiVersion: v1\nkind: Namespace\nmetadata: {name: evil}\n"}, "ns"
    )
    with pytest.raises(ConfigError, match="cluster-scoped"):
        sync(_cfg(str(gitops.work), sim_namespace), sim_cluster.api_client())


@pytest.mark.parametrize("kind", ["429", "500", "drop"])
def test_api_faults_during_apply_are_retried(
    sim_cluster: SimClusterHandle, sim_namespace: str, gitops: GitOpsRepo, kind: str
) -> None:
    gitops.commit(kustomize_env("shop/web", "1"), "v1")
    sim_cluster.faults.add(kind=kind, verb="patch", count=2, namespace=sim_namespace)
    sim_cluster.faults.add(kind=kind, verb="list", count=1, namespace=sim_namespace)
    result = sync(_cfg(str(gitops.work), sim_namespace), sim_cluster.api_client())
    assert result.applied == ["ConfigMap/web-config", "Deployment/web"]
    assert sim_cluster.faults.rules()[0]["count"] == 0


# --- CLI --------------------------------------------------------------------------------


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_sync_then_verify(
    sim_cluster: SimClusterHandle,
    sim_namespace: str,
    gitops: GitOpsRepo,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sha = gitops.commit(kustomize_env("shop/web", "1"), "v1")
    kc = str(sim_cluster.kubeconfig)
    code, out, err = _run(
        [
            "sync",
            "--driver",
            "apply",
            "--kubeconfig",
            kc,
            "--repo-dir",
            str(gitops.work),
            "--path",
            "envs/dev",
            "--namespace",
            sim_namespace,
            "--json",
        ],
        capsys,
    )
    assert code == 0, err
    doc = json.loads(out)
    assert set(doc) == {"revision", "driver", "applied", "pruned", "seconds"}
    assert doc["revision"] == sha and doc["driver"] == "apply"
    code, out, err = _run(
        [
            "verify",
            "--kubeconfig",
            kc,
            "--namespace",
            sim_namespace,
            "--workload",
            "deployment/web",
            "--timeout",
            "20",
            "--json",
        ],
        capsys,
    )
    assert code == 0, err
    doc = json.loads(out)
    assert set(doc) == {"healthy", "reason", "ready", "desired", "images", "seconds"}
    assert doc["healthy"] is True and doc["reason"] is None and doc["ready"] == doc["desired"] == 1


def test_cli_verify_unhealthy_exits_1_with_reason(
    sim_cluster: SimClusterHandle,
    sim_namespace: str,
    gitops: GitOpsRepo,
    capsys: pytest.CaptureFixture[str],
) -> None:
    gitops.commit(kustomize_env("shop/web", "1", crash=True), "crash")
    kc = str(sim_cluster.kubeconfig)
    assert (
        _run(
            [
                "sync",
                "--kubeconfig",
                kc,
                "--repo-dir",
                str(gitops.work),
                "--path",
                "envs/dev",
                "--namespace",
                sim_namespace,
            ],
            capsys,
        )[0]
        == 0
    )
    code, out, _ = _run(
        [
            "verify",
            "--kubeconfig",
            kc,
            "--namespace",
            sim_namespace,
            "--workload",
            "deployment/web",
            "--timeout",
            "20",
            "--json",
        ],
        capsys,
    )
    assert code == 1
    assert json.loads(out)["reason"] == "CrashLoopBackOff"


@pytest.mark.parametrize(
    "args",
    [
        ["verify", "--namespace", "x", "--workload", "pod/web"],
        ["verify", "--namespace", "x", "--workload", "deployment/web", "--digest", "sha256:abc"],
        ["verify", "--workload", "deployment/web"],
        [
            "verify",
            "--namespace",
            "x",
            "--workload",
            "deployment/web",
            "--kubeconfig",
            "/nonexistent",
        ],
        ["sync", "--driver", "helm"],
        ["sync", "--driver", "apply", "--path", "x", "--namespace", "x"],
        ["sync", "--driver", "argocd"],
        [
            "sync",
            "--driver",
            "apply",
            "--repo-dir",
            "/nonexistent",
            "--path",
            "x",
            "--namespace",
            "x",
        ],
    ],
)
def test_cli_unusable_input_exits_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(args, capsys)
    assert code == 2, (out, err)
    assert err.startswith("shipyard: ") and "Traceback" not in err
