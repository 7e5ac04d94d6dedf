"""Process-backed pods: Jobs whose containers run as local subprocesses."""

from __future__ import annotations

import sys

import pytest
from kubernetes import client

from tests.fixtures.simcluster import SimClusterHandle
from tests.simcluster.helpers import eventually

RUN = {"sim.shipyard.dev/run-processes": "true"}


@pytest.fixture
def proc_namespace(sim_cluster: SimClusterHandle, sim_namespace: str) -> str:
    core = client.CoreV1Api(sim_cluster.api_client())
    core.patch_namespace(sim_namespace, {"metadata": {"labels": RUN}})
    return sim_namespace


def _job(
    name: str, script: str, env: list[client.V1EnvVar] | None = None, backoff: int = 0
) -> client.V1Job:
    container = client.V1Container(
        name="prefect-job",
        image="prefect:3",
        command=[sys.executable, "-c"],
        args=[script],
        env=env,
    )
    spec = client.V1PodSpec(containers=[container], restart_policy="Never")
    return client.V1Job(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1JobSpec(template=client.V1PodTemplateSpec(spec=spec), backoff_limit=backoff),
    )


def _finished(batch: client.BatchV1Api, ns: str, name: str) -> str | None:
    for c in batch.read_namespaced_job(name, ns).status.conditions or []:
        if c.type in ("Complete", "Failed") and c.status == "True":
            return str(c.type)
    return None


def _pod_name(core: client.CoreV1Api, ns: str, job: str) -> str:
    pods = core.list_namespaced_pod(ns, label_selector=f"job-name={job}").items
    assert pods
    return str(pods[0].metadata.name)


def test_job_process_succeeds_with_resolved_env_and_logs(
    sim_cluster: SimClusterHandle, proc_namespace: str
) -> None:
    api = sim_cluster.api_client()
    core, batch = client.CoreV1Api(api), client.BatchV1Api(api)
    core.create_namespaced_secret(
        proc_namespace,
        client.V1Secret(metadata=client.V1ObjectMeta(name="creds"), string_data={"token": "t0k3n"}),
    )
    core.create_namespaced_config_map(
        proc_namespace,
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name="conf"), data={"url": "http://api"}),
    )
    env = [
        client.V1EnvVar(name="PLAIN", value="p"),
        client.V1EnvVar(
            name="TOKEN",
            value_from=client.V1EnvVarSource(
                secret_key_ref=client.V1SecretKeySelector(name="creds", key="token")
            ),
        ),
        client.V1EnvVar(
            name="URL",
            value_from=client.V1EnvVarSource(
                config_map_key_ref=client.V1ConfigMapKeySelector(name="conf", key="url")
            ),
        ),
        client.V1EnvVar(
            name="POD",
            value_from=client.V1EnvVarSource(
                field_ref=client.V1ObjectFieldSelector(field_path="metadata.name")
            ),
        ),
    ]
    script = (
        "import os; print('hello', os.environ['PLAIN'], os.environ['TOKEN'], os.environ['URL'])\n"
        "print('pod', os.environ['POD'])"
    )
    batch.create_namespaced_job(proc_namespace, _job("flow-run", script, env))
    eventually(lambda: _finished(batch, proc_namespace, "flow-run") == "Complete", timeout=20)
    assert batch.read_namespaced_job("flow-run", proc_namespace).status.succeeded == 1
    pod = _pod_name(core, proc_namespace, "flow-run")
    assert core.read_namespaced_pod(pod, proc_namespace).status.phase == "Succeeded"
    logs = core.read_namespaced_pod_log(pod, proc_namespace, container="prefect-job")
    assert logs.splitlines() == ["hello p t0k3n http://api", f"pod {pod}"]
    kubectl_logs = sim_cluster.kubectl("logs", "-n", proc_namespace, pod).stdout
    assert "hello p t0k3n" in kubectl_logs


def test_job_process_failure_sets_failed_and_exit_code(
    sim_cluster: SimClusterHandle, proc_namespace: str
) -> None:
    api = sim_cluster.api_client()
    core, batch = client.CoreV1Api(api), client.BatchV1Api(api)
    batch.create_namespaced_job(
        proc_namespace, _job("bad-run", "import sys; print('boom'); sys.exit(4)")
    )
    eventually(lambda: _finished(batch, proc_namespace, "bad-run") == "Failed", timeout=20)
    pod = core.read_namespaced_pod(_pod_name(core, proc_namespace, "bad-run"), proc_namespace)
    assert pod.status.phase == "Failed"
    assert pod.status.container_statuses[0].state.terminated.exit_code == 4
    assert batch.read_namespaced_job("bad-run", proc_namespace).status.failed == 1


def test_follow_logs_streams_until_exit(sim_cluster: SimClusterHandle, proc_namespace: str) -> None:
    api = sim_cluster.api_client()
    core, batch = client.CoreV1Api(api), client.BatchV1Api(api)
    script = (
        "import time\nfor i in range(3):\n    print('tick', i, flush=True)\n    time.sleep(0.2)"
    )
    batch.create_namespaced_job(proc_namespace, _job("ticker", script))
    eventually(
        lambda: core.list_namespaced_pod(proc_namespace, label_selector="job-name=ticker").items
    )
    pod = _pod_name(core, proc_namespace, "ticker")
    eventually(lambda: core.read_namespaced_pod(pod, proc_namespace).status.phase != "Pending")
    resp = core.read_namespaced_pod_log(pod, proc_namespace, follow=True, _preload_content=False)
    lines = b"".join(resp.stream()).decode().splitlines()
    assert [line for line in lines if line.startswith("tick")] == ["tick 0", "tick 1", "tick 2"]


def test_missing_secret_is_create_container_config_error(
    sim_cluster: SimClusterHandle, proc_namespace: str
) -> None:
    api = sim_cluster.api_client()
    core, batch = client.CoreV1Api(api), client.BatchV1Api(api)
    env = [
        client.V1EnvVar(
            name="X",
            value_from=client.V1EnvVarSource(
                secret_key_ref=client.V1SecretKeySelector(name="absent", key="k")
            ),
        )
    ]
    batch.create_namespaced_job(proc_namespace, _job("nosecret", "print(1)", env))

    def reason() -> str | None:
        pods = core.list_namespaced_pod(proc_namespace, label_selector="job-name=nosecret").items
        statuses = pods[0].status.container_statuses if pods else None
        return statuses[0].state.waiting.reason if statuses and statuses[0].state.waiting else None

    eventually(lambda: reason() == "CreateContainerConfigError")
