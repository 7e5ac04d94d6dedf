"""The EndpointSlice and Endpoints controllers: a Service's backends, kept in step.

For every Service with a selector, the pods it selects that have an IP become endpoints of
``discovery.k8s.io/v1`` EndpointSlices (labelled ``kubernetes.io/service-name`` and
``endpointslice.kubernetes.io/managed-by``, owned by the Service, one slice per distinct
resolved port set) and of the core/v1 Endpoints object named after the Service
(``addresses`` / ``notReadyAddresses``). Conditions follow kube-controller-manager:
``ready`` = pod Ready and not terminating (always true with
``publishNotReadyAddresses``), ``serving`` = pod Ready, ``terminating`` = deletion
requested. Terminal pods (Succeeded/Failed) and pods without an IP are left out.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, cast

from simcluster.controllers.base import CONTROLLER_MANAGER, Controller, owner_ref
from simcluster.errors import ApiError
from simcluster.resources import ResourceType
from simcluster.selectors import match_label_selector
from simcluster.store import WatchEvent, clone

JSON = dict[str, Any]

SERVICE_NAME = "kubernetes.io/service-name"
MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
MANAGER = "endpointslice-controller.k8s.io"
SERVICES = ("", "services")
PODS = ("", "pods")
SLICES = ("discovery.k8s.io", "endpointslices")
ENDPOINTS = ("", "endpoints")


def _selects(svc: JSON, labels: dict[str, str]) -> bool:
    selector = (svc.get("spec") or {}).get("selector")
    return bool(selector) and match_label_selector({"matchLabels": selector}, labels)


def _pod_ready(pod: JSON) -> bool:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") == "True"
    return False


def _resolve(port: JSON, pod: JSON) -> int | None:
    """The Service port's targetPort as a number for ``pod`` (None if a name is unknown)."""
    target = port.get("targetPort", port.get("port"))
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    for c in (pod.get("spec") or {}).get("containers") or []:
        for cp in c.get("ports") or []:
            if cp.get("name") == target and cp.get("protocol", "TCP") == port.get(
                "protocol", "TCP"
            ):
                return int(cp["containerPort"])
    return None


