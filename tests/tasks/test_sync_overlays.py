"""Sync renders real overlays with real kustomize: what it applies is what kubectl prints.

The repository under ``testdata/overlays`` (see its README) uses every kustomize feature
the apply driver must honour. It is committed to a real git repository, synced with the
apply driver into the cluster simulator, and each object read back from the API server
is compared, field by field, with what ``kubectl kustomize`` prints for the same
directory. The change-cause of each rollout is read back with ``kubectl rollout
history``.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from shipyard.cli.main import main
from shipyard.core.errors import ConfigError
from shipyard.core.kube import KubeClient
from shipyard.core.manifests import diff_objects, normalize
from tasks.sync.render import CHANGE_CAUSE_ANNOTATION, object_ref
from tasks.sync_app import SyncConfig, sync
from tests.fixtures.simcluster import SimClusterHandle
from tests.tasks.k8s_objects import GitOpsRepo

TESTDATA = Path(__file__).parent / "testdata" / "overlays"
JSON = dict[str, Any]


def _testdata_files() -> dict[str, str | None]:
    """Every file of the test repository, byte for byte (trailing tabs included)."""
    return {
        p.relative_to(TESTDATA).as_posix(): p.read_text(encoding="utf-8")
        for p in sorted(TESTDATA.rglob("*"))
        if p.is_file()
    }


def _kubectl_kustomize(path: str) -> list[JSON]:
    """What ``kubectl kustomize`` prints for ``path`` of the test repository (the oracle)."""
    out = subprocess.run(
        ["kubectl", "kustomize", str(TESTDATA / path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def _live(kube: KubeClient, obj: JSON, namespace: str) -> JSON:
    resource = kube.resource(str(obj["apiVersion"]), str(obj["kind"]))
    found = kube.get(resource.path(namespace, obj["metadata"]["name"]))
    assert found is not None, f"{object_ref(obj)} was not applied"
    found.setdefault("apiVersion", obj["apiVersion"])
    found.setdefault("kind", obj["kind"])
    return found


def _container(obj: JSON) -> JSON:
    container: JSON = obj["spec"]["template"]["spec"]["containers"][0]
    return container


@pytest.fixture
def gitops(tmp_path: Path) -> GitOpsRepo:
    return GitOpsRepo(tmp_path)


@pytest.fixture
def kube(sim_cluster: SimClusterHandle) -> KubeClient:
    return KubeClient(sim_cluster.api_client())


def _config(gitops: GitOpsRepo, path: str, namespace: str) -> SyncConfig:
    return SyncConfig(driver="apply", repo=gitops.url, path=path, namespace=namespace, app="shop")


def test_overlay_applies_exactly_what_kubectl_kustomize_renders(
    kube: KubeClient, sim_namespace: str, gitops: GitOpsRepo
) -> None:
    sha = gitops.commit(_testdata_files(), "shop: the prod overlay")
    expected = _kubectl_kustomize("overlays/prod")
    assert len(expected) == 7

    result = sync(_config(gitops, "overlays/prod", sim_namespace), kube=kube)

    assert result.revision == sha
    assert sorted(result.applied) == sorted(object_ref(o) for o in expected)
    for obj in expected:
        want = {**obj, "metadata": {**obj["metadata"], "namespace": sim_namespace}}
        live = _live(kube, obj, sim_namespace)
        diffs = [
            d for d in diff_objects(normalize(want), normalize(live)) if d.change != "unexpected"
        ]
        assert diffs == [], (object_ref(obj), [d.render(secret=False) for d in diffs])

    # each feature, named, so a regression says which one broke
    by_ref = {object_ref(o): _live(kube, o, sim_namespace) for o in expected}
    web = by_ref["Deployment/prod-web"]  # namePrefix
    assert web["spec"]["replicas"] == 3  # strategic merge patch from a file
    env = {e["name"]: e.get("value") for e in _container(web)["env"]}
    assert env == {"UPSTREAM": "prod-web", "ENVIRONMENT": "prod"}  # replacements + json6902
    assert _container(web)["image"] == "shop/web:2.0"  # images
    assert web["spec"]["selector"]["matchLabels"] == {"app": "web", "tier": "shop"}  # commonLabels
    assert web["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    settings = _container(web)["envFrom"][0]["configMapRef"]["name"]
    assert settings.startswith("prod-web-settings-") and f"ConfigMap/{settings}" in by_ref
    volume = web["spec"]["template"]["spec"]["volumes"][0]["configMap"]
    assert volume == {"name": settings, "defaultMode": 0o755}  # generator ref renamed; Go YAML
    assert "ConfigMap/prod-metrics" in by_ref  # components
    worker = by_ref["Deployment/prod-worker"]  # bases next to resources
    assert _container(worker)["env"] == [{"name": "SELF", "value": "prod-worker"}]  # vars
    policy = by_ref["NetworkPolicy/prod-web-ingress"]
    assert policy["spec"]["podSelector"]["matchLabels"] == {"app": "web", "tier": "shop"}
    assert by_ref["Service/prod-web"]["spec"]["selector"] == {"app": "web", "tier": "shop"}


def test_plain_directory_is_read_as_go_yaml(
    kube: KubeClient, sim_namespace: str, gitops: GitOpsRepo
) -> None:
    gitops.commit(_testdata_files(), "plain manifests")
    result = sync(_config(gitops, "plain", sim_namespace), kube=kube)
    assert sorted(result.applied) == [
        "ConfigMap/plain-settings",
        "Deployment/plain",
        "Service/plain",
    ]
    dep = _live(
        kube,
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "plain"}},
        sim_namespace,
    )
    assert dep["spec"]["template"]["spec"]["volumes"][0]["configMap"]["defaultMode"] == 493
    cm = _live(
        kube,
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "plain-settings"}},
        sim_namespace,
    )
    assert cm["data"] == {"mode": "0755"}  # a quoted string stays a string


def _objects_in(kube: KubeClient, namespace: str) -> list[str]:
    names = []
    for api_version, kind in (("apps/v1", "Deployment"), ("v1", "ConfigMap"), ("v1", "Service")):
        items, _ = kube.list(kube.resource(api_version, kind).path(namespace), {})
        names += [f"{kind}/{o['metadata']['name']}" for o in items]
    return [n for n in names if n != "ConfigMap/kube-root-ca.crt"]


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_a_render_failure_is_a_config_error_and_applies_nothing(
    sim_cluster: SimClusterHandle,
    kube: KubeClient,
    sim_namespace: str,
    gitops: GitOpsRepo,
    capsys: pytest.CaptureFixture[str],
) -> None:
    gitops.commit(_testdata_files(), "a broken overlay")
    with pytest.raises(ConfigError) as caught:
        sync(_config(gitops, "overlays/broken", sim_namespace), kube=kube)
    message = str(caught.value)
    assert message.startswith("overlays/broken: kustomize: ")
    assert "missing-patch.yaml" in message and "no such file or directory" in message
    assert _objects_in(kube, sim_namespace) == []

    code, out, err = _run(
        [
            "sync",
            "--kubeconfig",
            str(sim_cluster.kubeconfig),
            "--repo-dir",
            str(gitops.work),
            "--path",
            "overlays/broken",
            "--namespace",
            sim_namespace,
            "--json",
        ],
        capsys,
    )
    assert code == 2, (out, err)
    assert err.startswith("shipyard: overlays/broken: kustomize: ") and "missing-patch.yaml" in err
    assert len(err.strip().splitlines()) == 1 and out == ""
    assert _objects_in(kube, sim_namespace) == []


def _history(sim_cluster: SimClusterHandle, namespace: str, name: str, want: int) -> str:
    """``kubectl rollout history`` once it lists ``want`` revisions (controllers are async)."""
    deadline = time.monotonic() + 30
    while True:
        out = sim_cluster.kubectl(
            "rollout", "history", f"deployment/{name}", "-n", namespace
        ).stdout
        rows = [line for line in out.splitlines() if line[:1].isdigit()]
        if len(rows) >= want or time.monotonic() > deadline:
            return out
        time.sleep(0.2)


def test_rollout_history_names_the_gitops_commit(
    sim_cluster: SimClusterHandle, kube: KubeClient, sim_namespace: str, gitops: GitOpsRepo
) -> None:
    files = _testdata_files()
    first = gitops.commit(files, "shop: web 2.0")
    sync(_config(gitops, "overlays/prod", sim_namespace), kube=kube)
    prod = files["overlays/prod/kustomization.yaml"]
    assert prod is not None
    second = gitops.commit(
        {"overlays/prod/kustomization.yaml": prod.replace('newTag: "2.0"', 'newTag: "2.1"')},
        "shop: web 2.0 -> 2.1\n\nDigest: not in the change-cause",
    )
    sync(_config(gitops, "overlays/prod", sim_namespace), kube=kube)

    web = _live(
        kube,
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "prod-web"}},
        sim_namespace,
    )
    cause = f"shipyard: {second[:12]} shop: web 2.0 -> 2.1"
    assert web["metadata"]["annotations"][CHANGE_CAUSE_ANNOTATION] == cause
    config = _live(
        kube,
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "prod-metrics"}},
        sim_namespace,
    )
    assert CHANGE_CAUSE_ANNOTATION not in (config["metadata"].get("annotations") or {})

    history = _history(sim_cluster, sim_namespace, "prod-web", 2)
    rows = {
        line.split(None, 1)[0]: line.split(None, 1)[1].strip()
        for line in history.splitlines()
        if line[:1].isdigit()
    }
    assert rows == {"1": f"shipyard: {first[:12]} shop: web 2.0", "2": cause}, history
