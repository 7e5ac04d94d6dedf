"""An Argo CD-like application controller for the simulated cluster.

What it does, in the fields real Argo CD uses (``argoproj.io/v1alpha1`` Application):

- a client requests a sync by setting ``operation.sync`` (``revision``, ``prune``) on the
  Application, as ``argocd app sync`` does; the controller records
  ``status.operationState`` (``phase`` Running -> Succeeded/Failed, ``startedAt``,
  ``finishedAt``, ``message``, ``syncResult.revision``), clears ``operation`` when done,
  and sets ``status.sync`` (``status`` Synced/OutOfSync, ``revision``) and ``history``;
- while ``operation`` is set, another operation is "already in progress" (clients must
  not overwrite it; see :mod:`tasks.sync.argocd`);
- ``status.health.status`` follows the managed workloads (Healthy, Progressing,
  Degraded, Missing), re-evaluated on every change of a managed Deployment/StatefulSet/
  DaemonSet, as Argo CD's live-state cache does.

Sync reads ``spec.source.repoURL`` at the revision, renders ``spec.source.path``
(plain YAML or kustomize ``images:``) and server-side applies it into
``spec.destination.namespace`` with field manager ``argocd-controller``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Hashable
from datetime import UTC, datetime
from typing import Any

from shipyard.core.errors import ShipyardError
from tasks.sync.apply import apply_objects
from tasks.sync.render import APP_LABEL, MANAGED_BY_LABEL, render
from tasks.sync.source import SourceCache
from tests.fakes.operators.base import JSON, Operator, WatchSpec

GROUP_PATH = "/apis/argoproj.io/v1alpha1"
MANAGED_BY = "argocd"
WORKLOADS = (("apps/v1", "deployments"), ("apps/v1", "statefulsets"), ("apps/v1", "daemonsets"))
_SHA = re.compile(r"^[0-9a-f]{40}$")


def now() -> str:
    """RFC 3339 UTC timestamp, as Kubernetes writes them."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def workload_health(obj: JSON) -> tuple[str, str]:
    """Argo CD's health of a Deployment/StatefulSet/DaemonSet: (status, message)."""
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    if int(meta.get("generation") or 0) > int(status.get("observedGeneration") or 0):
        return "Progressing", "Waiting for rollout to finish: observed generation is stale"
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return "Degraded", f'Deployment "{meta.get("name")}" exceeded its progress deadline'
    kind = obj.get("kind")
    if kind == "DaemonSet":
        desired = int(status.get("desiredNumberScheduled") or 0)
        if (
            int(status.get("updatedNumberScheduled") or 0) < desired
            or int(status.get("numberAvailable") or 0) < desired
        ):
            return "Progressing", "Waiting for daemon set rollout to finish"
        return "Healthy", ""
    desired = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
    updated = int(status.get("updatedReplicas") or 0)
    if kind == "StatefulSet":
        if int(status.get("readyReplicas") or 0) < desired or updated < desired:
            return "Progressing", "Waiting for statefulset rollout to finish"
        return "Healthy", ""
    if updated < desired:
        return "Progressing", f"Waiting for rollout to finish: {updated} of {desired} updated"
    if int(status.get("replicas") or 0) > updated:
        return "Progressing", "Waiting for rollout to finish: old replicas are pending termination"
    if int(status.get("availableReplicas") or 0) < updated:
        return "Progressing", "Waiting for rollout to finish: updated replicas not yet available"
    return "Healthy", ""


_ORDER = {"Healthy": 0, "Progressing": 1, "Missing": 2, "Degraded": 3}


