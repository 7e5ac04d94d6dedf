"""A deployment run on the Kubernetes work pool becomes a Job in the cluster whose pod
runs the flow, and ends Completed.

Real pieces: Prefect server, the prefect-kubernetes worker (`prefect worker start`), the
project's base job template, and the cluster simulator with process-backed pods (the
pod's command really runs `prefect flow-run execute`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.services import Stack

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deployments" / "work-pool" / "kubernetes-base-job-template.json"
POOL = "shipyard-k8s-test"
NAMESPACE = "shipyard-flows"


def _ensure_namespace(api: Any) -> None:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    core = client.CoreV1Api(api)
    body = {
        "metadata": {
            "name": NAMESPACE,
            # Simulator opt-in: pods here run their command as real processes.
            "labels": {"sim.shipyard.dev/run-processes": "true"},
        }
    }
    try:
        core.create_namespace(body)
    except ApiException as exc:
        if exc.status != 409:
            raise
    # The job template's default service_account_name; pods without it are not admitted.
    try:
        core.create_namespaced_service_account(
            NAMESPACE, {"metadata": {"name": "shipyard-flow-runner"}}
        )
    except ApiException as exc:
        if exc.status != 409:
            raise


def _create_pool(template: dict[str, Any]) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(
                WorkPoolCreate(name=POOL, type="kubernetes", base_job_template=template)
            )
        except ObjectAlreadyExists:
            pass


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_deployment_runs_as_a_job_in_the_cluster(
    stack: Stack, sim_cluster: Any, tmp_path: Path
) -> None:
    from kubernetes import client
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    api = sim_cluster.api_client()
    _ensure_namespace(api)
    template = json.loads(TEMPLATE.read_text())
    _create_pool(template)

    source = flow.from_source(source=str(ROOT), entrypoint="flows/check_stack.py:check_stack")
    deployment_id = source.deploy(
        name="worker-e2e",
        work_pool_name=POOL,
        job_variables={
            # Host-less image: the simulated kubelet treats it as present.
            "image": "shipyard/flows:test",
            "working_dir": str(ROOT),
            "env": {"PATH": os.environ["PATH"]},
            "stream_output": True,
        },
        parameters={"addresses": {"registry": stack.registry, "s3": stack.s3_endpoint}},
        build=False,
        push=False,
        print_next_steps=False,
    )

    env = {
        **os.environ,
        "PREFECT_API_URL": stack.prefect_api_url,
        "KUBECONFIG": str(sim_cluster.kubeconfig),
        "PREFECT_WORKER_QUERY_SECONDS": "1",
    }
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "prefect",
                "worker",
                "start",
                "--pool",
                POOL,
                "--type",
                "kubernetes",
                "--limit",
                "1",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    started = time.monotonic()
    try:
        run = run_deployment(deployment_id, timeout=0)
        deadline = time.monotonic() + 120
        with get_client(sync_client=True) as pc:
            while time.monotonic() < deadline:
                state = pc.read_flow_run(run.id).state
                if state is not None and state.is_final():
                    break
                time.sleep(1)
        print(f"deployment run final after {time.monotonic() - started:.1f}s")
        assert state is not None and state.is_completed(), f"{state}\n{log.read_text()[-3000:]}"
    finally:
        worker.terminate()
        worker.wait(timeout=30)

    batch = client.BatchV1Api(api)
    job = None
    deadline = time.monotonic() + 30  # the flow run is final just before its process exits
    while time.monotonic() < deadline:
        job = next(
            j
            for j in batch.list_namespaced_job(NAMESPACE).items
            if (j.metadata.labels or {}).get("prefect.io/flow-run-id") == str(run.id)
        )
        if job.status.succeeded:
            break
        time.sleep(0.5)
    assert job is not None and job.status.succeeded == 1
    pods = (
        client.CoreV1Api(api)
        .list_namespaced_pod(NAMESPACE, label_selector=f"job-name={job.metadata.name}")
        .items
    )
    assert pods and pods[0].status.phase == "Succeeded"
    output = client.CoreV1Api(api).read_namespaced_pod_log(pods[0].metadata.name, NAMESPACE)
    assert "registry" in output and "ok" in output
