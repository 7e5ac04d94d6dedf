"""Argo CD driver through the Kubernetes API: what ``argocd app sync`` does, as data.

Sets the Application's ``operation`` (``sync.revision`` = the pushed commit, ``prune``,
``initiatedBy``, and an ``info`` entry carrying a unique sync id so our operation is
told apart from an earlier one of the same revision), then watches the Application
until :func:`judge_application` decides: ``status.operationState.phase`` Succeeded for
our operation with ``syncResult.revision`` and ``status.sync.revision`` = the commit (and
``status.health.status`` Healthy when ``wait_healthy``). Failed/Error is a failure; so is
health Degraded, and a regression Healthy -> Degraded is terminal.

"Another operation is already in progress" (``operation`` already set by someone else)
is transient: the driver waits for that operation to finish, within the deadline, then
sets its own; the write carries the resourceVersion it read, so two clients cannot both
believe they started the next operation.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

from shipyard.core.errors import ConfigError, PermanentError, PolicyError, TransientError
from shipyard.core.kube import KubeClient, KubeConflict
from tasks.sync.config import SyncConfig, SyncResult
from tasks.sync.wait import Verdict, wait_for_object

__all__ = ["SYNC_ID", "judge_application", "operation_for", "sync_argocd"]

JSON = dict[str, Any]
GROUP_PATH = "/apis/argoproj.io/v1alpha1"
SYNC_ID = "shipyard-sync-id"


def operation_for(revision: str | None, sync_id: str, prune: bool = True) -> JSON:
    """The ``operation`` Argo CD's API server would write for this sync request."""
    sync: JSON = {"prune": prune, "syncStrategy": {"apply": {"force": False}}}
    if revision:
        sync["revision"] = revision
    return {
        "sync": sync,
        "initiatedBy": {"username": "shipyard", "automated": False},
        "info": [{"name": SYNC_ID, "value": sync_id}],
    }


def _ours(op_state: Mapping[str, Any], sync_id: str) -> bool:
    infos = ((op_state.get("operation") or {}).get("info")) or []
    return any(i.get("name") == SYNC_ID and i.get("value") == sync_id for i in infos)


def _same(revision: str | None, other: Any) -> bool:
    return revision is None or (isinstance(other, str) and other.startswith(revision))


def judge_application(
    app: Mapping[str, Any] | None,
    revision: str | None,
    sync_id: str,
    *,
    wait_healthy: bool,
    seen_healthy: bool = False,
) -> Verdict | None:
    """Has our sync of ``revision`` finished (ok), failed, or not yet (None)? Pure."""
    if app is None:
        return Verdict(False, "the Application was deleted")
    status = app.get("status") or {}
    op_state = status.get("operationState") or {}
    if not _ours(op_state, sync_id):
        return None  # the controller has not picked our operation up yet
    phase = op_state.get("phase")
    if phase in ("Failed", "Error"):
        return Verdict(False, f"sync {phase.lower()}: {op_state.get('message', '')}")
    if phase != "Succeeded" or app.get("operation"):
        return None
    synced = (op_state.get("syncResult") or {}).get("revision")
    if not _same(revision, synced) or not _same(
        revision, (status.get("sync") or {}).get("revision")
    ):
        return Verdict(False, f"Argo CD synced {synced}, not {revision}")
    if not wait_healthy:
        return Verdict(True, "Synced")
    health = (status.get("health") or {}).get("status")
    if health == "Healthy":
        return Verdict(True, "Synced and Healthy")
    if health == "Degraded":
        detail = (status.get("health") or {}).get("message", "")
        prefix = "regressed from Healthy to Degraded" if seen_healthy else "health is Degraded"
        return Verdict(False, f"{prefix}: {detail}".rstrip(": "))
    return None


def sync_argocd(kube: KubeClient, config: SyncConfig) -> SyncResult:
    """Sync ``config.application`` to ``config.revision`` (see module docstring)."""
    started = time.monotonic()
    deadline = started + config.timeout_seconds
    ns, name = config.application_namespace, str(config.application)
    collection = f"{GROUP_PATH}/namespaces/{ns}/applications"
    path = f"{collection}/{name}"
    sync_id = uuid.uuid4().hex
    while True:
        app = kube.get(path)
        if app is None:
            raise ConfigError(f"Argo CD Application {ns}/{name} does not exist")
        if app.get("operation"):
            # another operation is already in progress: wait for it, then try again
            wait_for_object(
                kube,
                collection,
                name,
                lambda a: Verdict(True) if not (a or {}).get("operation") else None,
                deadline,
                what=f"the operation in progress on Application {name}",
            )
            continue
        patch = {
            "metadata": {"resourceVersion": app["metadata"]["resourceVersion"]},
            "operation": operation_for(config.revision, sync_id, config.prune),
        }
        try:
            kube.merge_patch(path, patch)
            break
        except KubeConflict:
            if time.monotonic() > deadline:
                raise TransientError(
                    f"Application {name}: another operation is already in progress"
                ) from None
    health_seen = {"healthy": False}

    def judge(obj: JSON | None) -> Verdict | None:
        health = (((obj or {}).get("status") or {}).get("health") or {}).get("status")
        verdict = judge_application(
            obj,
            config.revision,
            sync_id,
            wait_healthy=config.wait_healthy,
            seen_healthy=health_seen["healthy"],
        )
        if health == "Healthy":
            health_seen["healthy"] = True
        return verdict

    verdict, final = wait_for_object(
        kube, collection, name, judge, deadline, what=f"Argo CD sync of {name}"
    )
    if not verdict.ok:
        cls = PolicyError if "Degraded" in verdict.message else PermanentError
        raise cls(f"Argo CD Application {name}: {verdict.message}")
    return result_from_application(final or {}, config, time.monotonic() - started)


def result_from_application(
    app: Mapping[str, Any], config: SyncConfig, seconds: float
) -> SyncResult:
    """A SyncResult from the Application's last operation."""
    status = app.get("status") or {}
    op_state = status.get("operationState") or {}
    resources = (op_state.get("syncResult") or {}).get("resources") or []
    return SyncResult(
        revision=str((op_state.get("syncResult") or {}).get("revision") or config.revision or ""),
        driver=config.driver,
        applied=[f"{r['kind']}/{r['name']}" for r in resources if r.get("status") != "Pruned"],
        pruned=[f"{r['kind']}/{r['name']}" for r in resources if r.get("status") == "Pruned"],
        seconds=seconds,
        health=(status.get("health") or {}).get("status"),
    )
