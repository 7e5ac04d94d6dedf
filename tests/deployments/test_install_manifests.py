"""Shipyard's own install manifests (deployments/install): each overlay is rendered by the
real ``kubectl kustomize``, applied with server-side apply to a simulated cluster of its
own, and every object must be accepted and readable back. The rendered objects must also
keep the install's promises: every container has resources and probes, every
PodDisruptionBudget selects pods that exist, the bridge runs two replicas with a spool
each, and the flow runner's RBAC of deployments/rbac is part of it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from tests.fixtures.simcluster import SimClusterHandle, start_sim_cluster

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / "deployments" / "install"
OVERLAYS = ("local", "production")
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job")

# The Prometheus Operator's CRD, as a cluster with the operator has it: the exporter's
# ServiceMonitor (deployments/exporter) is applied with everything else.
SERVICE_MONITOR_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors,
          singular: servicemonitor}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          x-kubernetes-preserve-unknown-fields: true
"""

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl missing")


def render(overlay: str) -> str:
    """The overlay as `kubectl kustomize` renders it (what `apply -k` would send)."""
    done = subprocess.run(
        ["kubectl", "kustomize", str(INSTALL / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def documents(text: str) -> list[dict[str, Any]]:
    return [d for d in YAML(typ="safe", pure=True).load_all(text) if d]


def key(doc: dict[str, Any]) -> tuple[str, str, str]:
    meta = doc["metadata"]
    return doc["kind"], meta.get("namespace", ""), meta["name"]


@pytest.fixture(scope="module", params=OVERLAYS)
def applied(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, list[dict[str, Any]], SimClusterHandle]]:
    """One overlay, rendered and applied server-side to a fresh simulated cluster."""
    overlay = str(request.param)
    text = render(overlay)
    sim = start_sim_cluster(tmp_path_factory.mktemp(f"install-{overlay}"))
    try:
        sim.kubectl("apply", "--server-side", "-f", "-", input=SERVICE_MONITOR_CRD)
        sim.kubectl(
            "wait", "--for=condition=Established", "--timeout=30s",
            "crd/servicemonitors.monitoring.coreos.com",
        )  # fmt: skip
        sim.kubectl(
            "apply", "--server-side", "--field-manager=shipyard-install", "-f", "-", input=text
        )
        yield overlay, documents(text), sim
    finally:
        sim.cluster.stop()


def test_every_object_is_accepted_by_server_side_apply(
    applied: tuple[str, list[dict[str, Any]], SimClusterHandle],
) -> None:
    overlay, docs, sim = applied
    live = json.loads(
        sim.kubectl(
            "get", "--show-managed-fields", "-f", "-", "-o", "json", input=render(overlay)
        ).stdout
    )
    items = live["items"] if live.get("kind") == "List" else [live]
    assert sorted(key(i) for i in items) == sorted(key(d) for d in docs)
    for item in items:
        managers = {m["manager"] for m in item["metadata"].get("managedFields", [])}
        assert "shipyard-install" in managers, key(item)
    again = sim.kubectl(
        "apply", "--server-side", "--field-manager=shipyard-install", "-f", "-",
        input=render(overlay),
    )  # fmt: skip
    assert again.stdout.count("serverside-applied") == len(docs)  # again: no field conflict


def test_every_container_has_resources_and_probes(
    applied: tuple[str, list[dict[str, Any]], SimClusterHandle],
) -> None:
    _, docs, _ = applied
    checked = 0
    for doc in docs:
        if doc["kind"] not in WORKLOADS:
            continue
        for container in doc["spec"]["template"]["spec"]["containers"]:
            where = f"{key(doc)} container {container['name']}"
            resources = container.get("resources", {})
            assert {"cpu", "memory"} <= set(resources.get("requests", {})), where
            assert {"cpu", "memory"} <= set(resources.get("limits", {})), where
            assert "readinessProbe" in container and "livenessProbe" in container, where
            checked += 1
    assert checked >= 4  # worker, bridge, exporter, Prefect server (+ PostgreSQL locally)


def test_pdbs_select_pods_that_exist(
    applied: tuple[str, list[dict[str, Any]], SimClusterHandle],
) -> None:
    _, docs, sim = applied
    pdbs = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    templates = [d for d in docs if d["kind"] in WORKLOADS]
    assert len(pdbs) >= 4
    for pdb in pdbs:
        namespace = pdb["metadata"]["namespace"]
        labels = pdb["spec"]["selector"]["matchLabels"]
        owners = [
            t
            for t in templates
            if t["metadata"]["namespace"] == namespace
            and labels.items() <= t["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert owners, f"PDB {key(pdb)} selects no workload"
        selector = ",".join(f"{k}={v}" for k, v in labels.items())
        assert _pods(sim, namespace, selector), f"PDB {key(pdb)}: no pod matches {selector}"


def test_bridge_runs_two_replicas_with_a_spool_each(
    applied: tuple[str, list[dict[str, Any]], SimClusterHandle],
) -> None:
    _, docs, sim = applied
    by_key = {key(d): d for d in docs}
    assert ("Deployment", "shipyard-bridge", "shipyard-bridge") not in by_key
    bridge = by_key["StatefulSet", "shipyard-bridge", "shipyard-bridge"]
    assert bridge["spec"]["replicas"] == 2
    [claim] = bridge["spec"]["volumeClaimTemplates"]
    mounts = bridge["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert {"name": claim["metadata"]["name"], "mountPath": "/var/lib/shipyard/spool"} in mounts
    pdb = by_key["PodDisruptionBudget", "shipyard-bridge", "shipyard-bridge"]
    assert pdb["spec"]["minAvailable"] == 1
    deadline = time.monotonic() + 30
    while len(_pods(sim, "shipyard-bridge", "app.kubernetes.io/name=shipyard-bridge")) < 2:
        assert time.monotonic() < deadline, "the simulator did not create two bridge pods"
        time.sleep(0.5)


def test_the_install_carries_the_rbac_of_today_and_a_prefect_server(
    applied: tuple[str, list[dict[str, Any]], SimClusterHandle],
) -> None:
    overlay, docs, _ = applied
    by_key = {key(d): d for d in docs}
    rbac = documents((ROOT / "deployments" / "rbac" / "flow-runner.yaml").read_text())
    for doc in rbac:
        assert key(doc) in by_key, f"{key(doc)} of deployments/rbac is not installed"
    server = by_key["Deployment", "prefect", "prefect-server"]
    env = {e["name"] for e in server["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "PREFECT_SERVER_DATABASE_PASSWORD" in env
    postgres = ("StatefulSet", "prefect", "prefect-postgres")
    if overlay == "local":
        assert postgres in by_key
    else:  # production uses an external database and two workers
        assert postgres not in by_key
        assert by_key["Deployment", "shipyard-flows", "shipyard-worker"]["spec"]["replicas"] == 2
        assert not [d for d in docs if d["kind"] == "Secret"], "production secrets stay out of git"
    assert ("ServiceMonitor", "shipyard-exporter", "shipyard-exporter") in by_key


def _pods(sim: SimClusterHandle, namespace: str, selector: str) -> list[str]:
    """Names of the pods matching ``selector``, waiting briefly for the controllers."""
    deadline = time.monotonic() + 30
    while True:
        out = sim.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "name").stdout
        names = out.split()
        if names or time.monotonic() > deadline:
            return names
        time.sleep(0.5)
