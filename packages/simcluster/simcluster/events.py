"""Recording core/v1 Events (what ``kubectl describe`` and Prefect's worker read)."""

from __future__ import annotations

import hashlib
import time
import weakref
from typing import Any

from simcluster.clock import now_iso
from simcluster.errors import ApiError
from simcluster.store import Store, clone

JSON = dict[str, Any]

# The event recorder's correlation cache: (namespace, digest of object/reason/message) ->
# the name of the Event it last wrote, so a repeat bumps ``count`` instead of adding one.
_names: weakref.WeakKeyDictionary[Store, dict[tuple[str, str], str]] = weakref.WeakKeyDictionary()
_last_nano = 0


def _unix_nano() -> int:
    """Wall-clock nanoseconds, strictly increasing across calls.

    Real recorders name an Event ``<object>.<%x of UnixNano>``, so the names of one
    object's Events (and the API's name-ordered lists) follow creation order even within
    one second, where ``firstTimestamp``/``creationTimestamp`` tie.
    """
    global _last_nano
    _last_nano = max(time.time_ns(), _last_nano + 1)
    return _last_nano


def record(
    store: Store, obj: JSON, etype: str, reason: str, message: str, component: str, host: str = ""
) -> None:
    """Create or bump (count, lastTimestamp) the Event for ``obj``/``reason``/``message``."""
    rt = store.registry.by_key("", "events")
    assert rt is not None
    meta = obj["metadata"]
    ns = meta.get("namespace") or "default"
    digest = hashlib.sha256(f"{meta['uid']}/{reason}/{message}".encode()).hexdigest()[:16]
    names = _names.setdefault(store, {})
    name = names.get((ns, digest)) or ""
    now = now_iso()
    try:
        existing = store.try_get(rt, ns, name) if name else None
        if existing is None:
            name = f"{meta['name']}.{_unix_nano():x}"
            names[(ns, digest)] = name
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
