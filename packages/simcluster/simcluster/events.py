"""Recording core/v1 Events (what ``kubectl describe`` and Prefect's worker read)."""

from __future__ import annotations

import hashlib
from typing import Any

from simcluster.clock import now_iso
from simcluster.errors import ApiError
from simcluster.store import Store, clone

JSON = dict[str, Any]


def record(
    store: Store, obj: JSON, etype: str, reason: str, message: str, component: str, host: str = ""
) -> None:
    """Create or bump (count, lastTimestamp) the Event for ``obj``/``reason``/``message``."""
    rt = store.registry.by_key("", "events")
    assert rt is not None
    meta = obj["metadata"]
    ns = meta.get("namespace") or "default"
    digest = hashlib.sha256(f"{meta['uid']}/{reason}/{message}".encode()).hexdigest()[:16]
    name = f"{meta['name']}.{digest}"
    now = now_iso()
    try:
        existing = store.try_get(rt, ns, name)
        if existing is not None:
            new = clone(existing)
            new["count"] = int(existing.get("count", 1)) + 1
            new["lastTimestamp"] = now
            store.update(rt, new, ns, manager=component)
            return
        store.create(
            rt,
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": name, "namespace": ns},
                "involvedObject": {
                    "apiVersion": obj.get("apiVersion", "v1"),
                    "kind": obj.get("kind", ""),
                    "name": meta["name"],
                    "namespace": ns,
                    "uid": meta["uid"],
                    "resourceVersion": meta.get("resourceVersion", ""),
                },
                "reason": reason,
                "message": message,
                "type": etype,
                "count": 1,
                "firstTimestamp": now,
                "lastTimestamp": now,
                "source": {"component": component, **({"host": host} if host else {})},
                "reportingComponent": component,
                "reportingInstance": host,
            },
            ns,
            manager=component,
        )
    except ApiError:
        pass
