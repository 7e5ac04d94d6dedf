"""Cluster housekeeping: namespaces, CRD registration, and garbage collection."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from simcluster.controllers import namespaces
from simcluster.controllers.base import Controller
from simcluster.errors import ApiError
from simcluster.resources import ResourceType, crd_resource_type
from simcluster.store import Store, WatchEvent, clone

JSON = dict[str, Any]
CRD_KEY = ("apiextensions.k8s.io", "customresourcedefinitions")


class CrdRegistrar:
    """Keeps the served resource types in step with CRD objects, synchronously.

    Runs as a store listener (not a queued controller) so a custom resource can be
    created right after its CRD, as clients expect.
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    def __call__(self, rt: ResourceType, event: WatchEvent) -> None:
        if rt.key != CRD_KEY:
            return
        new_rt = crd_resource_type(event.obj)
        if new_rt is None:
            return
        if event.type == "DELETED":
            self.store.registry.remove(new_rt.key)
            for obj in self.store.select(new_rt):
                self.store.delete(
                    new_rt, obj["metadata"].get("namespace", ""), obj["metadata"]["name"]
                )
        else:
            self.store.registry.add(new_rt)


class NamespaceController(Controller):
    """Gives new namespaces a default ServiceAccount; empties and removes deleted ones."""

    name = "namespace"

    def keys_for(self, rt: ResourceType, event: WatchEvent) -> list[Hashable]:
        if rt.key == ("", "namespaces") and event.type != "DELETED":
            return [event.obj["metadata"]["name"]]
        return []

    def start(self) -> None:
        for ns in self.store.select(self.rt("", "namespaces")):
            self.enqueue(ns["metadata"]["name"])

    def reconcile(self, key: Hashable) -> None:
        name = str(key)
        ns = self.store.try_get(self.rt("", "namespaces"), "", name)
        if ns is None:
            return
        if not ns["metadata"].get("deletionTimestamp"):
            sa_rt = self.rt("", "serviceaccounts")
            if self.store.try_get(sa_rt, name, "default") is None:
                try:
                    self.store.create(
                        sa_rt,
                        {"metadata": {"name": "default"}},
                        name,
                        manager="kube-controller-manager",
                    )
                except ApiError:
                    pass
            return
        remaining = 0
        for rt in self.store.registry.all():
            if not rt.namespaced:
                continue
            for obj in self.store.select(rt, name):
                remaining += 1
                if not obj["metadata"].get("deletionTimestamp"):
                    try:
                        self.store.delete(
                            rt, name, obj["metadata"]["name"], propagation="Background"
                        )
                    except ApiError:
                        pass
        if remaining and any(
            self.store.select(rt, name) for rt in self.store.registry.all() if rt.namespaced
        ):
            namespaces.report_remaining(self.store, name)
            self.enqueue_after(name, 0.2)
            return
        self.store.finalize_namespace(name)


class GarbageCollector(Controller):
    """Deletes dependents of deleted owners (background) and drives foreground deletion."""

    name = "garbage-collector"

    def keys_for(self, rt: ResourceType, event: WatchEvent) -> list[Hashable]:
        meta = event.obj["metadata"]
        keys: list[Hashable] = []
        if event.type == "DELETED":
            keys.append(("owner-gone", meta["uid"]))
        elif meta.get("deletionTimestamp") and "foregroundDeletion" in (
            meta.get("finalizers") or []
        ):
            keys.append(("foreground", meta["uid"]))
        if event.type == "DELETED" or meta.get("deletionTimestamp"):
            # A dependent going away may let an owner's foreground deletion finish.
            keys.extend(("foreground", ref.get("uid")) for ref in meta.get("ownerReferences") or [])
        if event.type == "ADDED" and meta.get("ownerReferences"):
            keys.append(("dangling", meta["uid"]))
        return keys

    def reconcile(self, key: Hashable) -> None:
        assert isinstance(key, tuple)
        kind, uid = key
        if kind == "owner-gone":
            for rt, dep in self.store.dependents(uid):
                self._collect(rt, dep)
        elif kind == "dangling":
            found = self.store.by_uid(uid)
            if found is not None:
                self._collect(*found)
        elif kind == "foreground":
            found = self.store.by_uid(uid)
            if found is None:
                return
            rt, owner = found
            meta = owner["metadata"]
            if not meta.get("deletionTimestamp") or "foregroundDeletion" not in (
                meta.get("finalizers") or []
            ):
                return
            deps = self.store.dependents(uid)
            for drt, dep in deps:
                if not dep["metadata"].get("deletionTimestamp"):
                    self._delete(drt, dep, "Foreground")
            if not self.store.dependents(uid):
                new = clone(owner)
                new["metadata"]["finalizers"] = [
                    f for f in meta["finalizers"] if f != "foregroundDeletion"
                ]
                self.store.update(rt, new, meta.get("namespace", ""), manager="garbage-collector")

    def _collect(self, rt: ResourceType, dep: JSON) -> None:
        """Delete ``dep`` if none of its owners exist; else drop the dangling references."""
        refs = dep["metadata"].get("ownerReferences") or []
        alive = [r for r in refs if self.store.by_uid(str(r.get("uid"))) is not None]
        if len(alive) == len(refs) or dep["metadata"].get("deletionTimestamp"):
            return
        if not alive:
            self._delete(rt, dep, "Background")
            return
        new = clone(dep)
        new["metadata"]["ownerReferences"] = alive
        self.store.update(
            rt, new, dep["metadata"].get("namespace", ""), manager="garbage-collector"
        )

    def _delete(self, rt: ResourceType, obj: JSON, policy: str) -> None:
        try:
            self.store.delete(
                rt,
                obj["metadata"].get("namespace", ""),
                obj["metadata"]["name"],
                propagation=policy,
            )
        except ApiError:
            pass
