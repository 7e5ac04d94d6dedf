"""Read whole namespaces as normalized objects: what a backup stores and what a restore
drill compares.

One function, :func:`export_objects`: discover every listable namespaced kind, list it
in each namespace (in parallel), drop derived and controller-owned objects, normalize
the rest, add the Namespace objects and the CRDs their custom resources need. Secret
values met on the way are registered for redaction.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from shipyard.core.errors import ConfigError
from shipyard.core.kube import KubeClient, Resource
from shipyard.core.manifests import SKIPPED_KINDS, normalize, register_secret_values, skip_reason
from shipyard.core.parallel import DEFAULT_WORKERS, parallel_map

__all__ = ["discover_namespaced", "export_objects"]

JSON = dict[str, Any]

# Kinds handled outside the per-namespace listing.
_CLUSTER_CRD = Resource(
    "apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False
)
# Groups served by Kubernetes itself: their kinds need no CRD in a backup.
BUILTIN_GROUPS = frozenset(
    {
        "",
        "apps",
        "batch",
        "autoscaling",
        "policy",
        "rbac.authorization.k8s.io",
        "networking.k8s.io",
        "coordination.k8s.io",
        "storage.k8s.io",
        "apiextensions.k8s.io",
        "discovery.k8s.io",
        "events.k8s.io",
        "metrics.k8s.io",
        "authorization.k8s.io",
        "authentication.k8s.io",
        "certificates.k8s.io",
        "scheduling.k8s.io",
        "node.k8s.io",
        "admissionregistration.k8s.io",
        "apiregistration.k8s.io",
        "flowcontrol.apiserver.k8s.io",
        "resource.k8s.io",
    }
)
# Groups whose kinds are observations or reviews, never state worth exporting.
_UNEXPORTED_GROUPS = frozenset({"metrics.k8s.io", "events.k8s.io", "authorization.k8s.io"})


def discover_namespaced(kube: KubeClient, workers: int = DEFAULT_WORKERS) -> list[Resource]:
    """Namespaced, listable kinds worth exporting (derived kinds filtered at discovery)."""
    seen: set[tuple[str, str]] = set()
    out: list[Resource] = []
    for k in kube.discover(workers):
        if not k.namespaced or k.kind in SKIPPED_KINDS or (k.group, k.plural) in seen:
            continue
        if k.group in _UNEXPORTED_GROUPS:
            continue
        seen.add((k.group, k.plural))
        out.append(k)
    return out


def export_objects(
    kube: KubeClient,
    namespaces: Sequence[str],
    *,
    include_crds: bool = True,
    workers: int = DEFAULT_WORKERS,
) -> tuple[list[JSON], dict[str, int]]:
    """List and normalize everything in ``namespaces`` (plus their Namespace objects and
    the CRDs their custom resources need); returns (objects, skipped count per kind)."""
    kinds = discover_namespaced(kube, workers)
    ns_objects = parallel_map(
        lambda n: kube.get(f"/api/v1/namespaces/{n}"), list(namespaces), workers
    )
    missing = [n for n, o in zip(namespaces, ns_objects, strict=True) if o is None]
    if missing:
        raise ConfigError(f"namespaces not found: {', '.join(missing)}")
    jobs = [(k, n) for k in kinds for n in namespaces]
    listed = parallel_map(lambda job: kube.list_objects(job[0], job[1]), jobs, workers)
    objects: list[JSON] = []
    skipped: Counter[str] = Counter()
    used_custom: set[tuple[str, str]] = set()
    for (kind, _ns), items in zip(jobs, listed, strict=True):
        for item in items:
            if skip_reason(item) is not None:
                skipped[kind.kind] += 1
                continue
            register_secret_values(item)
            objects.append(normalize(item))
            if kind.group not in BUILTIN_GROUPS:
                used_custom.add((kind.group, kind.plural))
    for ns_obj in ns_objects:
        assert ns_obj is not None
        ns_obj.setdefault("apiVersion", "v1")
        ns_obj.setdefault("kind", "Namespace")
        objects.append(normalize(ns_obj))
    if include_crds and used_custom:
        for crd in kube.list_objects(_CLUSTER_CRD):
            spec = crd.get("spec") or {}
            if (spec.get("group"), (spec.get("names") or {}).get("plural")) in used_custom:
                objects.append(normalize(crd))
    return objects, dict(skipped)
