"""Wait for one object to reach a verdict, by watching it (never by polling).

:func:`wait_for_object` lists the object, then watches it (``fieldSelector``
``metadata.name``), calling a pure ``judge(obj) -> Verdict | None`` on every version;
None means "not yet". Drops and expired watches relist. The deadline bounds the wait:
"not yet" at the deadline raises :class:`PermanentError` with the last judgement's
message; it is never an error before.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shipyard.core.errors import PermanentError, TransientError
from shipyard.core.kube import KubeClient

JSON = dict[str, Any]


@dataclass(frozen=True)
class Verdict:
    """The judge's decision: ``ok`` (done) or not (failed), with a message."""

    ok: bool
    message: str = ""


def wait_for_object(
    kube: KubeClient,
    collection: str,
    name: str,
    judge: Callable[[JSON | None], Verdict | None],
    deadline: float,
    *,
    waiting: Callable[[], str] = lambda: "",
    what: str = "object",
) -> tuple[Verdict, JSON | None]:
    """Watch ``collection``/``name`` until ``judge`` decides or ``deadline`` (monotonic)."""
    query = {"fieldSelector": f"metadata.name={name}"}
    rv = ""
    obj: JSON | None = None
    backoff = 0.1
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise PermanentError(f"{what} did not converge in time: {waiting() or 'no progress'}")
        try:
            if not rv:
                items, rv = kube.list(collection, query)
                obj = items[0] if items else None
                verdict = judge(obj)
                if verdict is not None:
                    return verdict, obj
            for event in kube.watch(collection, query, rv, min(remaining, 30)):
                current = event.get("object") or {}
                rv = str((current.get("metadata") or {}).get("resourceVersion") or rv)
                if event.get("type") == "BOOKMARK":
                    continue
                obj = None if event.get("type") == "DELETED" else current
                verdict = judge(obj)
                if verdict is not None:
                    return verdict, obj
                if time.monotonic() >= deadline:
                    break
        except (TransientError, PermanentError) as exc:
            if isinstance(exc, PermanentError) and not exc.message.startswith("410"):
                raise
            rv = ""
            time.sleep(backoff)
            backoff = min(backoff * 2, 2.0)
