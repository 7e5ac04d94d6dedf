"""The object store: what etcd plus the generic registry do in a real API server.

It owns every object, the one global resourceVersion counter, metadata semantics
(uid, creationTimestamp, generation, managedFields, finalizers, deletionTimestamp),
optimistic concurrency, the status subresource, watch history and fan-out, and the
owner -> dependents index garbage collection needs. It is synchronous and runs on the
server's event loop thread only, so every operation is atomic without locks.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from simcluster import errors, managed
from simcluster.clock import now_iso
from simcluster.resources import ResourceRegistry, ResourceType

JSON = dict[str, Any]
Key = tuple[str, str]
Predicate = Callable[[JSON], bool]
Admit = Callable[[ResourceType, JSON, "JSON | None", "Store"], None]

_NS_MISMATCH = (
    "the namespace of the provided object does not match the namespace sent on the request"
)
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def random_suffix(n: int = 5) -> str:
    """A name suffix in the alphabet Kubernetes uses for generateName."""
    return "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(n))


def clone(value: Any) -> Any:
    """Deep copy of plain JSON data (faster than ``copy.deepcopy``)."""
    if isinstance(value, dict):
        return {k: clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clone(v) for v in value]
    return value


@dataclass
class WatchEvent:
    """One change: type, the object after it (before for nothing), and its revision."""

    type: str
    obj: JSON
    rv: int
    prev: JSON | None = None
    _encoded: dict[str, bytes] = field(default_factory=dict)

    def encode(self, event_type: str | None = None) -> bytes:
        """The newline-terminated JSON line sent on watch streams (cached per type)."""
        t = event_type or self.type
        cached = self._encoded.get(t)
        if cached is None:
            cached = orjson.dumps({"type": t, "object": self.obj}) + b"\n"
            self._encoded[t] = cached
        return cached


class Watcher:
    """A watch stream's subscription: filters plus a queue of encoded events."""

    def __init__(self, key: Key, namespace: str | None, labels: Predicate, fields: Predicate):
        self.key = key
        self.namespace = namespace
        self.labels = labels
        self.fields = fields
        self.queue: asyncio.Queue[tuple[str, WatchEvent]] = asyncio.Queue()

    def matches(self, obj: JSON | None) -> bool:
        if obj is None:
            return False
        meta = obj.get("metadata") or {}
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        return self.labels(meta.get("labels") or {}) and self.fields(obj)

    def offer(self, event: WatchEvent) -> None:
        """Queue ``event`` if it concerns this watcher, translating selector transitions."""
        now = self.matches(event.obj)
        if event.type == "MODIFIED":
            before = self.matches(event.prev)
            if now and before:
                self.queue.put_nowait(("MODIFIED", event))
            elif now:
                self.queue.put_nowait(("ADDED", event))
            elif before:
                self.queue.put_nowait(("DELETED", event))
        elif now:
            self.queue.put_nowait((event.type, event))


