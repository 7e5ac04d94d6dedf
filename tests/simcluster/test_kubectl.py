"""The real kubectl (v1.32) against the simulator: the issue's "done when" list."""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest

from tests.fixtures.simcluster import SimClusterHandle

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.25
        ports:
        - containerPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - port: 80
"""

CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: backups.velero.io
spec:
  group: velero.io
  names: {kind: Backup, plural: backups, singular: backup}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Phase, type: string, jsonPath: .status.phase}
"""

BACKUP = """
apiVersion: velero.io/v1
kind: Backup
metadata:
  name: nightly
spec:
  includedNamespaces: ["*"]
"""


def test_apply_rollout_set_image_history_undo(
    sim_cluster: SimClusterHandle, sim_namespace: str
) -> None:
    k = sim_cluster.kubectl
    ns = ("-n", sim_namespace)
    assert "deployment.apps/web created" in k("apply", *ns, "-f", "-", input=DEPLOYMENT).stdout
    assert (
        "successfully rolled out"
        in k("rollout", "status", *ns, "deploy/web", "--timeout=30s").stdout
    )
    assert "unchanged" in k("apply", *ns, "-f", "-", input=DEPLOYMENT).stdout
    k("set", "image", *ns, "deploy/web", "web=nginx:1.26")
    k("rollout", "status", *ns, "deploy/web", "--timeout=30s")
    history = k("rollout", "history", *ns, "deploy/web").stdout
    assert "1 " in history and "2 " in history
    k("rollout", "undo", *ns, "deploy/web")
    k("rollout", "status", *ns, "deploy/web", "--timeout=30s")
    image = k(
        "get", *ns, "deploy/web", "-o", "jsonpath={.spec.template.spec.containers[0].image}"
    ).stdout
    assert image == "nginx:1.25"
    revisions = k("rollout", "history", *ns, "deploy/web").stdout.split()
    assert "3" in revisions and "1" not in revisions[revisions.index("CHANGE-CAUSE") + 1 :: 2]
    table = k("get", *ns, "pods", "-l", "app=web").stdout
    assert table.splitlines()[0].split()[:5] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert table.count("Running") == 2
    assert "Available" in k("describe", *ns, "deploy/web").stdout
    k("delete", *ns, "deploy/web", "svc/web", "--timeout=20s")
    assert "No resources found" in k("get", *ns, "deploy,rs,pods", check=False).stderr


def test_server_side_apply_and_conflict(sim_cluster: SimClusterHandle, sim_namespace: str) -> None:
    k = sim_cluster.kubectl
    ns = ("-n", sim_namespace)
    assert (
        "serverside-applied" in k("apply", "--server-side", *ns, "-f", "-", input=DEPLOYMENT).stdout
    )
    k("scale", *ns, "deploy/web", "--replicas=3")
    conflict = k("apply", "--server-side", *ns, "-f", "-", input=DEPLOYMENT, check=False)
    assert (
        conflict.returncode != 0
        and "conflict" in conflict.stderr
        and ".spec.replicas" in conflict.stderr
    )
    k("apply", "--server-side", "--force-conflicts", *ns, "-f", "-", input=DEPLOYMENT)
    got = json.loads(k("get", *ns, "deploy/web", "-o", "json").stdout)
    assert got["spec"]["replicas"] == 2


def test_crd_and_custom_resources(sim_cluster: SimClusterHandle, sim_namespace: str) -> None:
    k = sim_cluster.kubectl
    k("apply", "-f", "-", input=CRD)
    assert (
        "backup.velero.io/nightly created"
        in k("apply", "-n", sim_namespace, "-f", "-", input=BACKUP).stdout
    )
    k(
        "patch",
        "-n",
        sim_namespace,
        "backup/nightly",
        "--type=merge",
        "--subresource=status",
        "-p",
        '{"status":{"phase":"Completed"}}',
    )
    table = k("get", "-n", sim_namespace, "backups").stdout
    assert "PHASE" in table and "Completed" in table
    assert "velero.io/v1" in k("api-resources", "--api-group=velero.io").stdout


def test_get_watch_streams_changes(sim_cluster: SimClusterHandle, sim_namespace: str) -> None:
    cmd = [
        "kubectl",
        "--kubeconfig",
        str(sim_cluster.kubeconfig),
        "get",
        "configmaps",
        "-n",
        sim_namespace,
        "-w",
        "--request-timeout=10s",
    ]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        time.sleep(0.5)
        sim_cluster.kubectl("apply", "-n", sim_namespace, "-f", "-", input=_cm("watched"))
        deadline = time.monotonic() + 10
        seen = ""
        assert proc.stdout is not None
        while time.monotonic() < deadline and "watched" not in seen:
            seen += proc.stdout.readline()
        proc.terminate()
    assert "watched" in seen


def test_errors_look_like_a_real_server(sim_cluster: SimClusterHandle, sim_namespace: str) -> None:
    missing = sim_cluster.kubectl("get", "-n", sim_namespace, "deploy/nope", check=False)
    assert 'Error from server (NotFound): deployments.apps "nope" not found' in missing.stderr
    sim_cluster.kubectl("apply", "-n", sim_namespace, "-f", "-", input=_cm("twice"))
    dup = sim_cluster.kubectl(
        "create", "-n", sim_namespace, "-f", "-", input=_cm("twice"), check=False
    )
    assert "(AlreadyExists)" in dup.stderr


def test_create_generators_sending_protobuf(
    sim_cluster: SimClusterHandle, sim_namespace: str
) -> None:
    k = sim_cluster.kubectl
    ns = ("-n", sim_namespace)
    k("create", "configmap", *ns, "gen", "--from-literal=a=b", "--from-literal=c=d")
    k("create", "secret", "generic", *ns, "pw", "--from-literal=password=hunter2")
    k("create", "serviceaccount", *ns, "robot")
    cm = json.loads(k("get", *ns, "configmap/gen", "-o", "json").stdout)
    assert cm["data"] == {"a": "b", "c": "d"}
    secret = json.loads(k("get", *ns, "secret/pw", "-o", "json").stdout)
    assert secret["type"] == "Opaque" and secret["data"] == {"password": "aHVudGVyMg=="}
    unsupported = k(
        "create", "pdb", *ns, "d", "--selector=app=d", "--min-available=1", check=False
    )
    assert unsupported.returncode != 0 and "send JSON instead" in unsupported.stderr


def _cm(name: str) -> str:
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{a: b}}\n"


def test_auth_can_i_is_always_yes(sim_cluster: SimClusterHandle) -> None:
    assert sim_cluster.kubectl("auth", "can-i", "create", "deployments").stdout.strip() == "yes"


def test_abandoned_watch_is_released(sim_cluster: SimClusterHandle, sim_namespace: str) -> None:
    import httpx

    def watchers() -> int:
        return int(httpx.get(f"{sim_cluster.url}/_sim/stats").json()["watchers"])

    before = watchers()
    url = f"{sim_cluster.url}/api/v1/namespaces/{sim_namespace}/configmaps"
    with httpx.stream("GET", url, params={"watch": "1"}, timeout=5):
        assert watchers() == before + 1
    deadline = time.monotonic() + 5
    while watchers() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert watchers() == before
