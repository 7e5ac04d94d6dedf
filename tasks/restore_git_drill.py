"""Restore drill from git: prove the GitOps repo alone can rebuild an environment.

:func:`run_git_drill` renders the environment directory (:func:`render_env`, through
the renderer sync applies with), creates it in a drill namespace
next to the live one, reads both back normalized and compares them: parity 1.0 proves
git holds everything the live environment needs. The drill namespace is always deleted.
:func:`checkout_env_dir` fetches the environment from a repository first. The tasks are
in :mod:`tasks.steps.dr`.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shipyard.core.errors import ConfigError, PermanentError, TransientError
from shipyard.core.export import export_objects
from shipyard.core.git import CloneConfig, NonFastForward, clone
from shipyard.core.kube import KubeClient
from shipyard.core.parallel import DEFAULT_WORKERS
from shipyard.core.redact import redact
from tasks.drill_report import GitDrillResult
from tasks.restore_objects import (
    DRILL_LABEL,
    ExistingPolicy,
    PlannedObject,
    RestoreOutcome,
    cleanup_drill,
    compare_environments,
    drill_namespace,
    map_namespace,
    new_drill_id,
    restore_plan,
    restore_rank,
    wait_workloads,
)
from tasks.sync.render import render_tree

__all__ = ["checkout_env_dir", "render_env", "run_git_drill"]

JSON = dict[str, Any]


def render_env(env_dir: Path, root: Path | None = None) -> list[JSON]:
    """The desired state of a GitOps environment directory (files in, objects out).

    Renders through :func:`tasks.sync.render.render_tree`, the renderer sync applies
    with, so the drill rebuilds exactly what sync would apply: plain manifests, or the
    environment's kustomization built by real kustomize (overlays reaching ``../base``,
    patches, generators, components). A render that fails is a ConfigError naming
    kustomize's message, never a silently partial rebuild.

    ``root`` bounds where plain manifests may come from (default: the enclosing git work
    tree, else ``env_dir`` itself), so an env cannot pull files from outside its
    repository; kustomize bounds its own file loads to each kustomization's directory.
    """
    if not env_dir.is_dir():
        raise ConfigError(f"environment directory {env_dir} does not exist")
    env = env_dir.resolve()
    if root is None:
        root = next((p for p in (env, *env.parents) if (p / ".git").exists()), env)
    root = root.resolve()
    if env != root and root not in env.parents:
        raise ConfigError(f"environment directory {env_dir} is outside the repository {root}")
    return render_tree(root, env.relative_to(root).as_posix())


def run_git_drill(
    kube: KubeClient,
    env_dir: Path,
    live_namespace: str,
    *,
    drill_id: str | None = None,
    root: Path | None = None,
    check_workloads: bool = True,
    ready_timeout: float = 120.0,
    workers: int = DEFAULT_WORKERS,
    clock: Callable[[], float] = time.monotonic,
) -> GitDrillResult:
    """Build the environment from git alone in a drill namespace and compare it with live.

    Both copies are read back from the cluster and normalized, so server defaulting
    affects them equally: parity 1.0 proves git holds everything the live environment
    needs. The drill namespace is always deleted.
    """
    t0 = clock()
    rendered = render_env(env_dir, root)
    did = drill_id or new_drill_id()
    target = drill_namespace(live_namespace, did)
    objects = [o for o in rendered if o.get("kind") != "Namespace"]
    for obj in objects:
        meta = obj.setdefault("metadata", {})
        meta["namespace"] = target
    namespace_obj: JSON = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": target, "labels": {DRILL_LABEL: did}},
    }
    result = GitDrillResult(
        passed=False, live_namespace=live_namespace, drill_namespace=target, objects=len(objects)
    )
    plan = sorted(
        [PlannedObject("namespace", namespace_obj, False)]
        + [PlannedObject(f"git/{i}", o, o.get("kind") == "Secret") for i, o in enumerate(objects)],
        key=lambda p: (restore_rank(p.kind), p.path),
    )
    outcome = RestoreOutcome()
    try:
        restore_plan(kube, plan, policy=ExistingPolicy.FAIL, workers=workers, outcome=outcome)
        result.restored = max(0, outcome.restored - 1)
        if check_workloads:
            slow = wait_workloads(kube, plan, timeout=ready_timeout, workers=workers)
            if slow:
                result.failures.append(f"workloads not Available: {', '.join(slow[:5])}")
        built, _ = export_objects(kube, [target], include_crds=False, workers=workers)
        live, _ = export_objects(kube, [live_namespace], include_crds=False, workers=workers)
        built = [map_namespace(o, {target: live_namespace}) for o in built]
        parity, only_git, only_live, mismatches = compare_environments(built, live)
        result.parity = parity
        result.only_in_git = only_git
        result.only_in_live = only_live
        result.mismatches = mismatches[:50]
        result.rto_seconds = clock() - t0
    except (PermanentError, TransientError) as exc:
        result.rto_seconds = clock() - t0
        result.failures.append(redact(f"rebuild from git failed: {exc}"))
    finally:
        result.cleanup_left = cleanup_drill(kube, [target], outcome.created_cluster_scoped)
    if result.parity < 1.0 and not result.failures:
        result.failures.append(
            f"git and live differ: parity {result.parity:.4f}, {len(result.only_in_git)} only in "
            f"git, {len(result.only_in_live)} only live, {len(result.mismatches)} field diffs"
        )
    if result.cleanup_left:
        result.failures.append(f"cleanup incomplete: {', '.join(result.cleanup_left)}")
    result.passed = not result.failures
    return result


def checkout_env_dir(repo_url: str, ref: str, env_path: str) -> str:
    """Shallow-clone ``repo_url`` at ``ref`` into a temp dir; return the env directory.

    A missing branch, repository or access is a ConfigError ("cannot clone ..."); a
    network failure is transient; an ``env_path`` leaving the repository is refused.
    """
    try:
        config = CloneConfig(branch=ref, sparse=False)
    except ValueError:
        raise ConfigError(f"cannot clone {redact(repo_url)} at {ref}: invalid ref") from None
    workdir = Path(tempfile.mkdtemp(prefix="shipyard-git-drill-"))
    try:
        clone(repo_url, workdir, config)
    except NonFastForward as exc:  # cannot happen on a clone; keep it transient
        raise TransientError(exc.message) from None
    except PermanentError as exc:
        raise ConfigError(f"cannot clone {redact(repo_url)} at {ref}: {exc.message}") from None
    env_dir = (workdir / env_path).resolve()
    if workdir.resolve() not in env_dir.parents and env_dir != workdir.resolve():
        raise ConfigError(f"env path {env_path} leaves the repository")
    return str(env_dir)
