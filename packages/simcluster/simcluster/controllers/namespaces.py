"""A terminating namespace's status conditions, as kube-controller-manager reports them.

While a deleted namespace still holds content, its ``status.conditions`` say what remains
(``NamespaceContentRemaining``: ``"<resource>.<group> has N resource instances"``) and which
finalizers hold it (``NamespaceFinalizersRemaining``), beside the three failure conditions
the real namespace deleter always sets to False.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from simcluster.clock import now_iso
from simcluster.errors import ApiError
from simcluster.store import Store, clone

JSON = dict[str, Any]

FIXED = (
    (
        "NamespaceDeletionDiscoveryFailure",
        "ResourcesDiscovered",
        "All resources successfully discovered",
    ),
    (
        "NamespaceDeletionGroupVersionParsingFailure",
        "ParsedGroupVersions",
        "All legacy kube types successfully parsed",
    ),
    (
        "NamespaceDeletionContentFailure",
        "ContentDeleted",
        "All content successfully deleted, may be waiting on finalization",
    ),
)


def report_remaining(store: Store, name: str) -> None:
    """Write the namespace's deletion conditions from what is still in it."""
    ns_rt = store.registry.by_key("", "namespaces")
    assert ns_rt is not None
    ns = store.try_get(ns_rt, "", name)
    if ns is None:
        return
    counts: Counter[str] = Counter()
    finalizers: Counter[str] = Counter()
    for rt in store.registry.all():
        if not rt.namespaced:
            continue
        for obj in store.select(rt, name):
            counts[f"{rt.plural}.{rt.group}"] += 1
            for f in obj["metadata"].get("finalizers") or []:
                finalizers[f] += 1
    wanted: list[tuple[str, str, str, str]] = [(t, "False", r, m) for t, r, m in FIXED]
    if counts:
        items = sorted(f"{gr} has {n} resource instances" for gr, n in counts.items())
        wanted.append(
            (
                "NamespaceContentRemaining",
                "True",
                "SomeResourcesRemain",
                "Some resources are remaining: " + ", ".join(items),
            )
        )
    else:
        wanted.append(
            (
                "NamespaceContentRemaining",
                "False",
                "ContentRemoved",
                "All content successfully removed",
            )
        )
    if finalizers:
        items = sorted(f"{f} in {n} resource instances" for f, n in finalizers.items())
        wanted.append(
            (
                "NamespaceFinalizersRemaining",
                "True",
                "SomeFinalizersRemain",
                "Some content in the namespace has finalizers remaining: " + ", ".join(items),
            )
        )
    else:
        wanted.append(
            (
                "NamespaceFinalizersRemaining",
                "False",
                "ContentHasNoFinalizers",
                "All content-preserving finalizers finished",
            )
        )
    old = {c.get("type"): c for c in (ns.get("status") or {}).get("conditions") or []}
    now = now_iso()
    conditions = []
    for ctype, status, reason, message in wanted:
        prev = old.get(ctype) or {}
        same = prev.get("status") == status
        conditions.append(
            {
                "type": ctype,
                "status": status,
                "lastTransitionTime": prev.get("lastTransitionTime") if same else now,
                "reason": reason,
                "message": message,
            }
        )
    if (ns.get("status") or {}).get("conditions") == conditions:
        return
    new = clone(ns)
    new["status"] = {**(ns.get("status") or {}), "phase": "Terminating", "conditions": conditions}
    try:
        store.update(ns_rt, new, "", subresource="status", manager="kube-controller-manager")
    except ApiError:
        pass