class EndpointSliceController(Controller):
    """Keeps each selector Service's EndpointSlices and Endpoints in step with its pods."""

    name = "endpointslice"

    def keys_for(self, rt: ResourceType, event: WatchEvent) -> list[Hashable]:
        meta = event.obj["metadata"]
        ns = meta.get("namespace", "")
        if rt.key == SERVICES:
            return [(ns, meta["name"])]
        if rt.key == PODS:
            labels = meta.get("labels") or {}
            prev = (event.prev or {}).get("metadata", {}).get("labels") or {}
            svc_rt = self.rt(*SERVICES)
            return [
                (ns, svc["metadata"]["name"])
                for svc in self.store.select(svc_rt, ns)
                if _selects(svc, labels) or (prev and _selects(svc, prev))
            ]
        if rt.key == SLICES and event.type == "DELETED":
            labels = meta.get("labels") or {}
            if labels.get(MANAGED_BY) == MANAGER and labels.get(SERVICE_NAME):
                return [(ns, labels[SERVICE_NAME])]
        if rt.key == ENDPOINTS and event.type == "DELETED":
            return [(ns, meta["name"])]
        return []

    def start(self) -> None:
        for svc in self.store.select(self.rt(*SERVICES)):
            self.enqueue((svc["metadata"]["namespace"], svc["metadata"]["name"]))

    def reconcile(self, key: Hashable) -> None:
        ns, name = cast(tuple[str, str], key)
        svc = self.store.try_get(self.rt(*SERVICES), ns, name)
        slice_rt, ep_rt = self.rt(*SLICES), self.rt(*ENDPOINTS)
        ours = [
            s
            for s in self.store.select(slice_rt, ns)
            if (s["metadata"].get("labels") or {}).get(SERVICE_NAME) == name
            and (s["metadata"].get("labels") or {}).get(MANAGED_BY) == MANAGER
        ]
        spec = (svc or {}).get("spec") or {}
        if svc is None or not spec.get("selector") or svc["metadata"].get("deletionTimestamp"):
            for s in ours:
                self._delete(slice_rt, s)
            endpoints = self.store.try_get(ep_rt, ns, name)
            if endpoints is not None and (svc is None or spec.get("selector")):
                self._delete(ep_rt, endpoints)
            return
        groups = self._groups(svc)
        self._sync_slices(svc, ours, groups)
        self._sync_endpoints(svc, groups)

    # -- computing ---------------------------------------------------------------------

    def _groups(self, svc: JSON) -> dict[tuple[tuple[str, int, str], ...], list[JSON]]:
        """Endpoints keyed by their resolved (name, port, protocol) set, in pod-name order."""
        spec = svc["spec"]
        ns = svc["metadata"]["namespace"]
        publish = bool(spec.get("publishNotReadyAddresses"))
        groups: dict[tuple[tuple[str, int, str], ...], list[JSON]] = {}
        for pod in self.store.select(self.rt(*PODS), ns):
            status = pod.get("status") or {}
            if not status.get("podIP") or status.get("phase") in ("Succeeded", "Failed"):
                continue
            if not _selects(svc, pod["metadata"].get("labels") or {}):
                continue
            ports: list[tuple[str, int, str]] = []
            for p in spec.get("ports") or []:
                number = _resolve(p, pod)
                if number is not None:
                    ports.append((p.get("name", ""), number, p.get("protocol", "TCP")))
            ready = _pod_ready(pod)
            terminating = bool(pod["metadata"].get("deletionTimestamp"))
            endpoint: JSON = {
                "addresses": [status["podIP"]],
                "conditions": {
                    "ready": publish or (ready and not terminating),
                    "serving": ready,
                    "terminating": terminating,
                },
                "targetRef": {
                    "kind": "Pod",
                    "namespace": ns,
                    "name": pod["metadata"]["name"],
                    "uid": pod["metadata"]["uid"],
                },
            }
            node = (pod.get("spec") or {}).get("nodeName")
            if node:
                endpoint["nodeName"] = node
            groups.setdefault(tuple(ports), []).append(endpoint)
        if not groups:
            ports = [
                (p.get("name", ""), p["targetPort"], p.get("protocol", "TCP"))
                for p in spec.get("ports") or []
                if isinstance(p.get("targetPort"), int)
            ]
            groups[tuple(ports)] = []
        return groups

    # -- writing -----------------------------------------------------------------------

    def _sync_slices(
        self,
        svc: JSON,
        ours: list[JSON],
        groups: dict[tuple[tuple[str, int, str], ...], list[JSON]],
    ) -> None:
        rt = self.rt(*SLICES)
        ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
        labels = {
            **(svc["metadata"].get("labels") or {}),
            SERVICE_NAME: name,
            MANAGED_BY: MANAGER,
        }
        spare = list(ours)
        for ports, endpoints in groups.items():
            body: JSON = {
                "addressType": "IPv4",
                "endpoints": endpoints,
                "ports": [{"name": n, "port": p, "protocol": proto} for n, p, proto in ports],
            }
            existing = next((s for s in spare if _ports_key(s) == ports), None)
            if existing is None and spare:
                existing = spare[0]
            if existing is not None:
                spare.remove(existing)
                current = {k: existing.get(k) for k in body}
                if current == body and existing["metadata"].get("labels") == labels:
                    continue
                new = clone(existing)
                new.update(body)
                new["metadata"]["labels"] = labels
                self._write(lambda new=new: self.store.update(rt, new, ns, manager=MANAGER))
                continue
            obj = {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "generateName": f"{name}-",
                    "labels": labels,
                    "ownerReferences": [owner_ref(svc)],
                },
                **body,
            }
            self._write(lambda obj=obj: self.store.create(rt, obj, ns, manager=MANAGER))
        for s in spare:
            self._delete(rt, s)

    def _sync_endpoints(
        self, svc: JSON, groups: dict[tuple[tuple[str, int, str], ...], list[JSON]]
    ) -> None:
        rt = self.rt(*ENDPOINTS)
        ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
        subsets: list[JSON] = []
        for ports, endpoints in groups.items():
            ready: list[JSON] = []
            not_ready: list[JSON] = []
            for e in endpoints:
                address = {
                    "ip": e["addresses"][0],
                    "targetRef": {**e["targetRef"]},
                    **({"nodeName": e["nodeName"]} if "nodeName" in e else {}),
                }
                (ready if e["conditions"]["ready"] else not_ready).append(address)
            if not ready and not not_ready:
                continue
            subset: JSON = {}
            if ready:
                subset["addresses"] = ready
            if not_ready:
                subset["notReadyAddresses"] = not_ready
            subset["ports"] = [
                {**({"name": n} if n else {}), "port": p, "protocol": proto}
                for n, p, proto in ports
            ]
            subsets.append(subset)
        labels = dict(svc["metadata"].get("labels") or {})
        existing = self.store.try_get(rt, ns, name)
        if existing is None:
            obj: JSON = {"metadata": {"name": name, **({"labels": labels} if labels else {})}}
            if subsets:
                obj["subsets"] = subsets
            self._write(lambda: self.store.create(rt, obj, ns, manager=CONTROLLER_MANAGER))
            return
        if (existing.get("subsets") or []) == subsets and (
            existing["metadata"].get("labels") or {}
        ) == labels:
            return
        new = clone(existing)
        if subsets:
            new["subsets"] = subsets
        else:
            new.pop("subsets", None)
        if labels:
            new["metadata"]["labels"] = labels
        else:
            new["metadata"].pop("labels", None)
        self._write(lambda: self.store.update(rt, new, ns, manager=CONTROLLER_MANAGER))

    def _write(self, fn: Any) -> None:
        try:
            fn()
        except ApiError:
            pass

    def _delete(self, rt: ResourceType, obj: JSON) -> None:
        try:
            self.store.delete(rt, obj["metadata"]["namespace"], obj["metadata"]["name"])
        except ApiError:
            pass


def _ports_key(s: JSON) -> tuple[tuple[str, int, str], ...]:
    return tuple(
        (p.get("name", ""), p.get("port", 0), p.get("protocol", "TCP"))
        for p in s.get("ports") or []
    )
