"""A fleet for tests: simulated clusters (one simulator each), a real GitOps repo, a file.

``Fleet4`` holds four clusters labelled for waves (canary; eu-1, eu-2; us-1), each its own
``start_sim_cluster`` on its own port, and a git repository whose commits are built
with :meth:`FleetRepo.commit` (a Deployment ``api`` per cluster path, good or bad image).
"""

from __future__ import annotations

import json
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from shipyard.core.kube import KubeClient
from tests.fixtures.simcluster import SimClusterHandle, free_port, start_sim_cluster
from tests.tasks.k8s_objects import deployment

GOOD = "shop/api:{n}"  # no registry host: present in the simulator without a pull
BAD = "127.0.0.1:9/shop/api:bad"  # a registry that refuses connections: ErrImagePull
LABELS = {
    "canary": {"region": "eu", "tier": "canary"},
    "eu-1": {"region": "eu"},
    "eu-2": {"region": "eu"},
    "us-1": {"region": "us"},
}


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=T", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


class FleetRepo:
    """A GitOps working tree: ``envs/<cluster>/api/deployment.yaml`` per cluster."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        git("init", "-q", "-b", "main", str(root), cwd=root)

    def commit(self, images: dict[str, str], message: str) -> str:
        for name, image in images.items():
            dep = deployment("api", None, image, replicas=2)
            target = self.root / "envs" / name / "api" / "deployment.yaml"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(dep, indent=1))
        git("add", "-A", cwd=self.root)
        git("commit", "-q", "--allow-empty", "-m", message, cwd=self.root)
        return git("rev-parse", "HEAD", cwd=self.root)


@dataclass
class Fleet4:
    root: Path
    sims: dict[str, SimClusterHandle]
    repo: FleetRepo
    kubeconfigs: dict[str, Path] = field(default_factory=dict)

    def stop(self) -> None:
        for sim in self.sims.values():
            sim.cluster.stop()

    def kube(self, name: str) -> KubeClient:
        return KubeClient(self.sims[name].api_client())

    def namespace(self) -> str:
        """A fresh namespace in every cluster."""
        ns = f"f-{uuid.uuid4().hex[:8]}"
        for name in self.sims:
            self.kube(name).request(
                "POST", "/api/v1/namespaces", {"metadata": {"name": ns}, "apiVersion": "v1"}
            )
        return ns

    def break_cluster(self, name: str) -> None:
        """Point ``name``'s kubeconfig at a port nobody listens on."""
        text = self.sims[name].kubeconfig.read_text()
        self.kubeconfigs[name].write_text(
            text.replace(self.sims[name].url, f"http://127.0.0.1:{free_port()}")
        )

    def heal_cluster(self, name: str) -> None:
        self.kubeconfigs[name].write_text(self.sims[name].kubeconfig.read_text())

    def fleet_file(
        self,
        namespace: str,
        waves: list[dict[str, Any]],
        *,
        rollback: str = "wave",
        timeout: float = 20,
        clusters: list[str] | None = None,
    ) -> Path:
        doc = {
            "apiVersion": "shipyard.dev/v1",
            "kind": "Fleet",
            "metadata": {"name": namespace},
            "clusters": [
                {"name": n, "kubeconfig": str(self.kubeconfigs[n]), "labels": LABELS[n]}
                for n in (clusters or list(self.sims))
            ],
            "rollout": {
                "path": "envs/{cluster}/api",
                "namespace": namespace,
                "sync": {"driver": "apply"},
                "verify": {"workloads": ["deployment/api"], "timeout_seconds": timeout},
                "waves": waves,
            },
            "rollback": rollback,
        }
        path = self.root / f"{namespace}-{uuid.uuid4().hex[:6]}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    def deployment(self, name: str, namespace: str) -> dict[str, Any]:
        obj = self.kube(name).get(f"/apis/apps/v1/namespaces/{namespace}/deployments/api")
        assert obj is not None
        return obj

    def record(self, name: str, namespace: str) -> dict[str, str] | None:
        obj = self.kube(name).get(
            f"/api/v1/namespaces/{namespace}/configmaps/shipyard-fleet-{namespace}"
        )
        return None if obj is None else dict(obj.get("data") or {})


def start_fleet4(root: Path) -> Fleet4:
    sims: dict[str, SimClusterHandle] = {}
    kubeconfigs: dict[str, Path] = {}
    try:
        for name in LABELS:
            directory = root / name
            directory.mkdir(parents=True)
            sims[name] = start_sim_cluster(directory)
            kubeconfigs[name] = directory / "fleet-kubeconfig"
            kubeconfigs[name].write_text(sims[name].kubeconfig.read_text())
    except BaseException:
        for sim in sims.values():
            sim.cluster.stop()
        raise
    return Fleet4(root, sims, FleetRepo(root / "gitops"), kubeconfigs)


def all_images(n: int) -> dict[str, str]:
    return {name: GOOD.format(n=n) for name in LABELS}


WAVES = [
    {"name": "canary", "selector": {"matchLabels": {"tier": "canary"}}},
    {"name": "eu", "selector": {"matchLabels": {"region": "eu"}}, "max_parallel": 1},
    {"name": "rest"},
]