class Store:
    """In-memory objects with Kubernetes API semantics (see module docstring)."""

    def __init__(
        self, registry: ResourceRegistry, admit: Admit | None = None, history: int = 20000
    ):
        self.registry = registry
        self.admit = admit
        self._rv = 1000
        self._history_size = history
        self._objects: dict[Key, dict[tuple[str, str], JSON]] = {}
        self._history: dict[Key, deque[WatchEvent]] = {}
        self._compacted: dict[Key, int] = {}
        self._watchers: dict[Key, set[Watcher]] = {}
        self._listeners: list[Callable[[ResourceType, WatchEvent], None]] = []
        self._uids: dict[str, tuple[Key, str, str]] = {}
        self._dependents: dict[str, set[tuple[Key, str, str]]] = {}

    # -- reading ---------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        return self._rv

    def _bucket(self, key: Key) -> dict[tuple[str, str], JSON]:
        return self._objects.setdefault(key, {})

    def try_get(self, rt: ResourceType, namespace: str, name: str) -> JSON | None:
        """The stored object (do not mutate it) or None."""
        return self._bucket(rt.key).get((namespace if rt.namespaced else "", name))

    def get(self, rt: ResourceType, namespace: str, name: str) -> JSON:
        obj = self.try_get(rt, namespace, name)
        if obj is None:
            raise errors.not_found(rt.plural, rt.group, name)
        return obj

    def select(
        self,
        rt: ResourceType,
        namespace: str | None = None,
        labels: Predicate | None = None,
        fields: Predicate | None = None,
    ) -> list[JSON]:
        """Matching stored objects sorted by namespace/name (do not mutate them)."""
        out = []
        for (ns, _name), obj in sorted(self._bucket(rt.key).items()):
            if namespace is not None and rt.namespaced and ns != namespace:
                continue
            meta = obj["metadata"]
            if labels is not None and not labels(meta.get("labels") or {}):
                continue
            if fields is not None and not fields(obj):
                continue
            out.append(obj)
        return out

    def count(self) -> int:
        return sum(len(b) for b in self._objects.values())

    def by_uid(self, uid: str) -> tuple[ResourceType, JSON] | None:
        ref = self._uids.get(uid)
        if ref is None:
            return None
        rt = self.registry.by_key(*ref[0])
        obj = self._bucket(ref[0]).get((ref[1], ref[2]))
        if rt is None or obj is None:
            return None
        return rt, obj

    def dependents(self, uid: str) -> list[tuple[ResourceType, JSON]]:
        """Objects whose ownerReferences name ``uid``."""
        out = []
        for key, ns, name in sorted(self._dependents.get(uid, ())):
            rt = self.registry.by_key(*key)
            obj = self._bucket(key).get((ns, name))
            if rt is not None and obj is not None:
                out.append((rt, obj))
        return out

    # -- events ----------------------------------------------------------------------

    def subscribe(self, listener: Callable[[ResourceType, WatchEvent], None]) -> None:
        """Call ``listener`` synchronously on every change (controllers enqueue work)."""
        self._listeners.append(listener)

    def _emit(self, rt: ResourceType, event_type: str, obj: JSON, prev: JSON | None) -> None:
        event = WatchEvent(event_type, obj, self._rv, prev)
        hist = self._history.setdefault(rt.key, deque())
        if len(hist) >= self._history_size:
            self._compacted[rt.key] = hist.popleft().rv
        hist.append(event)
        for watcher in self._watchers.get(rt.key, ()):
            watcher.offer(event)
        for listener in self._listeners:
            listener(rt, event)

    def watch(
        self,
        rt: ResourceType,
        namespace: str | None,
        labels: Predicate,
        fields: Predicate,
        since: int | None,
    ) -> tuple[list[tuple[str, WatchEvent]], Watcher]:
        """Register a watcher; return the initial events it must send first.

        ``since`` None means "current state as ADDED events, then changes"; a number
        replays history after it (410 Expired if compacted away).
        """
        watcher = Watcher(rt.key, namespace if rt.namespaced else None, labels, fields)
        initial: list[tuple[str, WatchEvent]] = []
        if since is None:
            for obj in self.select(rt, namespace, labels, fields):
                rv = int(obj["metadata"]["resourceVersion"])
                initial.append(("ADDED", WatchEvent("ADDED", obj, rv)))
        else:
            compacted = self._compacted.get(rt.key, 0)
            if since < compacted:
                raise errors.gone(since, compacted + 1)
            probe = Watcher(rt.key, watcher.namespace, labels, fields)
            for event in self._history.get(rt.key, ()):
                if event.rv > since:
                    probe.offer(event)
            while not probe.queue.empty():
                initial.append(probe.queue.get_nowait())
        self._watchers.setdefault(rt.key, set()).add(watcher)
        return initial, watcher

    def close_watches(self) -> None:
        """End every open watch stream (server shutdown): each gets a ``CLOSE`` marker."""
        for watchers in self._watchers.values():
            for watcher in watchers:
                watcher.queue.put_nowait(("CLOSE", WatchEvent("CLOSE", {}, self._rv)))

    def unwatch(self, watcher: Watcher) -> None:
        self._watchers.get(watcher.key, set()).discard(watcher)

    def watcher_count(self) -> int:
        return sum(len(w) for w in self._watchers.values())

    # -- indexes ---------------------------------------------------------------------

    def _index(self, rt: ResourceType, obj: JSON, present: bool) -> None:
        meta = obj["metadata"]
        ref = (rt.key, meta.get("namespace", ""), meta["name"])
        if present:
            self._uids[meta["uid"]] = ref
        else:
            self._uids.pop(meta["uid"], None)
        for owner in meta.get("ownerReferences") or []:
            uid = owner.get("uid")
            if not uid:
                continue
            deps = self._dependents.setdefault(uid, set())
            if present:
                deps.add(ref)
            else:
                deps.discard(ref)
                if not deps:
                    self._dependents.pop(uid, None)

    # -- writing ---------------------------------------------------------------------

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _check_namespace(self, rt: ResourceType, namespace: str, name: str = "") -> None:
        if not rt.namespaced:
            return
        ns_rt = self.registry.by_key("", "namespaces")
        assert ns_rt is not None
        ns = self.try_get(ns_rt, "", namespace)
        if ns is None:
            raise errors.not_found("namespaces", "", namespace)
        if ns["metadata"].get("deletionTimestamp"):
            resource = f"{rt.plural}.{rt.group}" if rt.group else rt.plural
            raise errors.forbidden(
                f'{resource} "{name}" is forbidden: unable to create new content in namespace '
                f"{namespace} because it is being terminated",
                {"name": name, **({"group": rt.group} if rt.group else {}), "kind": rt.plural},
            )

    def create(
        self,
        rt: ResourceType,
        body: JSON,
        namespace: str = "",
        *,
        manager: str = "simcluster",
        dry_run: bool = False,
        fields_set: bool = False,
    ) -> JSON:
        """Create ``body`` (AlreadyExists, Invalid and NotFound-namespace as real)."""
        obj = clone(body)
        requested = str((body.get("metadata") or {}).get("name") or "")
        obj["apiVersion"] = obj.get("apiVersion") or rt.api_version()
        obj["kind"] = rt.kind
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise errors.bad_request("metadata must be an object")
        if not meta.get("name"):
            if meta.get("generateName"):
                meta["name"] = meta["generateName"] + random_suffix()
            else:
                raise errors.invalid(
                    rt.kind,
                    rt.group,
                    "",
                    [
                        (
                            "FieldValueRequired",
                            "metadata.name",
                            "Required value: name or generateName is required",
                        )
                    ],
                )
        if rt.namespaced:
            ns = namespace or meta.get("namespace") or "default"
            if meta.get("namespace") and meta["namespace"] != ns:
                raise errors.bad_request(_NS_MISMATCH)
            meta["namespace"] = ns
            self._check_namespace(rt, ns, requested)
        else:
            meta.pop("namespace", None)
        if self.try_get(rt, meta.get("namespace", ""), meta["name"]) is not None:
            raise errors.already_exists(rt.plural, rt.group, meta["name"])
        if rt.has_status:
            obj.pop("status", None)
        for transient in (
            "resourceVersion",
            "uid",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ):
            meta.pop(transient, None)
        meta["creationTimestamp"] = now_iso()
        meta["generation"] = 1
        meta["uid"] = str(uuid.uuid4())
        if self.admit is not None:
            self.admit(rt, obj, None, self)
        if not fields_set:
            meta["managedFields"] = managed.track_update(
                None, obj, manager, obj["apiVersion"], meta["creationTimestamp"]
            )
        if dry_run:
            return obj
        meta["resourceVersion"] = self._next_rv()
        self._bucket(rt.key)[(meta.get("namespace", ""), meta["name"])] = obj
        self._index(rt, obj, True)
        self._emit(rt, "ADDED", obj, None)
        return obj

    def update(
        self,
        rt: ResourceType,
        body: JSON,
        namespace: str = "",
        name: str | None = None,
        *,
        subresource: str = "",
        manager: str = "simcluster",
        dry_run: bool = False,
        fields_set: bool = False,
    ) -> JSON:
        """Replace an object (PUT semantics) with optimistic concurrency."""
        if not isinstance(body, dict) or not isinstance(body.get("metadata", {}), dict):
            raise errors.bad_request("the body of the request must be an object")
        meta_in = body.get("metadata") or {}
        name = name or meta_in.get("name")
        if not name:
            raise errors.bad_request("name is required")
        if meta_in.get("name") and meta_in["name"] != name:
            raise errors.bad_request("the name of the object does not match the name on the URL")
        ns = (namespace or meta_in.get("namespace") or "default") if rt.namespaced else ""
        if rt.namespaced and meta_in.get("namespace") and meta_in["namespace"] != ns:
            raise errors.bad_request(_NS_MISMATCH)
        old = self.get(rt, ns, name)
        rv = meta_in.get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise errors.conflict(rt.plural, rt.group, name, errors.STALE)
        if subresource == "status":
            obj = clone(old)
            if "status" in body:
                obj["status"] = clone(body["status"])
            else:
                obj.pop("status", None)
        else:
            obj = clone(body)
            if rt.has_status:
                if "status" in old:
                    obj["status"] = clone(old["status"])
                else:
                    obj.pop("status", None)
        obj["apiVersion"] = obj.get("apiVersion") or old["apiVersion"]
        obj["kind"] = rt.kind
        meta = obj.setdefault("metadata", {})
        meta["name"] = name
        if rt.namespaced:
            meta["namespace"] = ns
        for keep in (
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ):
            if keep in old["metadata"]:
                meta[keep] = old["metadata"][keep]
            else:
                meta.pop(keep, None)
        if "managedFields" not in meta:
            meta["managedFields"] = old["metadata"].get("managedFields", [])
        meta["resourceVersion"] = old["metadata"]["resourceVersion"]
        if subresource == "" and self.admit is not None:
            self.admit(rt, obj, old, self)
        if _spec_of(obj) != _spec_of(old):
            meta["generation"] = int(old["metadata"].get("generation", 1)) + 1
        if not fields_set:
            meta["managedFields"] = managed.track_update(
                old, obj, manager, obj["apiVersion"], now_iso(), subresource
            )
        if obj == old:
            return old
        if dry_run:
            return obj
        if (
            meta.get("deletionTimestamp")
            and not meta.get("finalizers")
            and rt.key != ("", "namespaces")
        ):
            return self._remove(rt, obj)
        meta["resourceVersion"] = self._next_rv()
        self._index(rt, old, False)
        self._bucket(rt.key)[(ns, name)] = obj
        self._index(rt, obj, True)
        self._emit(rt, "MODIFIED", obj, old)
        return obj

    def delete(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        *,
        propagation: str | None = None,
        preconditions: JSON | None = None,
        dry_run: bool = False,
    ) -> JSON:
        """Delete (or start deleting, when finalizers remain) a named object."""
        ns = namespace if rt.namespaced else ""
        obj = self.get(rt, ns, name)
        meta = obj["metadata"]
        pre = preconditions or {}
        if pre.get("uid") and pre["uid"] != meta["uid"]:
            raise errors.conflict(
                rt.plural,
                rt.group,
                name,
                f"Precondition failed: UID in precondition: {pre['uid']}, "
                f"UID in object meta: {meta['uid']}",
            )
        if pre.get("resourceVersion") and pre["resourceVersion"] != meta["resourceVersion"]:
            raise errors.conflict(
                rt.plural,
                rt.group,
                name,
                "Precondition failed: ResourceVersion in precondition: "
                f"{pre['resourceVersion']}, "
                f"ResourceVersion in object meta: {meta['resourceVersion']}",
            )
        if dry_run:
            return obj
        if propagation == "Orphan":
            self.orphan_dependents(meta["uid"])
        finalizers = list(meta.get("finalizers") or [])
        if propagation == "Foreground" and self.dependents(meta["uid"]):
            if "foregroundDeletion" not in finalizers:
                finalizers.append("foregroundDeletion")
        if rt.key == ("", "namespaces"):
            finalizers = finalizers or []
        if not finalizers and rt.key != ("", "namespaces"):
            return self._remove(rt, obj)
        if meta.get("deletionTimestamp") and finalizers == list(meta.get("finalizers") or []):
            return obj
        new = clone(obj)
        new["metadata"]["deletionTimestamp"] = meta.get("deletionTimestamp") or now_iso()
        new["metadata"]["deletionGracePeriodSeconds"] = 0
        if finalizers:
            new["metadata"]["finalizers"] = finalizers
        if rt.key == ("", "namespaces"):
            new.setdefault("status", {})["phase"] = "Terminating"
        new["metadata"]["resourceVersion"] = self._next_rv()
        self._bucket(rt.key)[(ns, name)] = new
        self._emit(rt, "MODIFIED", new, obj)
        return new

    def finalize_namespace(self, name: str) -> None:
        """Remove a terminating namespace once its contents are gone."""
        rt = self.registry.by_key("", "namespaces")
        assert rt is not None
        obj = self.try_get(rt, "", name)
        if obj is not None and obj["metadata"].get("deletionTimestamp"):
            self._remove(rt, obj)

    def _remove(self, rt: ResourceType, obj: JSON) -> JSON:
        meta = obj["metadata"]
        self._bucket(rt.key).pop((meta.get("namespace", ""), meta["name"]), None)
        self._index(rt, obj, False)
        gone = clone(obj)
        gone["metadata"]["resourceVersion"] = self._next_rv()
        self._emit(rt, "DELETED", gone, obj)
        return gone

    def orphan_dependents(self, uid: str) -> None:
        """Drop ownerReferences to ``uid`` from its dependents (Orphan propagation)."""
        for rt, dep in self.dependents(uid):
            new = clone(dep)
            refs = [r for r in new["metadata"].get("ownerReferences") or [] if r.get("uid") != uid]
            if refs:
                new["metadata"]["ownerReferences"] = refs
            else:
                new["metadata"].pop("ownerReferences", None)
            self.update(rt, new, dep["metadata"].get("namespace", ""), manager="garbage-collector")


def _spec_of(obj: JSON) -> JSON:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}
