"""Helpers for write-back tests: real bare remotes in temporary directories."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path

GIT_ENV_ARGS = ["-c", "user.name=Seeder", "-c", "user.email=seed@example.com"]


def git(*args: str, cwd: Path | None = None) -> str:
    """Run git and return stdout (raises on failure)."""
    return subprocess.run(
        ["git", *GIT_ENV_ARGS, *args], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout


def kustomization(*images: tuple[str, str]) -> str:
    """A kustomization.yaml with ``images`` entries (name, tag)."""
    lines = ["apiVersion: kustomize.config.k8s.io/v1beta1", "kind: Kustomization", "images:"]
    for name, tag in images:
        lines += [f"  - name: {name}", f"    newTag: {tag}"]
    return "\n".join(lines) + "\n"


def make_remote(tmp: Path, files: Mapping[str, str], branch: str = "main") -> Path:
    """A bare repo holding one commit of ``files``; fast-forward-only, with a reflog."""
    bare = tmp / "remote.git"
    git("init", "-q", "--bare", "-b", branch, str(bare))
    git("config", "receive.denyNonFastForwards", "true", cwd=bare)
    git("config", "core.logAllRefUpdates", "always", cwd=bare)
    git("config", "uploadpack.allowFilter", "true", cwd=bare)
    seed = tmp / "seed"
    git("init", "-q", "-b", branch, str(seed))
    for rel, text in files.items():
        (seed / rel).parent.mkdir(parents=True, exist_ok=True)
        (seed / rel).write_text(text)
    git("add", "-A", cwd=seed)
    git("commit", "-q", "-m", "seed", cwd=seed)
    git("push", "-q", str(bare), f"HEAD:refs/heads/{branch}", cwd=seed)
    return bare


def show(bare: Path, rel: str, ref: str = "main") -> str:
    """A file's content at ``ref`` of the bare repo."""
    return git("show", f"{ref}:{rel}", cwd=bare)


def subjects(bare: Path, ref: str = "main") -> list[str]:
    """Commit subjects on ``ref``, newest first."""
    return git("log", "--format=%s", ref, cwd=bare).splitlines()


def fast_forward_only(bare: Path, ref: str = "refs/heads/main") -> bool:
    """True when every update of ``ref`` in the reflog moved it forward (no force push)."""
    log = (bare / "logs" / ref).read_text().splitlines()
    for line in log:
        old, new = line.split()[:2]
        if set(old) == {"0"}:
            continue
        probe = subprocess.run(
            ["git", "merge-base", "--is-ancestor", old, new], cwd=bare, check=False
        )
        if probe.returncode != 0:
            return False
    return True
