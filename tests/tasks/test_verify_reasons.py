"""`shipyard verify` against the simulator names why pods never start: a missing
ConfigMap volume (FailedMount), an unschedulable pod (FailedScheduling) and a missing
ServiceAccount (FailedCreate). The manifests are applied with kubectl; the verify is the
real one (the Python client through ``run_verify``, and the CLI)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shipyard.cli.main import main
from shipyard.core.errors import PolicyError
from tasks.verify_rollout import VerifyConfig, run_verify
from tests.fixtures.simcluster import SimClusterHandle

IMAGE = "busybox:1.36"


def _workload(kind: str, name: str, **pod_spec: Any) -> dict[str, Any]:
    container = {"name": "web", "image": IMAGE, **pod_spec.pop("container", {})}
    spec: dict[str, Any] = {
        "replicas": 1,
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": [container], **pod_spec},
        },
    }
    if kind == "StatefulSet":
        spec["serviceName"] = name
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}


def _apply(sim: SimClusterHandle, ns: str, obj: dict[str, Any]) -> None:
    sim.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(obj))


def _verify(sim: SimClusterHandle, ns: str, workload: str) -> Any:
    config = VerifyConfig(namespace=ns, workload=workload, timeout_seconds=4)
    return run_verify(sim.api_client(), config, fail=False)


def test_missing_configmap_volume_fails_naming_failed_mount(
    sim_cluster: SimClusterHandle, sim_namespace: str
) -> None:
    vols = [{"name": "cfg", "configMap": {"name": "missing"}}]
    mounts = [{"name": "cfg", "mountPath": "/etc/cfg"}]
    _apply(
        sim_cluster,
        sim_namespace,
        _workload("Deployment", "web", volumes=vols, container={"volumeMounts": mounts}),
    )
    result = _verify(sim_cluster, sim_namespace, "deployment/web")
    assert not result.healthy and result.reason == "FailedMount"
    assert 'MountVolume.SetUp failed for volume "cfg" : configmap "missing" not found' in (
        result.message
    )
    with pytest.raises(PolicyError, match="FailedMount"):
        run_verify(
            sim_cluster.api_client(),
            VerifyConfig(namespace=sim_namespace, workload="deployment/web", timeout_seconds=2),
        )


def test_unschedulable_pod_fails_naming_failed_scheduling(
    sim_cluster: SimClusterHandle, sim_namespace: str
) -> None:
    big = {"resources": {"requests": {"memory": "10Ti"}}}
    _apply(sim_cluster, sim_namespace, _workload("Deployment", "web", container=big))
    result = _verify(sim_cluster, sim_namespace, "deployment/web")
    assert not result.healthy and result.reason == "FailedScheduling"
    assert "0/1 nodes are available: 1 Insufficient memory." in result.message


def test_missing_service_account_fails_naming_failed_create(
    sim_cluster: SimClusterHandle, sim_namespace: str
) -> None:
    _apply(sim_cluster, sim_namespace, _workload("Deployment", "web", serviceAccountName="ghost"))
    result = _verify(sim_cluster, sim_namespace, "deployment/web")
    assert not result.healthy and result.reason == "FailedCreate"
    assert (
        f'error looking up service account {sim_namespace}/ghost: serviceaccount "ghost" not found'
        in result.message
    )


def test_statefulset_missing_service_account_names_failed_create(
    sim_cluster: SimClusterHandle, sim_namespace: str
) -> None:
    _apply(sim_cluster, sim_namespace, _workload("StatefulSet", "db", serviceAccountName="ghost"))
    result = _verify(sim_cluster, sim_namespace, "statefulset/db")
    assert not result.healthy and result.reason == "FailedCreate"
    assert 'pods "db-0" is forbidden' in result.message


def test_cli_verify_names_the_reason(
    sim_cluster: SimClusterHandle, sim_namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _apply(
        sim_cluster,
        sim_namespace,
        _workload("Deployment", "web", nodeSelector={"shipyard.dev/nowhere": "x"}),
    )
    args = ["verify", "--kubeconfig", str(sim_cluster.kubeconfig), "--namespace", sim_namespace]
    try:
        main([*args, "--workload", "deployment/web", "--timeout", "3"])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    _, err = capsys.readouterr()
    assert code == 1
    assert "deployment/web: FailedScheduling:" in err
    assert "node(s) didn't match Pod's node affinity/selector" in err
