"""A Flux-like source- and kustomize-controller for the simulated cluster.

``GitRepository`` (source.toolkit.fluxcd.io/v1): fetches ``spec.ref.branch`` of
``spec.url`` and records ``status.artifact.revision`` as ``<branch>@sha1:<sha>`` with a
Ready condition. ``Kustomization`` (kustomize.toolkit.fluxcd.io/v1): renders
``spec.path`` of its source's artifact and server-side applies it (field manager
``kustomize-controller``) into ``spec.targetNamespace``, pruning when ``spec.prune``;
then ``status.lastAppliedRevision``, ``lastAttemptedRevision``, ``observedGeneration``
and the Ready condition (ReconciliationSucceeded, "Applied revision: ...").

Both honour ``reconcile.fluxcd.io/requestedAt``: a new value triggers a reconcile and is
echoed in ``status.lastHandledReconcileAt`` (what ``flux reconcile`` waits for); both
also reconcile every ``spec.interval``.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from typing import Any

from shipyard.core.errors import ShipyardError
from tasks.sync.apply import apply_objects
from tasks.sync.render import render
from tasks.sync.source import SourceCache
from tests.fakes.operators.argocd import now
from tests.fakes.operators.base import JSON, Operator, WatchSpec

SOURCE_PATH = "/apis/source.toolkit.fluxcd.io/v1"
KS_PATH = "/apis/kustomize.toolkit.fluxcd.io/v1"
REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"
MANAGED_BY = "flux"


def parse_interval(text: Any, default: float = 60.0) -> float:
    """Go duration (``1m30s``, ``10s``) in seconds."""
    total, found = 0.0, False
    for value, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", str(text or "")):
        found = True
        total += float(value) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total if found else default


def ready(status: str, reason: str, message: str, generation: int) -> JSON:
    """A Ready condition in the kstatus shape Flux uses."""
    return {
        "type": "Ready",
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": now(),
    }


class FluxController(Operator):
    """See module docstring."""

    name = "flux"

    def __init__(
        self, api_client: Any, *, cache: SourceCache | None = None, min_interval: float = 1.0
    ) -> None:
        super().__init__(api_client)
        self.cache = cache or SourceCache()
        self.min_interval = min_interval

    def watches(self) -> list[WatchSpec]:
        return [
            WatchSpec(f"{SOURCE_PATH}/gitrepositories", {}, lambda o: [("git", *_nn(o))]),
            WatchSpec(f"{KS_PATH}/kustomizations", {}, lambda o: [("ks", *_nn(o))]),
        ]

    def stop(self) -> None:
        super().stop()
        self.cache.close()

    def reconcile(self, key: Hashable) -> float | None:
        assert isinstance(key, tuple)
        kind, ns, name = str(key[0]), str(key[1]), str(key[2])
        if kind == "git":
            return self._source(ns, name)
        return self._kustomization(ns, name)

    def _source(self, ns: str, name: str) -> float | None:
        path = f"{SOURCE_PATH}/namespaces/{ns}/gitrepositories/{name}"
        repo = self.kube.get(path)
        if repo is None:
            return None
        spec, status = repo.get("spec") or {}, repo.get("status") or {}
        meta = repo["metadata"]
        generation = int(meta.get("generation") or 1)
        requested = (meta.get("annotations") or {}).get(REQUESTED_AT)
        branch = str((spec.get("ref") or {}).get("branch") or "main")
        try:
            sha, _ = self.cache.fetch(str(spec.get("url")), branch, None, ".")
        except ShipyardError as exc:
            patch: JSON = {
                "observedGeneration": generation,
                "conditions": [ready("False", "GitOperationFailed", exc.message, generation)],
            }
            if requested:
                patch["lastHandledReconcileAt"] = requested
            self.kube.merge_patch(path + "/status", {"status": patch})
            return max(self.min_interval, 1.0)
        revision = f"{branch}@sha1:{sha}"
        new: JSON = {
            "observedGeneration": generation,
            "artifact": {
                "revision": revision,
                "lastUpdateTime": (status.get("artifact") or {}).get("lastUpdateTime")
                if (status.get("artifact") or {}).get("revision") == revision
                else now(),
                "path": f"gitrepository/{ns}/{name}/{sha}.tar.gz",
            },
            "conditions": [
                ready("True", "Succeeded", f"stored artifact for revision '{revision}'", generation)
            ],
        }
        if requested:
            new["lastHandledReconcileAt"] = requested
        changed = (status.get("artifact") or {}).get("revision") != revision
        if (
            changed
            or any(status.get(k) != v for k, v in new.items() if k != "conditions")
            or not status.get("conditions")
        ):
            self.kube.merge_patch(path + "/status", {"status": new})
        if changed or requested != status.get("lastHandledReconcileAt"):
            items, _ = self.kube.list(f"{KS_PATH}/namespaces/{ns}/kustomizations")
            for ks in items:
                ref = (ks.get("spec") or {}).get("sourceRef") or {}
                if ref.get("name") == name and ref.get("namespace", ns) == ns:
                    self.enqueue(("ks", ns, ks["metadata"]["name"]))
        return max(self.min_interval, parse_interval(spec.get("interval")))

    def _kustomization(self, ns: str, name: str) -> float | None:
        path = f"{KS_PATH}/namespaces/{ns}/kustomizations/{name}"
        ks = self.kube.get(path)
        if ks is None:
            return None
        spec, status, meta = ks.get("spec") or {}, ks.get("status") or {}, ks["metadata"]
        generation = int(meta.get("generation") or 1)
        requested = (meta.get("annotations") or {}).get(REQUESTED_AT)
        interval = max(self.min_interval, parse_interval(spec.get("interval")))
        ref = spec.get("sourceRef") or {}
        src_ns = ref.get("namespace") or ns
        source = self.kube.get(
            f"{SOURCE_PATH}/namespaces/{src_ns}/gitrepositories/{ref.get('name')}"
        )
        artifact = ((source or {}).get("status") or {}).get("artifact") or {}
        revision = artifact.get("revision")
        base: JSON = {"observedGeneration": generation}
        if requested:
            base["lastHandledReconcileAt"] = requested
        if not revision:
            base["conditions"] = [
                ready(
                    "False",
                    "ArtifactFailed",
                    f"Source 'GitRepository/{src_ns}/{ref.get('name')}' is not ready",
                    generation,
                )
            ]
            self.kube.merge_patch(path + "/status", {"status": base})
            return 0.5
        up_to_date = (
            status.get("lastAppliedRevision") == revision
            and status.get("observedGeneration") == generation
            and status.get("lastHandledReconcileAt") == requested
        )
        if up_to_date:
            return interval
        self.kube.merge_patch(
            path + "/status",
            {
                "status": {
                    "conditions": [
                        ready("Unknown", "Progressing", "Reconciliation in progress", generation)
                    ]
                }
            },
        )
        sha = str(revision).rsplit(":", 1)[-1]
        branch = str(revision).split("@", 1)[0]
        try:
            _, files = self.cache.fetch(
                str((source or {}).get("spec", {}).get("url")),
                branch,
                sha,
                ".",  # the whole tree: overlays reach ../base, as Flux's artifact holds it
            )
            objects = render(files, str(spec.get("path") or "."))
            apply_objects(
                self.kube,
                objects,
                namespace=str(spec.get("targetNamespace") or ns),
                app=name,
                managed_by=MANAGED_BY,
                field_manager="kustomize-controller",
                revision=sha,
                prune=bool(spec.get("prune")),
            )
        except ShipyardError as exc:
            base.update(
                lastAttemptedRevision=revision,
                conditions=[ready("False", "ReconciliationFailed", exc.message, generation)],
            )
            self.kube.merge_patch(path + "/status", {"status": base})
            return interval
        base.update(
            lastAppliedRevision=revision,
            lastAttemptedRevision=revision,
            conditions=[
                ready(
                    "True", "ReconciliationSucceeded", f"Applied revision: {revision}", generation
                )
            ],
        )
        self.kube.merge_patch(path + "/status", {"status": base})
        return interval


def _nn(obj: JSON) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace")), str(meta.get("name"))
