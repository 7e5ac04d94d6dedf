"""Opt-in: the apply driver and verify on a real cluster (``pytest -m realcluster``).

Set ``SHIPYARD_REAL_KUBECONFIG`` to a kubeconfig of a disposable cluster (kind, k3d, ...).
The healthy case uses ``registry.k8s.io/pause:3.9`` with ``IfNotPresent`` (present on
every node as the sandbox image); the failing case an image that cannot exist.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shipyard.core.kube import KubeClient
from tasks.sync_app import SyncConfig, sync
from tasks.verify_rollout import VerifyConfig, watch_rollout
from tests.tasks.k8s_objects import GitOpsRepo, deployment

pytestmark = pytest.mark.realcluster


def _files(image: str, extra: bool) -> dict[str, str | None]:
    dep = deployment("web", None, image)
    dep["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = "IfNotPresent"
    return {
        "app/deploy.json": json.dumps(dep),
        "app/config.yaml": (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web-config}\ndata: {k: v}\n"
            if extra
            else None
        ),
    }


def test_apply_verify_prune_on_a_real_cluster(
    real_api: Any, real_namespace: str, tmp_path: Path
) -> None:
    repo = GitOpsRepo(tmp_path)
    repo.commit(_files("registry.k8s.io/pause:3.9", True), "v1")
    kube = KubeClient(real_api)
    cfg = SyncConfig(driver="apply", repo=repo.url, path="app", namespace=real_namespace, app="web")
    assert sync(cfg, kube=kube).applied == ["ConfigMap/web-config", "Deployment/web"]
    verify = VerifyConfig(namespace=real_namespace, workload="deployment/web", timeout_seconds=120)
    assert watch_rollout(kube, verify).healthy
    repo.commit(_files("registry.invalid/shipyard/missing:1", False), "v2")
    assert sync(cfg, kube=kube).pruned == ["ConfigMap/web-config"]
    result = watch_rollout(kube, verify)
    assert not result.healthy and result.reason in ("ErrImagePull", "ImagePullBackOff")
