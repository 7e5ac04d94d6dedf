"""What kubectl needs from an API server (issue 13), driven through kubectl and the
official Python client: protobuf bodies from ``kubectl create`` generators, a clear
Status for exec/attach/port-forward, OpenAPI for ``kubectl explain``, discovery."""

from __future__ import annotations

import json
import shutil
import time

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.fixtures.simcluster import SimClusterHandle

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")


def _get(sim: SimClusterHandle, ns: str, what: str) -> dict:
    return json.loads(sim.kubectl("get", "-n", ns, what, "-o", "json").stdout)


def test_generators_send_protobuf_for_workloads(
    sim_cluster: SimClusterHandle, sim_namespace: str
) -> None:
    """Each generator's object is stored as its own --dry-run=client JSON says."""
    k = sim_cluster.kubectl
    ns = ("-n", sim_namespace)
    generators = [
        (
            "deployment/d",
            ["create", "deployment", "d", "--image=nginx:1.25", "--replicas=2", "--port=80"],
        ),
        ("job/j", ["create", "job", "j", "--image=busybox:1.36", "--", "echo", "hi"]),
        (
            "cronjob/c",
            [
                "create",
                "cronjob",
                "c",
                "--image=busybox:1.36",
                "--schedule=*/5 * * * *",
                "--",
                "date",
            ],
        ),
        ("service/s", ["create", "service", "clusterip", "s", "--tcp=80:8080"]),
        ("service/n", ["create", "service", "nodeport", "n", "--tcp=81:web"]),
        ("namespace/" + sim_namespace + "-x", ["create", "namespace", sim_namespace + "-x"]),
    ]
    try:
        for what, args in generators:
            dry = ("--dry-run=client", "-o", "json")
            want = json.loads(k(args[0], *ns, *dry, *args[1:]).stdout)
            assert "created" in k(args[0], *ns, *args[1:]).stdout
            got = _get(sim_cluster, sim_namespace, what)
            for key, value in (want.get("metadata") or {}).get("labels", {}).items():
                assert got["metadata"]["labels"][key] == value
            spec, want_spec = got.get("spec") or {}, want.get("spec") or {}
            if what.startswith("deployment"):
                assert spec["replicas"] == 2
                assert spec["selector"] == want_spec["selector"]
                c = spec["template"]["spec"]["containers"][0]
                assert (c["name"], c["image"], c["ports"][0]["containerPort"]) == (
                    "nginx",
                    "nginx:1.25",
                    80,
                )
            elif what.startswith("job"):
                c = spec["template"]["spec"]["containers"][0]
                assert c["command"] == ["echo", "hi"]
                assert spec["template"]["spec"]["restartPolicy"] == "Never"
            elif what.startswith("cronjob"):
                assert spec["schedule"] == "*/5 * * * *"
                tmpl = spec["jobTemplate"]["spec"]["template"]["spec"]
                assert tmpl["containers"][0]["command"] == ["date"]
                assert tmpl["restartPolicy"] == "OnFailure"
            elif what.startswith("service"):
                port = spec["ports"][0]
                assert port["port"] == want_spec["ports"][0]["port"]
                assert port["targetPort"] == want_spec["ports"][0]["targetPort"]
                assert spec["type"] == want_spec["type"]
                assert spec["selector"] == want_spec["selector"]
    finally:
        k("delete", "namespace", sim_namespace + "-x", "--wait=false", check=False)


def _running_pod(sim: SimClusterHandle, ns: str, name: str) -> None:
    sim.kubectl("run", "-n", ns, name, "--image=nginx:1.25")
    deadline = time.monotonic() + 20
    while _get(sim, ns, f"pod/{name}").get("status", {}).get("phase") != "Running":
        assert time.monotonic() < deadline, "pod never ran"
        time.sleep(0.1)


def test_exec_attach_port_forward_say_not_supported(
    sim_cluster: SimClusterHandle, sim_namespace: str
) -> None:
    k = sim_cluster.kubectl
    ns = ("-n", sim_namespace)
    _running_pod(sim_cluster, sim_namespace, "p")
    out = k("exec", *ns, "p", "--", "ls", check=False)
    assert out.returncode != 0
    assert "Error from server (BadRequest): exec is not supported by the simulator" in out.stderr
    out = k("attach", *ns, "p", check=False)
    assert "attach is not supported by the simulator" in out.stderr
    out = k("port-forward", *ns, "pod/p", "18080:80", check=False, timeout=20)
    assert out.returncode != 0
    assert "port-forward is not supported by the simulator" in out.stderr
    missing = k("exec", *ns, "nope", "--", "ls", check=False)
    assert 'Error from server (NotFound): pods "nope" not found' in missing.stderr
    # The Python client's stream() upgrades over WebSocket: the handshake gets the Status.
    from kubernetes.stream import stream

    api = client.CoreV1Api(sim_cluster.api_client())
    with pytest.raises(ApiException) as err:
        stream(
            api.connect_get_namespaced_pod_exec,
            "p",
            sim_namespace,
            command=["ls"],
            stderr=True,
            stdin=False,
            stdout=True,
            tty=False,
        )
    # As against a real cluster, the client reports the failed handshake and its Status.
    assert "Handshake status 400" in str(err.value)
    assert '"reason":"BadRequest"' in str(err.value)
    assert "exec is not supported by the simulator" in str(err.value)
