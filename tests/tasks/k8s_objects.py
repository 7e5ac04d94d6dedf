"""Kubernetes manifests used by sync/verify tests."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any


def deployment(
    name: str,
    namespace: str | None,
    image: str,
    *,
    replicas: int = 1,
    crash: bool = False,
    ready: bool = True,
    startup: float | None = None,
) -> dict[str, Any]:
    """A Deployment whose pods the simulated kubelet runs (crash/ready/startup knobs)."""
    annotations: dict[str, str] = {}
    if crash:
        annotations["sim.shipyard.dev/crash"] = "true"
    if not ready:
        annotations["sim.shipyard.dev/ready"] = "false"
    if startup is not None:
        annotations["sim.shipyard.dev/startup-seconds"] = str(startup)
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}, "annotations": annotations},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    }


class GitOpsRepo:
    """A GitOps working tree with a bare remote (file://), for sync and rollback tests."""

    def __init__(self, root: Path) -> None:
        self.bare = root / "remote.git"
        self.work = root / "work"
        _git("init", "-q", "--bare", "-b", "main", str(self.bare))
        _git("config", "receive.denyNonFastForwards", "true", cwd=self.bare)
        _git("config", "core.logAllRefUpdates", "always", cwd=self.bare)
        _git("clone", "-q", str(self.bare), str(self.work))

    @property
    def url(self) -> str:
        return self.bare.resolve().as_uri()

    def commit(self, files: dict[str, str | None], message: str) -> str:
        """Write (or delete, value None) ``files``, commit and push; the new sha."""
        _git("pull", "-q", "--ff-only", "origin", "main", cwd=self.work, check=False)
        for rel, text in files.items():
            target = self.work / rel
            if text is None:
                target.unlink(missing_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        _git("add", "-A", cwd=self.work)
        _git("commit", "-q", "-m", message, cwd=self.work)
        _git("push", "-q", "origin", "HEAD:refs/heads/main", cwd=self.work)
        return _git("rev-parse", "HEAD", cwd=self.work).strip()

    def subjects(self) -> list[str]:
        """Commit subjects on the remote's main, newest first."""
        return _git("log", "--format=%s", "main", cwd=self.bare).splitlines()

    def tip(self) -> str:
        return _git("rev-parse", "main", cwd=self.bare).strip()


def _git(*args: str, cwd: Path | None = None, check: bool = True) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=Tester", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=check,
    ).stdout


def kustomize_env(
    image: str, tag: str, *, crash: bool = False, extra: bool = True, replicas: int = 1
) -> dict[str, str | None]:
    """Files of ``envs/dev``: a Deployment ``web`` (+ a ConfigMap) with an images override."""
    dep = deployment("web", None, f"{image}:0", replicas=replicas)
    if crash:
        dep["spec"]["template"]["spec"]["containers"][0]["env"] = [
            {"name": "SIM_CRASH", "value": "true"}
        ]
    files: dict[str, str | None] = {
        "envs/dev/deployment.yaml": json.dumps(dep, indent=1),
        "envs/dev/kustomization.yaml": (
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n"
            "  - deployment.yaml\n"
            + ("  - config.yaml\n" if extra else "")
            + f'images:\n  - name: {image}\n    newTag: "{tag}"\n'
        ),
        "envs/dev/config.yaml": (
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web-config\ndata:\n  k: v\n"
            if extra
            else None
        ),
    }
    return files
