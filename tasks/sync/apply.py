"""Direct apply: render the path at the commit, server-side apply it, prune the leftovers.

The whole repository is checked out at the commit and the path rendered with real
kustomize (:mod:`tasks.sync.render`), so overlays reaching ``../base`` and every
kustomize feature apply exactly as ``kubectl kustomize`` prints them; workloads carry
the commit as their ``kubernetes.io/change-cause``.

The seed's ``kubectl apply --recursive`` stage done right: server-side apply with a
field manager (so fields other managers own, e.g. an HPA's replicas, are not fought
over), every object labelled with the app's ownership labels, and a prune that deletes
only objects carrying this app's labels in this namespace that git no longer declares.
Cluster-scoped objects are refused: the driver is namespace-scoped by design.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipyard.core.errors import ConfigError
from shipyard.core.kube import KubeClient, Resource
from shipyard.core.selectors import ownership_selector
from tasks.sync.config import SyncConfig, SyncResult
from tasks.sync.render import (
    apply_order,
    change_cause,
    object_key,
    object_ref,
    plan_prune,
    render_tree,
    stamp,
)
from tasks.sync.source import SourceCache, checkout_local

__all__ = [
    "PRUNE_KINDS",
    "Rendered",
    "apply_objects",
    "load_objects",
    "render_commit",
    "sync_apply",
]

JSON = dict[str, Any]
# Namespaced kinds looked at by prune besides the ones rendered (kubectl's allowlist).
PRUNE_KINDS: tuple[tuple[str, str], ...] = (
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("v1", "Service"),
    ("v1", "ServiceAccount"),
    ("v1", "PersistentVolumeClaim"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "StatefulSet"),
    ("apps/v1", "DaemonSet"),
    ("batch/v1", "Job"),
    ("batch/v1", "CronJob"),
    ("networking.k8s.io/v1", "Ingress"),
)


@dataclass(frozen=True)
class Rendered:
    """What ``config.path`` declares at one commit, and that commit."""

    sha: str
    subject: str
    objects: list[JSON]


def render_commit(config: SyncConfig, cache: SourceCache | None = None) -> Rendered:
    """Check the whole repo out at ``config.revision`` and render ``config.path`` in it.

    The repo is a working tree directory (only committed content counts) or a URL
    (fetched through ``cache``). The checkout lives in a scratch directory for the time
    of the render, so a kustomization may reach ``../base`` anywhere in the repo.
    """
    assert config.repo is not None and config.path is not None
    repo = config.repo
    with tempfile.TemporaryDirectory(prefix="shipyard-sync-") as scratch:
        dest = Path(scratch) / "tree"
        if "://" in repo or repo.endswith(".git") or "@" in repo.split("/", 1)[0]:
            own = cache is None
            cache = cache or SourceCache()
            try:
                checkout = cache.checkout(repo, config.branch, config.revision, dest)
            finally:
                if own:
                    cache.close()
        else:
            checkout = checkout_local(repo, config.revision, dest)
        objects = render_tree(checkout.root, config.path)
    return Rendered(sha=checkout.sha, subject=checkout.subject, objects=objects)


def load_objects(config: SyncConfig, cache: SourceCache | None = None) -> tuple[str, list[JSON]]:
    """(sha, rendered objects) of ``config.path`` at ``config.revision`` of ``config.repo``."""
    rendered = render_commit(config, cache)
    return rendered.sha, rendered.objects


def apply_objects(
    kube: KubeClient,
    objects: Iterable[JSON],
    *,
    namespace: str,
    app: str,
    managed_by: str,
    field_manager: str,
    revision: str | None,
    prune: bool,
    cause: str | None = None,
) -> tuple[list[str], list[str]]:
    """Apply ``objects`` into ``namespace`` and prune; returns (applied, pruned) refs.

    ``cause`` is the change-cause workloads carry (see :func:`tasks.sync.render.stamp`).
    """
    desired: list[tuple[Resource, JSON]] = []
    for obj in apply_order(objects):
        resource = kube.resource(str(obj["apiVersion"]), str(obj["kind"]))
        if not resource.namespaced:
            raise ConfigError(
                f"{object_ref(obj)} is cluster-scoped; direct apply only writes namespace "
                f"{namespace} (apply it separately or use an operator)"
            )
        declared_ns = (obj.get("metadata") or {}).get("namespace")
        if declared_ns not in (None, namespace):
            raise ConfigError(
                f"{object_ref(obj)} declares namespace {declared_ns}, not {namespace}"
            )
        desired.append(
            (
                resource,
                stamp(
                    obj,
                    namespace=namespace,
                    app=app,
                    managed_by=managed_by,
                    revision=revision,
                    cause=cause,
                ),
            )
        )
    keys = [object_key(o) for _, o in desired]
    dupes = sorted({f"{k[1]}/{k[3]}" for k in keys if keys.count(k) > 1})
    if dupes:
        raise ConfigError(f"objects declared twice: {', '.join(dupes)}")
    applied = []
    for resource, obj in desired:
        kube.apply(resource, obj, field_manager)
        applied.append(object_ref(obj))
    pruned: list[str] = []
    if prune:
        pruned = _prune(kube, [o for _, o in desired], namespace, app, managed_by)
    return applied, pruned


def _prune(
    kube: KubeClient, desired: list[JSON], namespace: str, app: str, managed_by: str
) -> list[str]:
    selector = ownership_selector(app, managed_by)
    kinds = dict.fromkeys(PRUNE_KINDS)
    for obj in desired:
        kinds[(str(obj["apiVersion"]), str(obj["kind"]))] = None
    pruned = []
    for api_version, kind in kinds:
        try:
            resource = kube.resource(api_version, kind)
        except ConfigError:
            continue  # the server does not serve this kind: nothing of it to prune
        if not resource.namespaced:
            continue
        live, _ = kube.list(resource.path(namespace), {"labelSelector": selector})
        for obj in live:
            obj.setdefault("apiVersion", api_version)
            obj.setdefault("kind", kind)
        for obj in plan_prune(live, desired):
            if kube.delete(resource.path(namespace, obj["metadata"]["name"])):
                pruned.append(object_ref(obj))
    return pruned


def sync_apply(
    kube: KubeClient, config: SyncConfig, cache: SourceCache | None = None
) -> SyncResult:
    """The apply driver: render, server-side apply, prune (see module docstring)."""
    started = time.monotonic()
    assert config.namespace is not None
    rendered = render_commit(config, cache)
    applied, pruned = apply_objects(
        kube,
        rendered.objects,
        namespace=config.namespace,
        app=config.app,
        managed_by=config.field_manager,
        field_manager=config.field_manager,
        revision=rendered.sha,
        prune=config.prune,
        cause=change_cause(rendered.sha, rendered.subject),
    )
    return SyncResult(
        revision=rendered.sha,
        driver="apply",
        applied=applied,
        pruned=pruned,
        seconds=time.monotonic() - started,
    )
