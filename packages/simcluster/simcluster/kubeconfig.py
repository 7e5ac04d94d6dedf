"""Writing the kubeconfig that points kubectl and the Python client at a simulator."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

CONTEXT = "simcluster"


def render(url: str, namespace: str = "default") -> str:
    """A kubeconfig (YAML) for an insecure-HTTP simulator at ``url``."""
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CONTEXT, "cluster": {"server": url}}],
        "users": [{"name": CONTEXT, "user": {"token": "simcluster"}}],
        "contexts": [
            {
                "name": CONTEXT,
                "context": {"cluster": CONTEXT, "user": CONTEXT, "namespace": namespace},
            }
        ],
        "current-context": CONTEXT,
        "preferences": {},
    }
    return yaml.safe_dump(doc, sort_keys=False)


def write(path: Path, url: str) -> Path:
    """Atomically write the kubeconfig to ``path`` (mode 0600, like real ones)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(render(url))
    os.chmod(tmp, 0o600)
    tmp.replace(path)
    return path
