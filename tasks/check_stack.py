"""Check that each service of the stack answers a real request, not just a TCP port.

Used by the `check_stack` smoke flow that the quick start runs: a registry catalog
call, a Docker API ping, an S3 bucket round trip, a git ls-remote, a Kubernetes
/version call. Each probe returns a ``ServiceCheck``; none raises. The task
``check_service`` is in :mod:`tasks.steps.stack`.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from shipyard.core.kube import api_client
from shipyard.core.s3 import s3_client

__all__ = [
    "PROBES",
    "ServiceCheck",
    "check_docker",
    "check_git",
    "check_kube",
    "check_registry",
    "check_s3",
    "probe_service",
]


@dataclass(frozen=True)
class ServiceCheck:
    """The outcome of one probe."""

    service: str
    ok: bool
    detail: str
    seconds: float


def _timed(service: str, probe: Callable[[], str]) -> ServiceCheck:
    start = time.perf_counter()
    try:
        detail = probe()
        ok = True
    except Exception as exc:  # noqa: BLE001 - a probe reports, it never raises
        detail, ok = f"{type(exc).__name__}: {exc}", False
    return ServiceCheck(service, ok, detail, time.perf_counter() - start)


def check_registry(registry: str) -> ServiceCheck:
    """GET /v2/_catalog on the OCI registry."""

    def probe() -> str:
        r = httpx.get(f"http://{registry}/v2/_catalog", timeout=5)
        r.raise_for_status()
        return f"{len(r.json().get('repositories', []))} repositories"

    return _timed("registry", probe)


def check_docker(docker_host: str) -> ServiceCheck:
    """GET /version on the Docker Engine API."""

    def probe() -> str:
        import docker

        info = docker.DockerClient(base_url=docker_host, timeout=10).version()
        return f"{info.get('Components', [{}])[0].get('Name', 'engine')} {info.get('Version')}"

    return _timed("docker", probe)


def check_s3(endpoint: str) -> ServiceCheck:
    """Create a bucket, put and read back an object, delete both."""

    def probe() -> str:
        s3 = s3_client(endpoint)
        bucket = f"shipyard-check-{uuid.uuid4().hex[:8]}"
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="probe", Body=b"ok")
        body = s3.get_object(Bucket=bucket, Key="probe")["Body"].read()
        s3.delete_object(Bucket=bucket, Key="probe")
        s3.delete_bucket(Bucket=bucket)
        return f"round trip {'ok' if body == b'ok' else 'corrupt'}"

    return _timed("s3", probe)


def check_git(git_url: str, repo: str = "gitops") -> ServiceCheck:
    """`git ls-remote` against a repo on the git server (an empty repo is fine)."""

    def probe() -> str:
        out = subprocess.run(
            ["git", "ls-remote", f"{git_url}/{repo}.git"],
            capture_output=True,
            text=True,
            timeout=15,
            check=True,
        ).stdout
        return f"{len(out.splitlines())} refs in {repo}.git"

    return _timed("git", probe)


def check_kube(kubeconfig: str) -> ServiceCheck:
    """GET /version on the Kubernetes API named by the kubeconfig."""

    def probe() -> str:
        from kubernetes import client

        with api_client(kubeconfig) as api:
            version = client.VersionApi(api).get_code()
        return f"Kubernetes {version.git_version}"

    return _timed("kubernetes", probe)


PROBES: dict[str, Callable[[str], ServiceCheck]] = {
    "registry": check_registry,
    "docker": check_docker,
    "s3": check_s3,
    "git": check_git,
    "kubernetes": check_kube,
}


def probe_service(service: str, address: str) -> ServiceCheck:
    """Run the probe for ``service`` (a key of :data:`PROBES`) at ``address``."""
    return PROBES[service](address)
