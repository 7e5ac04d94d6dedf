"""ServiceAccounts as a real control plane keeps them.

- The ServiceAccount admission plugin: a pod whose ``serviceAccountName`` does not exist
  in its namespace is refused with 403 Forbidden, worded as kube-apiserver words it::

      pods "web-7d9f8c6b5-" is forbidden: error looking up service account
      shop/missing: serviceaccount "missing" not found

  (a controller creating the pod turns that into a ``FailedCreate`` event).
- The ServiceAccount controller: every namespace gets its ``default`` ServiceAccount. It
  is created synchronously with the namespace (so a pod created right after its namespace
  is not refused) and re-created when deleted.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

from simcluster.controllers.base import CONTROLLER_MANAGER, Controller
from simcluster.errors import ApiError
from simcluster.resources import ResourceType
from simcluster.store import WatchEvent

if TYPE_CHECKING:
    from simcluster.store import Store

JSON = dict[str, Any]


def check_pod(store: Store, pod: JSON) -> None:
    """403 Forbidden when the pod's ServiceAccount does not exist (pod create only)."""
    spec = pod.get("spec") or {}
    sa = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    meta = pod["metadata"]
    ns = meta.get("namespace", "default")
    rt = store.registry.by_key("", "serviceaccounts")
    if rt is None or store.try_get(rt, ns, sa) is not None:
        return
    name = meta.get("name", "")
    gen = meta.get("generateName") or ""
    if gen and name.startswith(gen) and len(name) == len(gen) + 5:
        name = gen  # as the real message: names are generated after admission
    raise ApiError(
        403,
        "Forbidden",
        f'pods "{name}" is forbidden: error looking up service account {ns}/{sa}: '
        f'serviceaccount "{sa}" not found',
        {"name": name, "kind": "pods"},
    )


class ServiceAccountController(Controller):
    """Creates each namespace's ``default`` ServiceAccount (see module docstring)."""

    name = "serviceaccount"

    def on_event(self, rt: ResourceType, event: WatchEvent) -> None:
        meta = event.obj["metadata"]
        if rt.key == ("", "namespaces") and event.type == "ADDED":
            self.reconcile(meta["name"])
        elif (
            rt.key == ("", "serviceaccounts")
            and event.type == "DELETED"
            and meta["name"] == "default"
        ):
            self.enqueue(meta.get("namespace", ""))

    def start(self) -> None:
        for ns in self.store.select(self.rt("", "namespaces")):
            self.enqueue(ns["metadata"]["name"])

    def reconcile(self, key: Hashable) -> None:
        name = str(key)
        ns = self.store.try_get(self.rt("", "namespaces"), "", name)
        if ns is None or ns["metadata"].get("deletionTimestamp"):
            return
        rt = self.rt("", "serviceaccounts")
        if self.store.try_get(rt, name, "default") is not None:
            return
        try:
            self.store.create(
                rt, {"metadata": {"name": "default"}}, name, manager=CONTROLLER_MANAGER
            )
        except ApiError:
            pass
