"""Pytest plugin: a simulated cluster (and a real OCI registry) for tests.

Fixtures:

- ``sim_cluster`` (session): a :class:`SimClusterHandle` with ``.kubeconfig`` (path),
  ``.url``, ``.api_client()`` (a configured ``kubernetes.client.ApiClient``),
  ``.faults`` (:class:`~simcluster.faults.FaultInjector`, switchable at run time),
  ``.config`` (the live :class:`~simcluster.config.SimConfig`) and ``.kubectl(...)``.
- ``sim_namespace`` (function): a fresh namespace in that cluster, deleted afterwards.
- ``oci_registry`` (session): a CNCF Distribution registry on a loopback port with
  ``push_image(repo, tag)`` to publish a tiny image by plain HTTP (no Docker).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from simcluster.cluster import SimCluster
from simcluster.config import SimConfig
from simcluster.faults import FaultInjector

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@dataclass
class SimClusterHandle:
    """What tests get from the ``sim_cluster`` fixture."""

    cluster: SimCluster
    kubeconfig: Path
    url: str
    faults: FaultInjector = field(init=False)
    config: SimConfig = field(init=False)

    def __post_init__(self) -> None:
        self.faults = self.cluster.faults
        self.config = self.cluster.config

    def api_client(self) -> Any:
        """A ``kubernetes.client.ApiClient`` for this cluster (no retries, short timeouts)."""
        from kubernetes import client

        configuration = client.Configuration()
        configuration.host = self.url
        configuration.api_key = {"authorization": "Bearer simcluster"}
        configuration.retries = 0
        return client.ApiClient(configuration)

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl against this cluster."""
        proc = subprocess.run(
            ["kubectl", "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({proc.returncode}):\n"
                f"{proc.stdout}\n{proc.stderr}"
            )
        return proc


def start_sim_cluster(directory: Path, config: SimConfig | None = None) -> SimClusterHandle:
    """Start a simulator on a thread with a kubeconfig in ``directory``."""
    cluster = SimCluster(config or fast_config()).start()
    kubeconfig = cluster.write_kubeconfig(directory / "kubeconfig")
    return SimClusterHandle(cluster, kubeconfig, cluster.url)


def fast_config() -> SimConfig:
    """Fast timings for tests."""
    return SimConfig(
        startup_delay=0.05,
        pull_backoff=0.2,
        max_backoff=1.0,
        job_run_seconds=0.1,
        bookmark_interval=1.0,
    )


@pytest.fixture(scope="session")
def sim_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimClusterHandle]:
    """A simulated Kubernetes cluster shared by the test session."""
    handle = start_sim_cluster(tmp_path_factory.mktemp("simcluster"))
    try:
        yield handle
    finally:
        handle.cluster.stop()


@pytest.fixture
def sim_namespace(sim_cluster: SimClusterHandle) -> Iterator[str]:
    """A fresh namespace (faults cleared before and after)."""
    from kubernetes import client

    sim_cluster.faults.clear()
    name = f"t-{uuid.uuid4().hex[:8]}"
    api = client.CoreV1Api(sim_cluster.api_client())
    api.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        sim_cluster.faults.clear()
        api.delete_namespace(name)


# -- a real OCI registry --------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalRegistry:
    """A running ``docker-registry serve`` on loopback (plain HTTP)."""

    host: str
    process: subprocess.Popen[bytes]
    root: Path
    auth: tuple[str, str] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def push_image(
        self,
        repository: str,
        tag: str,
        payload: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> str:
        """Push a tiny single-layer OCI image; return its manifest digest."""
        layer = payload if payload is not None else f"{repository}:{tag}:{time.time()}".encode()
        config = json.dumps(
            {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
        ).encode()
        with httpx.Client(
            base_url=self.url, auth=self.auth, headers=headers or {}, timeout=10
        ) as client:
            descriptors = []
            for blob, media in (
                (config, "application/vnd.oci.image.config.v1+json"),
                (layer, "application/vnd.oci.image.layer.v1.tar"),
            ):
                digest = "sha256:" + hashlib.sha256(blob).hexdigest()
                start = client.post(f"/v2/{repository}/blobs/uploads/")
                start.raise_for_status()
                location = start.headers["location"]
                sep = "&" if "?" in location else "?"
                put = client.put(
                    f"{location}{sep}digest={digest}",
                    content=blob,
                    headers={"Content-Type": "application/octet-stream"},
                )
                put.raise_for_status()
                descriptors.append({"mediaType": media, "digest": digest, "size": len(blob)})
            manifest = json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": OCI_MANIFEST,
                    "config": descriptors[0],
                    "layers": descriptors[1:],
                }
            ).encode()
            resp = client.put(
                f"/v2/{repository}/manifests/{tag}",
                content=manifest,
                headers={"Content-Type": OCI_MANIFEST},
            )
            resp.raise_for_status()
            return str(
                resp.headers.get("docker-content-digest")
                or "sha256:" + hashlib.sha256(manifest).hexdigest()
            )

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        shutil.rmtree(self.root, ignore_errors=True)


def start_registry(htpasswd: tuple[str, str] | None = None) -> LocalRegistry:
    """Start CNCF Distribution on a free loopback port (optionally with basic auth)."""
    binary = shutil.which("docker-registry")
    if binary is None:
        raise FileNotFoundError("docker-registry (Debian package docker-registry) is not installed")
    root = Path(tempfile.mkdtemp(prefix="simreg-"))
    port = free_port()
    auth_cfg = ""
    if htpasswd is not None:
        import bcrypt

        hashed = bcrypt.hashpw(htpasswd[1].encode(), bcrypt.gensalt(rounds=4)).decode()
        (root / "htpasswd").write_text(f"{htpasswd[0]}:{hashed}\n")
        auth_cfg = f"auth:\n  htpasswd:\n    realm: simcluster\n    path: {root / 'htpasswd'}\n"
    (root / "config.yml").write_text(
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {root / 'data'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n{auth_cfg}"
    )
    proc = subprocess.Popen(
        [binary, "serve", str(root / "config.yml")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ},
    )
    host = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://{host}/v2/", timeout=1)
            return LocalRegistry(host, proc, root, htpasswd)
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("docker-registry did not start")


@pytest.fixture(scope="session")
def oci_registry() -> Iterator[LocalRegistry]:
    """A real OCI registry on loopback for image pulls (skips if not installed)."""
    try:
        registry = start_registry()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    try:
        yield registry
    finally:
        registry.stop()


def dockerconfigjson(host: str, username: str, password: str) -> str:
    """The base64 ``.dockerconfigjson`` value of an image pull Secret."""
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    doc = {"auths": {host: {"username": username, "password": password, "auth": auth}}}
    return base64.b64encode(json.dumps(doc).encode()).decode()
