"""The controller runtime: a de-duplicating work queue per controller, plus timers.

Also the pieces every owner-driven controller shares: ``OwnerController`` (keying on a
primary resource and the objects it owns), owner references, conditions and status writes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Hashable
from typing import Any, cast

from simcluster.config import SimConfig
from simcluster.errors import ApiError
from simcluster.resources import ResourceType
from simcluster.store import Store, WatchEvent, clone

JSON = dict[str, Any]
log = logging.getLogger("simcluster.controllers")

OWNER = "ownerReferences"
CONTROLLER_MANAGER = "kube-controller-manager"
"""The field manager (and event source host) of every built-in workload controller."""


class Controller:
    """Base class: subclasses implement ``keys_for`` and ``reconcile``."""

    name = "controller"

    def __init__(self, store: Store, config: SimConfig) -> None:
        self.store = store
        self.config = config
        self._queue: asyncio.Queue[Hashable] | None = None
        self._pending: set[Hashable] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def rt(self, group: str, plural: str) -> ResourceType:
        rt = self.store.registry.by_key(group, plural)
        assert rt is not None, (group, plural)
        return rt

    # -- queue -----------------------------------------------------------------------

    def keys_for(self, rt: ResourceType, event: WatchEvent) -> list[Hashable]:
        """Keys to reconcile after ``event`` (default: none)."""
        return []

    def reconcile(self, key: Hashable) -> None:
        """Drive the object named by ``key`` toward its desired state."""

    def enqueue(self, key: Hashable) -> None:
        if key in self._pending or self._queue is None:
            return
        self._pending.add(key)
        self._queue.put_nowait(key)

    def enqueue_after(self, key: Hashable, delay: float) -> None:
        if self._loop is not None:
            self._loop.call_later(max(0.0, delay), self.enqueue, key)

    def on_event(self, rt: ResourceType, event: WatchEvent) -> None:
        for key in self.keys_for(rt, event):
            self.enqueue(key)

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self.start()
        while True:
            key = await self._queue.get()
            self._pending.discard(key)
            try:
                self.reconcile(key)
            except Exception:
                log.exception("%s failed to reconcile %r", self.name, key)
            await asyncio.sleep(0)

    def start(self) -> None:
        """Hook run when the controller's loop starts (enqueue existing objects)."""


def object_key(event: WatchEvent) -> list[Hashable]:
    """The ``(namespace, name)`` key of the object in ``event``."""
    meta = event.obj["metadata"]
    return [(meta.get("namespace", ""), meta["name"])]


def owner_keys(event: WatchEvent, kind: str) -> list[Hashable]:
    """``(namespace, name)`` keys of the ``kind`` controllers owning the object in ``event``."""
    meta = event.obj["metadata"]
    return [
        (meta.get("namespace", ""), ref["name"])
        for ref in meta.get(OWNER) or []
        if ref.get("controller") and ref.get("kind") == kind
    ]


class OwnerController(Controller):
    """A controller of one primary resource that owns objects of another type.

    Subclasses name the primary resource (``resource``, ``kind``) and what it owns
    (``owns``). A change to a primary object, or to an object it controls, queues the
    primary's ``(namespace, name)`` key; deletions of the primary itself are left to the
    garbage collector. Every existing primary object is queued at start.
    """

    component = "controller-manager"
    resource: tuple[str, str]
    kind: str
    owns: tuple[str, str]

    def primary_rt(self) -> ResourceType:
        """The resource type this controller reconciles."""
        return self.rt(*self.resource)

    def keys_for(self, rt: ResourceType, event: WatchEvent) -> list[Hashable]:
        if rt.key == self.resource and event.type != "DELETED":
            return object_key(event)
        if rt.key == self.owns:
            return owner_keys(event, self.kind)
        return []

    def start(self) -> None:
        for obj in self.store.select(self.primary_rt()):
            self.enqueue((obj["metadata"]["namespace"], obj["metadata"]["name"]))

    def live(self, key: Hashable) -> JSON | None:
        """The primary object named by ``key``, or None if it is gone or being deleted."""
        ns, name = cast(tuple[str, str], key)
        obj = self.store.try_get(self.primary_rt(), ns, name)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            return None
        return obj

    def delete_quietly(self, rt: ResourceType, obj: JSON, propagation: str | None = None) -> None:
        """Delete ``obj``, ignoring API errors (it may already be gone)."""
        try:
            self.store.delete(
                rt, obj["metadata"]["namespace"], obj["metadata"]["name"], propagation=propagation
            )
        except ApiError:
            pass


def owner_ref(obj: JSON, controller: bool = True) -> JSON:
    """An ownerReference to ``obj`` (controller ref, blocking owner deletion)."""
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
        "controller": controller,
        "blockOwnerDeletion": True,
    }


def controller_uid(obj: JSON) -> str | None:
    """The uid of ``obj``'s controlling owner, if any."""
    for ref in obj["metadata"].get(OWNER) or []:
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None


def owned_by(store: Store, rt: ResourceType, owner: JSON) -> list[JSON]:
    """Objects of type ``rt`` controlled by ``owner``."""
    uid = owner["metadata"]["uid"]
    return [o for t, o in store.dependents(uid) if t.key == rt.key and controller_uid(o) == uid]


def set_condition(
    conditions: list[JSON],
    ctype: str,
    status: str,
    reason: str,
    message: str,
    now: str,
    update_time: bool = True,
) -> list[JSON]:
    """Conditions with ``ctype`` set; transition time kept unless status changed."""
    out = []
    found = False
    for c in conditions:
        if c.get("type") == ctype:
            found = True
            new = dict(c)
            if c.get("status") != status:
                new["lastTransitionTime"] = now
            new.update(status=status, reason=reason, message=message)
            if (update_time and "lastUpdateTime" in c) or (
                update_time and c.get("reason") != reason
            ):
                new["lastUpdateTime"] = now
            out.append(new)
        else:
            out.append(c)
    if not found:
        out.append(
            {
                "type": ctype,
                "status": status,
                "reason": reason,
                "message": message,
                "lastTransitionTime": now,
                "lastUpdateTime": now,
            }
        )
    return out


def write_status(store: Store, rt: ResourceType, obj: JSON, status: JSON, manager: str) -> JSON:
    """Update ``obj``'s status subresource when it changed (no-op otherwise)."""
    if obj.get("status") == status:
        return obj
    new = clone(obj)
    new["status"] = status
    return store.update(
        rt, new, obj["metadata"].get("namespace", ""), subresource="status", manager=manager
    )
