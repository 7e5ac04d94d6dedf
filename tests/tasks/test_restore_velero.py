"""Velero driver: Backup/Restore objects through the simulator's API, phases awaited.

No Velero server can run here, so a small stand-in thread plays its part through the
same API: it marks Backups Completed and performs Restores (copying the source
namespace's objects into the mapped namespace) before marking them Completed, or
PartiallyFailed for backups named ``bad-*``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from shipyard.core.export import export_objects
from shipyard.core.kube import KubeClient
from tasks.restore_objects import map_namespace
from tasks.restore_velero_drill import run_velero_drill
from tasks.velero import VeleroConfig, outcome_of, run_velero, velero_backup_object
from tests.fixtures.simcluster import SimClusterHandle
from tests.tasks.test_restore_drill import seed_namespace

VELERO_NS = "velero"


def _crd(kind: str, plural: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.velero.io"},
        "spec": {
            "group": "velero.io",
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                    "subresources": {"status": {}},
                }
            ],
        },
    }


class FakeVelero:
    """Plays the Velero server's role for Backup and Restore objects."""

    def __init__(self, kube: KubeClient) -> None:
        self.kube = kube
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        # Like a real controller, an error in one pass (a conflict, an injected fault
        # from another test of the session) is retried on the next, never fatal.
        while not self.stop.is_set():
            try:
                self._reconcile()
            except Exception:  # noqa: BLE001
                pass
            time.sleep(0.05)

    def _reconcile(self) -> None:
        base = f"/apis/velero.io/v1/namespaces/{VELERO_NS}"
        for plural in ("backups", "restores"):
            for obj in (self.kube.get(f"{base}/{plural}") or {}).get("items") or []:
                if (obj.get("status") or {}).get("phase"):
                    continue
                phase = "Completed"
                if plural == "restores":
                    phase = self._restore(obj)
                obj["status"] = {
                    "phase": phase,
                    "startTimestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                }
                # Status goes through the status subresource, as Velero's server writes it
                # (a PUT of the main resource would leave status unchanged).
                path = f"{base}/{plural}/{obj['metadata']['name']}/status"
                self.kube.request("PUT", path, obj)

    def _restore(self, restore: dict[str, Any]) -> str:
        spec = restore["spec"]
        if spec["backupName"].startswith("bad-"):
            return "PartiallyFailed"
        for source, target in spec["namespaceMapping"].items():
            self.kube.request("POST", "/api/v1/namespaces", {"metadata": {"name": target}})
            objects, _ = export_objects(self.kube, [source], include_crds=False)
            for obj in objects:
                if obj["kind"] == "Namespace":
                    continue
                moved = map_namespace(obj, {source: target})
                group_version = moved["apiVersion"]
                prefix = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
                plural = {"RoleBinding": "rolebindings", "Application": "applications"}.get(
                    moved["kind"], moved["kind"].lower() + "s"
                )
                self.kube.request("POST", f"{prefix}/namespaces/{target}/{plural}", moved)
        return "Completed"


@pytest.fixture(scope="module")
def velero(sim_cluster: SimClusterHandle) -> Iterator[KubeClient]:
    sim_cluster.faults.clear()  # no fault left over from another module of the session
    kube = KubeClient(sim_cluster.api_client())
    for kind, plural in (("Backup", "backups"), ("Restore", "restores")):
        if (
            kube.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{plural}.velero.io")
            is None
        ):
            kube.request(
                "POST",
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                _crd(kind, plural),
            )
    if kube.get(f"/api/v1/namespaces/{VELERO_NS}") is None:
        kube.request("POST", "/api/v1/namespaces", {"metadata": {"name": VELERO_NS}})
    deadline = time.monotonic() + 10
    while kube.get("/apis/velero.io/v1") is None and time.monotonic() < deadline:
        time.sleep(0.05)
    fake = FakeVelero(kube)
    fake.thread.start()
    yield kube
    fake.stop.set()
    fake.thread.join(5)


FAST = VeleroConfig(timeout_seconds=30, poll_seconds=0.1)


def _drill_namespaces(kube: KubeClient) -> list[str]:
    items = (kube.get("/api/v1/namespaces") or {}).get("items") or []
    return [o["metadata"]["name"] for o in items if "-drill-" in o["metadata"]["name"]]


def test_outcome_of_phases() -> None:
    assert outcome_of({"status": {"phase": "InProgress"}}, 1.0) is None
    assert outcome_of({}, 1.0) is None
    done = outcome_of(
        {"metadata": {"name": "b"}, "status": {"phase": "PartiallyFailed", "errors": 2}}, 3.0
    )
    assert done is not None and not done.ok and done.errors == 2


def test_velero_backup_then_drill(velero: KubeClient, sim_cluster: SimClusterHandle) -> None:
    from tests.tasks.test_restore_drill import CRD

    if velero.get("/apis/argoproj.io/v1alpha1") is None:
        velero.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", CRD)
        time.sleep(0.3)
    ns = f"vel-{uuid.uuid4().hex[:6]}"
    seed_namespace(velero, ns)
    name = f"shipyard-{uuid.uuid4().hex[:6]}"
    outcome = run_velero(velero, velero_backup_object(name, [ns], FAST), FAST)
    assert outcome.ok and outcome.phase == "Completed"

    result = run_velero_drill(velero, FAST, backup=name, ready_timeout=30)
    assert result.passed, (result.failures, result.mismatches)
    assert result.parity == 1.0
    assert result.objects == result.restored == 7  # namespaced objects only
    assert result.rpo_seconds >= 0 and result.rto_seconds > 0
    assert _drill_namespaces(velero) == []
    restores = velero.get(f"/apis/velero.io/v1/namespaces/{VELERO_NS}/restores") or {}
    assert restores.get("items") == []
    velero.request("DELETE", f"/api/v1/namespaces/{ns}")


def test_failed_velero_restore_fails_the_drill_and_cleans_up(velero: KubeClient) -> None:
    ns = f"vel-{uuid.uuid4().hex[:6]}"
    velero.request("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
    name = f"bad-{uuid.uuid4().hex[:6]}"
    assert run_velero(velero, velero_backup_object(name, [ns], FAST), FAST).ok
    result = run_velero_drill(velero, FAST, backup=name, ready_timeout=5)
    assert not result.passed
    assert any("PartiallyFailed" in f for f in result.failures)
    assert _drill_namespaces(velero) == []
    velero.request("DELETE", f"/api/v1/namespaces/{ns}")
