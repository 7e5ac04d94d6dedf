"""Detect drift: does the cluster still run what git declares?

Renders the environment's path at the branch tip (or a given revision), fetches the live
objects, and compares both after normalization (status, managed fields, server metadata
and defaults ignored; only fields git declares are compared, so API defaulting is not
drift). Reports objects missing from the cluster, objects whose declared fields differ,
and objects still carrying the app's ownership label that git no longer declares.

Pure core: :func:`compare_objects`. I/O: :func:`detect_drift` (git + Kubernetes API,
through a :class:`~shipyard.core.kube.KubeClient` the caller builds). No Prefect here: the
``detect-drift`` task wraps this in :mod:`tasks.steps.drift`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shipyard.core.errors import ConfigError
from shipyard.core.kube import KubeClient
from shipyard.core.manifests import diff_objects, normalize
from shipyard.core.selectors import ownership_selector
from tasks.sync.apply import PRUNE_KINDS, load_objects
from tasks.sync.config import SyncConfig
from tasks.sync.render import (
    APP_LABEL,
    MANAGED_BY_LABEL,
    REVISION_ANNOTATION,
    object_key,
    object_ref,
    plan_prune,
)

__all__ = [
    "DriftConfig",
    "DriftItem",
    "DriftReport",
    "compare_objects",
    "detect_drift",
]

JSON = dict[str, Any]
_OWN_LABELS = (MANAGED_BY_LABEL, APP_LABEL)


class DriftConfig(BaseModel):
    """Where git declares the app and how the cluster marks what it applied."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    repo: str = Field(description="GitOps repo (URL or working tree).")
    path: str = Field(description="Environment path in the repo.")
    namespace: str = Field(description="Namespace the app runs in.")
    branch: str = Field("main", description="Branch compared (its tip) unless revision is set.")
    revision: str | None = Field(None, description="Compare with this commit instead of the tip.")
    app: str = Field("app", description="Value of the app ownership label.")
    managed_by: str = Field(
        "shipyard", description="Value of the managed-by label (shipyard, argocd or flux)."
    )

    def sync_config(self) -> SyncConfig:
        """The apply-driver config reading the same path (used to render it)."""
        return SyncConfig(
            driver="apply",
            repo=self.repo,
            path=self.path,
            branch=self.branch,
            namespace=self.namespace,
            revision=self.revision,
            app=self.app,
        )


class DriftItem(BaseModel):
    """One object that differs."""

    object: str = Field(description="Kind/name.")
    change: Literal["missing", "modified", "extra"] = Field(description="What differs.")
    differences: list[str] = Field(default_factory=list, description="Field-level details.")


class DriftReport(BaseModel):
    """The whole comparison."""

    revision: str = Field(description="Git commit compared with.")
    namespace: str = Field(description="Namespace compared.")
    items: list[DriftItem] = Field(default_factory=list, description="Differences found.")
    healed: bool = Field(False, description="True when a heal sync ran and drift is gone.")

    @property
    def drifted(self) -> bool:
        """True when anything differs."""
        return bool(self.items)


def _comparable(obj: Mapping[str, Any]) -> JSON:
    """Normalized, without the ownership labels and revision annotation Shipyard adds."""
    out = normalize(obj)
    meta = out.get("metadata") or {}
    for label in _OWN_LABELS:
        (meta.get("labels") or {}).pop(label, None)
    (meta.get("annotations") or {}).pop(REVISION_ANNOTATION, None)
    for field in ("labels", "annotations"):
        if field in meta and not meta[field]:
            meta.pop(field)
    return out


def compare_objects(
    desired: Sequence[Mapping[str, Any]],
    live: Mapping[tuple[str, str, str, str], Mapping[str, Any] | None],
    owned_live: Sequence[Mapping[str, Any]] = (),
) -> list[DriftItem]:
    """Drift between git's ``desired`` objects and the ``live`` ones (pure).

    ``live`` maps :func:`object_key` of each desired object to the live object (None when
    absent); ``owned_live`` are live objects with the app's ownership label, of which
    those git no longer declares are "extra".
    """
    items: list[DriftItem] = []
    for obj in desired:
        current = live.get(object_key(obj))
        if current is None:
            items.append(DriftItem(object=object_ref(obj), change="missing"))
            continue
        diffs = [
            d
            for d in diff_objects(_comparable(obj), _comparable(current))
            if d.change != "unexpected"
        ]
        if diffs:
            secret = obj.get("kind") == "Secret"
            items.append(
                DriftItem(
                    object=object_ref(obj),
                    change="modified",
                    differences=[d.render(secret=secret) for d in diffs],
                )
            )
    for obj in plan_prune(owned_live, desired):
        items.append(DriftItem(object=object_ref(obj), change="extra"))
    return items


def detect_drift(kube: KubeClient, config: DriftConfig) -> DriftReport:
    """Render git, read the cluster, compare (see module docstring)."""
    sha, objects = load_objects(config.sync_config())
    desired = []
    live: dict[tuple[str, str, str, str], JSON | None] = {}
    for obj in objects:
        resource = kube.resource(str(obj["apiVersion"]), str(obj["kind"]))
        if not resource.namespaced:
            raise ConfigError(f"{object_ref(obj)} is cluster-scoped; drift check is per namespace")
        placed = {**obj, "metadata": {**(obj.get("metadata") or {}), "namespace": config.namespace}}
        desired.append(placed)
        found = kube.get(resource.path(config.namespace, placed["metadata"]["name"]))
        if found is not None:
            found.setdefault("apiVersion", obj["apiVersion"])
            found.setdefault("kind", obj["kind"])
        live[object_key(placed)] = found
    owned: list[JSON] = []
    selector = ownership_selector(config.app, config.managed_by)
    kinds = dict.fromkeys(
        [*PRUNE_KINDS, *((str(o["apiVersion"]), str(o["kind"])) for o in desired)]
    )
    for api_version, kind in kinds:
        try:
            resource = kube.resource(api_version, kind)
        except ConfigError:
            continue
        items, _ = kube.list(resource.path(config.namespace), {"labelSelector": selector})
        for item in items:
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
        owned.extend(items)
    return DriftReport(
        revision=sha, namespace=config.namespace, items=compare_objects(desired, live, owned)
    )