class ArgoCDController(Operator):
    """See module docstring. ``sync_delay`` stretches a sync (to test "in progress")."""

    name = "argocd"

    def __init__(
        self, api_client: Any, *, sync_delay: float = 0.0, cache: SourceCache | None = None
    ) -> None:
        super().__init__(api_client)
        self.sync_delay = sync_delay
        self.cache = cache or SourceCache()
        self._app_ns: dict[str, str] = {}

    def watches(self) -> list[WatchSpec]:
        specs = [WatchSpec(f"{GROUP_PATH}/applications", {}, self._app_key)]
        selector = {"labelSelector": f"{MANAGED_BY_LABEL}={MANAGED_BY}"}
        for api_version, plural in WORKLOADS:
            specs.append(WatchSpec(f"/apis/{api_version}/{plural}", selector, self._owner_key))
        return specs

    def _app_key(self, obj: JSON) -> list[Hashable]:
        meta = obj.get("metadata") or {}
        self._app_ns[str(meta.get("name"))] = str(meta.get("namespace"))
        return [(meta.get("namespace"), meta.get("name"))]

    def _owner_key(self, obj: JSON) -> list[Hashable]:
        app = ((obj.get("metadata") or {}).get("labels") or {}).get(APP_LABEL)
        ns = self._app_ns.get(str(app))
        return [(ns, app)] if app and ns else []

    def stop(self) -> None:
        super().stop()
        self.cache.close()

    # -- reconcile -----------------------------------------------------------------------

    def reconcile(self, key: Hashable) -> float | None:
        assert isinstance(key, tuple)
        ns, name = str(key[0]), str(key[1])
        path = f"{GROUP_PATH}/namespaces/{ns}/applications/{name}"
        app = self.kube.get(path)
        if app is None:
            return None
        self._app_ns[name] = ns
        operation = app.get("operation")
        if isinstance(operation, dict) and operation.get("sync") is not None:
            self._sync(path, app, operation)
            app = self.kube.get(path) or app
        self._refresh_health(path, app)
        return None

    def _sync(self, path: str, app: JSON, operation: JSON) -> None:
        spec = app.get("spec") or {}
        source = spec.get("source") or {}
        started = now()
        op_state: JSON = {
            "operation": operation,
            "phase": "Running",
            "startedAt": started,
            "message": "one or more tasks are running",
        }
        self.kube.merge_patch(path, {"status": {"operationState": op_state}})
        if self.sync_delay:
            time.sleep(self.sync_delay)
        sync = operation.get("sync") or {}
        target = str(source.get("targetRevision") or "HEAD")
        branch = "main" if target in ("HEAD", "") or _SHA.match(target) else target
        revision = sync.get("revision") or (target if _SHA.match(target) else None)
        prune = bool(sync.get("prune")) or bool(
            ((spec.get("syncPolicy") or {}).get("automated") or {}).get("prune")
        )
        namespace = str((spec.get("destination") or {}).get("namespace") or "default")
        try:
            sha, files = self.cache.fetch(
                str(source.get("repoURL")), branch, revision, "."
            )  # the whole tree: overlays reach ../base, as Argo CD's repo server allows
            objects = render(files, str(source.get("path") or "."))
            applied, pruned = apply_objects(
                self.kube,
                objects,
                namespace=namespace,
                app=str(app["metadata"]["name"]),
                managed_by=MANAGED_BY,
                field_manager="argocd-controller",
                revision=sha,
                prune=prune,
            )
        except ShipyardError as exc:
            op_state.update(phase="Failed", finishedAt=now(), message=exc.message)
            self.kube.merge_patch(
                path,
                {
                    "operation": None,
                    "status": {"operationState": op_state, "sync": {"status": "OutOfSync"}},
                },
            )
            return
        results = [
            {
                "kind": r.split("/")[0],
                "name": r.split("/")[1],
                "namespace": namespace,
                "status": "Synced",
                "message": "serverside-applied",
            }
            for r in applied
        ]
        results += [
            {
                "kind": r.split("/")[0],
                "name": r.split("/")[1],
                "namespace": namespace,
                "status": "Pruned",
                "message": "pruned",
            }
            for r in pruned
        ]
        op_state.update(
            phase="Succeeded",
            finishedAt=now(),
            message="successfully synced (all tasks run)",
            syncResult={"revision": sha, "source": source, "resources": results},
        )
        history = list((app.get("status") or {}).get("history") or [])
        history.append(
            {
                "revision": sha,
                "deployedAt": now(),
                "id": len(history),
                "source": source,
                "deployStartedAt": started,
            }
        )
        self.kube.merge_patch(
            path,
            {
                "operation": None,
                "status": {
                    "operationState": op_state,
                    "sync": {
                        "status": "Synced",
                        "revision": sha,
                        "comparedTo": {"source": source, "destination": spec.get("destination")},
                    },
                    "history": history[-10:],
                    "reconciledAt": now(),
                },
            },
        )

    def _refresh_health(self, path: str, app: JSON) -> None:
        spec = app.get("spec") or {}
        namespace = str((spec.get("destination") or {}).get("namespace") or "default")
        name = str(app["metadata"]["name"])
        selector = {"labelSelector": f"{MANAGED_BY_LABEL}={MANAGED_BY},{APP_LABEL}={name}"}
        worst, message = "Healthy", ""
        resources = []
        for api_version, plural in WORKLOADS:
            kind = {
                "deployments": "Deployment",
                "statefulsets": "StatefulSet",
                "daemonsets": "DaemonSet",
            }[plural]
            items, _ = self.kube.list(
                f"/apis/{api_version}/namespaces/{namespace}/{plural}", selector
            )
            for obj in items:
                obj["kind"] = kind
                health, why = workload_health(obj)
                resources.append(
                    {
                        "group": "apps",
                        "version": "v1",
                        "kind": kind,
                        "namespace": namespace,
                        "name": obj["metadata"]["name"],
                        "status": "Synced",
                        "health": {"status": health},
                    }
                )
                if _ORDER[health] > _ORDER[worst]:
                    worst, message = health, why
        status = app.get("status") or {}
        if not (status.get("sync") or {}).get("revision") and not resources:
            worst = "Missing"
        health_doc = {"status": worst, **({"message": message} if message else {})}
        if status.get("health") != health_doc or status.get("resources") != resources:
            self.kube.merge_patch(
                path,
                {"status": {"health": health_doc, "resources": resources, "reconciledAt": now()}},
            )
