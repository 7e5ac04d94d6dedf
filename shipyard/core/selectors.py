"""Kubernetes label selectors as the ``labelSelector`` query string, formatted once.

Steps that list objects by label (verify a rollout's pods, prune or check drift of what
an app owns) build the query here, and the ownership labels Shipyard stamps on what it
applies are named here, so the stamp and the selector cannot disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "APP_LABEL",
    "MANAGED_BY_LABEL",
    "format_labels",
    "label_selector",
    "ownership_selector",
]

MANAGED_BY_LABEL = "app.shipyard.dev/managed-by"
APP_LABEL = "app.shipyard.dev/app"


def format_labels(labels: Mapping[str, str]) -> str:
    """Equality requirements ``k=v,k2=v2`` in the order given."""
    return ",".join(f"{k}={v}" for k, v in labels.items())


def label_selector(selector: Mapping[str, Any] | None) -> str:
    """A LabelSelector object (``matchLabels``, ``matchExpressions``) as a query string."""
    selector = selector or {}
    parts = [format_labels(dict(sorted((selector.get("matchLabels") or {}).items())))]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(str(key))
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(p for p in parts if p)


def ownership_selector(app: str, managed_by: str) -> str:
    """What ``managed_by`` applied for ``app`` (the labels the apply driver stamps)."""
    return format_labels({MANAGED_BY_LABEL: managed_by, APP_LABEL: app})
