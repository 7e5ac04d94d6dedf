"""A tiny operator runtime: watches feeding a de-duplicating work queue, one worker.

Each watch runs on its own thread through :class:`shipyard.core.kube.KubeClient` (the
official client underneath), relisting after a drop or an expired resourceVersion, and
maps every event to reconcile keys. One worker thread reconciles keys in order, so a
reconciler never races itself, and may ask for a key to be requeued after a delay.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Self

from shipyard.core.errors import PermanentError, TransientError
from shipyard.core.kube import KubeClient

JSON = dict[str, Any]
log = logging.getLogger("tests.fakes.operators")


@dataclass
class WatchSpec:
    """One collection to watch and how its objects map to reconcile keys."""

    path: str
    query: dict[str, str]
    keys: Callable[[JSON], list[Hashable]]


class Operator:
    """Base class: subclasses set ``name``, return ``watches()`` and implement
    ``reconcile(key)`` (returning seconds to requeue after, or None)."""

    name = "operator"

    def __init__(self, api_client: Any) -> None:
        self.kube = KubeClient(api_client)
        self._queue: queue.Queue[Hashable] = queue.Queue()
        self._pending: set[Hashable] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._raws: list[Any] = []
        self.reconciles = 0

    def watches(self) -> list[WatchSpec]:
        """Collections to watch."""
        return []

    def reconcile(self, key: Hashable) -> float | None:
        """Drive ``key`` toward its desired state; seconds to requeue after, or None."""
        return None

    def enqueue(self, key: Hashable) -> None:
        """Queue ``key`` unless it is already waiting."""
        with self._lock:
            if key in self._pending:
                return
            self._pending.add(key)
        self._queue.put(key)

    def enqueue_after(self, key: Hashable, delay: float) -> None:
        """Queue ``key`` after ``delay`` seconds."""
        timer = threading.Timer(delay, self.enqueue, (key,))
        timer.daemon = True
        timer.start()

    # -- running -------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the watch threads and the worker."""
        for spec in self.watches():
            t = threading.Thread(
                target=self._watch, args=(spec,), name=f"{self.name}-watch", daemon=True
            )
            t.start()
            self._threads.append(t)
        worker = threading.Thread(target=self._work, name=f"{self.name}-worker", daemon=True)
        worker.start()
        self._threads.append(worker)
        return self

    def stop(self) -> None:
        """Stop every thread (closing open watch streams)."""
        self._stop.set()
        self._queue.put(None)
        for raw in list(self._raws):
            try:
                raw.shutdown()
            except Exception:  # noqa: BLE001 - closing a stream that already ended
                pass
        for t in self._threads:
            t.join(2)

    def _watch(self, spec: WatchSpec) -> None:
        rv = ""
        backoff = 0.1
        while not self._stop.is_set():
            try:
                if not rv:
                    items, rv = self.kube.list(spec.path, spec.query)
                    for obj in items:
                        for key in spec.keys(obj):
                            self.enqueue(key)
                for event in self.kube.watch(spec.path, spec.query, rv, 30, self._raws.append):
                    backoff = 0.1
                    obj = event.get("object") or {}
                    rv = str((obj.get("metadata") or {}).get("resourceVersion") or rv)
                    if event.get("type") == "BOOKMARK":
                        continue
                    for key in spec.keys(obj):
                        self.enqueue(key)
            except (TransientError, PermanentError) as exc:
                if self._stop.is_set():
                    return
                log.debug("%s: watch %s: %s", self.name, spec.path, exc)
                rv = ""
                time.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            except Exception:
                if self._stop.is_set():
                    return
                log.exception("%s: watch %s crashed; restarting", self.name, spec.path)
                rv = ""
                time.sleep(1.0)

    def _work(self) -> None:
        while not self._stop.is_set():
            key = self._queue.get()
            if key is None or self._stop.is_set():
                return
            with self._lock:
                self._pending.discard(key)
            try:
                self.reconciles += 1
                again = self.reconcile(key)
            except TransientError as exc:
                log.debug("%s: %s: %s (retrying)", self.name, key, exc)
                again = 0.2
            except Exception:
                log.exception("%s: reconcile %s failed", self.name, key)
                again = 1.0
            if again is not None and not self._stop.is_set():
                self.enqueue_after(key, again)
