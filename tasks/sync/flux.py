"""Flux driver: ask for a reconcile and wait until the commit is applied.

What ``flux reconcile kustomization --with-source`` does: set
``reconcile.fluxcd.io/requestedAt`` to a fresh token on the GitRepository and the
Kustomization, then watch the Kustomization until :func:`judge_kustomization` decides:
``status.lastHandledReconcileAt`` is our token, Ready is True and
``status.lastAppliedRevision`` (``main@sha1:<sha>``) contains the commit. Ready False
for an attempt of our commit is a failure quoting Flux's message.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from shipyard.core.errors import ConfigError, PermanentError
from shipyard.core.kube import KubeClient
from tasks.sync.config import SyncConfig, SyncResult
from tasks.sync.wait import Verdict, wait_for_object

__all__ = ["REQUESTED_AT", "judge_kustomization", "sync_flux"]

REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"
KS_PATH = "/apis/kustomize.toolkit.fluxcd.io/v1"
SOURCE_PATH = "/apis/source.toolkit.fluxcd.io/v1"


def _ready(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return dict(cond)
    return {}


def _has(revision_field: Any, commit: str | None) -> bool:
    return isinstance(revision_field, str) and (
        commit is None or revision_field.rsplit(":", 1)[-1].startswith(commit)
    )


def judge_kustomization(
    ks: Mapping[str, Any] | None, token: str, commit: str | None
) -> Verdict | None:
    """Has the reconcile we requested applied ``commit`` (ok), failed, or not yet? Pure."""
    if ks is None:
        return Verdict(False, "the Kustomization was deleted")
    status = ks.get("status") or {}
    if status.get("lastHandledReconcileAt") != token:
        return None
    ready = _ready(ks)
    if ready.get("status") == "True" and _has(status.get("lastAppliedRevision"), commit):
        return Verdict(True, str(ready.get("message", "")))
    if ready.get("status") == "False" and _has(status.get("lastAttemptedRevision"), commit):
        return Verdict(False, f"{ready.get('reason')}: {ready.get('message', '')}")
    return None


def sync_flux(kube: KubeClient, config: SyncConfig) -> SyncResult:
    """Reconcile ``config.kustomization`` to ``config.revision`` (see module docstring)."""
    started = time.monotonic()
    deadline = started + config.timeout_seconds
    ns, name = config.flux_namespace, str(config.kustomization)
    collection = f"{KS_PATH}/namespaces/{ns}/kustomizations"
    ks = kube.get(f"{collection}/{name}")
    if ks is None:
        raise ConfigError(f"Flux Kustomization {ns}/{name} does not exist")
    ref = (ks.get("spec") or {}).get("sourceRef") or {}
    source = config.source or ref.get("name")
    token = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    patch = {"metadata": {"annotations": {REQUESTED_AT: token}}}
    if source and ref.get("kind", "GitRepository") == "GitRepository":
        src_ns = ref.get("namespace") or ns
        if (
            kube.merge_patch(f"{SOURCE_PATH}/namespaces/{src_ns}/gitrepositories/{source}", patch)
            is None
        ):
            raise ConfigError(f"Flux GitRepository {src_ns}/{source} does not exist")
    kube.merge_patch(f"{collection}/{name}", patch)
    last: dict[str, Any] = {}

    def judge(obj: dict[str, Any] | None) -> Verdict | None:
        last["obj"] = obj
        return judge_kustomization(obj, token, config.revision)

    def waiting() -> str:
        obj = last.get("obj") or {}
        status = obj.get("status") or {}
        return (
            f"last applied {status.get('lastAppliedRevision')}, "
            f"Ready: {_ready(obj).get('message', 'unknown')}"
        )

    verdict, final = wait_for_object(
        kube, collection, name, judge, deadline, waiting=waiting, what=f"Flux Kustomization {name}"
    )
    if not verdict.ok:
        raise PermanentError(f"Flux Kustomization {name}: {verdict.message}")
    applied = str(((final or {}).get("status") or {}).get("lastAppliedRevision") or "")
    return SyncResult(
        revision=applied.rsplit(":", 1)[-1] or str(config.revision or ""),
        driver="flux",
        seconds=time.monotonic() - started,
        health=None,
    )
