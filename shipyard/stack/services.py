"""The services of the local stack, as specs: what to run, with which config, and how
to probe it. Config files are written by each spec's ``prepare`` step, under the
stack's state directory, never in /etc.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from shipyard.core.errors import ConfigError
from shipyard.stack.model import ServiceSpec, StackLayout
from shipyard.stack.probes import http_ok, tcp_open, unix_http_ok

S3_TEST_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "shipyard-local",
    "AWS_SECRET_ACCESS_KEY": "shipyard-local-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}

# Which Debian package provides each program, for the "missing prerequisite" message.
PACKAGES = {
    "docker-registry": "docker-registry",
    "podman": "podman runc",
    "git": "git",
}


def _bin(name: str) -> str:
    """Path of a program from the project's virtualenv, else from PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise ConfigError(f"'{name}' is not installed (pip install -e '.[test]' provides it)")
    return found


def require(program: str) -> str:
    """Path of a system program, or a ConfigError saying which package to install."""
    found = shutil.which(program)
    if found is None:
        pkg = PACKAGES.get(program, program)
        raise ConfigError(
            f"'{program}' is missing: install it with 'apt-get install -y {pkg}' "
            "(or run scripts/setup.sh as root)"
        )
    return found


def prefect_spec(layout: StackLayout, port: int) -> ServiceSpec:
    """Prefect server (API + UI) on SQLite under the state dir."""
    home = layout.data_dir("prefect")
    env = {
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_API_HOST": layout.host,
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_API_URL": f"http://{layout.host}:{port}/api",
        "PREFECT_UI_API_URL": f"http://{layout.host}:{port}/api",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        # Serves Prometheus metrics at /api/metrics (the stack's Prometheus scrapes them).
        "PREFECT_SERVER_METRICS_ENABLED": "true",
    }
    if url := os.environ.get("SHIPYARD_PREFECT_DATABASE_URL"):
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = url
    return ServiceSpec(
        name="prefect",
        argv=[_bin("prefect"), "server", "start", "--host", layout.host, "--port", str(port)],
        env=env,
        health=lambda: http_ok(f"http://{layout.host}:{port}/api/health"),
        prepare=lambda: home.mkdir(parents=True, exist_ok=True),
        ready_timeout=120.0,
    )


def bridge_secret(layout: StackLayout) -> str:
    """The stack's webhook secret shared by the registry and the bridge (made once, 0600)."""
    path = layout.root / "bridge.secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


def registry_config(
    layout: StackLayout, port: int, bridge_url: str | None, secret: str | None = None
) -> str:
    """CNCF Distribution's config.yml: filesystem storage, deletes on, optional webhook.

    The webhook's secret is ``secret``, else $SHIPYARD_BRIDGE_SECRET.
    """
    lines = [
        "version: 0.1",
        "log:",
        "  level: info",
        "  formatter: text",
        "storage:",
        "  filesystem:",
        f"    rootdirectory: {layout.data_dir('registry') / 'storage'}",
        "  delete:",
        "    enabled: true",
        "http:",
        f"  addr: {layout.host}:{port}",
        "  headers:",
        "    X-Content-Type-Options: [nosniff]",
    ]
    if bridge_url:
        secret = secret or os.environ.get("SHIPYARD_BRIDGE_SECRET", "")
        lines += [
            "notifications:",
            "  events:",
            "    includereferences: true",
            "  endpoints:",
            "    - name: shipyard-bridge",
            f"      url: {bridge_url}",
            "      timeout: 2s",
            "      threshold: 10",
            "      backoff: 1s",
        ]
        if secret:
            lines += ["      headers:", f'        Authorization: ["Bearer {secret}"]']
    return "\n".join(lines) + "\n"


def registry_spec(
    layout: StackLayout, port: int, bridge_url: str | None = None, secret: str | None = None
) -> ServiceSpec:
    """A CNCF Distribution registry on loopback (plain HTTP); pushes notify the bridge."""
    program = require("docker-registry")
    config = layout.data_dir("registry") / "config.yml"

    def prepare() -> None:
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(registry_config(layout, port, bridge_url, secret))

    return ServiceSpec(
        name="registry",
        argv=[program, "serve", str(config)],
        health=lambda: http_ok(f"http://{layout.host}:{port}/v2/"),
        prepare=prepare,
    )


def podman_files(layout: StackLayout, registry_port: int) -> dict[str, str]:
    """Environment pointing podman at config files kept in the state dir."""
    conf_dir = layout.data_dir("podman") / "conf"
    return {
        "CONTAINERS_CONF": str(conf_dir / "containers.conf"),
        "CONTAINERS_REGISTRIES_CONF": str(conf_dir / "registries.conf"),
    }


def podman_runroot(layout: StackLayout) -> Path:
    """Podman's runtime dir: short (podman refuses runroots over 50 characters), so it
    lives in the temp dir under a name derived from the state dir."""
    digest = hashlib.sha256(str(layout.root).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"shipyard-{digest}" / "runroot"


def podman_spec(layout: StackLayout, registry_port: int) -> ServiceSpec:
    """Podman's Docker-compatible API on a unix socket (runc, cgroupfs, vfs storage)."""
    program = require("podman")
    require("runc")
    data = layout.data_dir("podman")
    env = podman_files(layout, registry_port)
    sock = layout.podman_socket

    def prepare() -> None:
        conf_dir = data / "conf"
        conf_dir.mkdir(parents=True, exist_ok=True)
        (conf_dir / "containers.conf").write_text(
            "[containers]\n"
            'cgroups = "disabled"\n'
            "[engine]\n"
            'cgroup_manager = "cgroupfs"\n'
            'runtime = "runc"\n'
            'events_logger = "file"\n'
        )
        (conf_dir / "registries.conf").write_text(
            "unqualified-search-registries = []\n"
            "[[registry]]\n"
            f'location = "{layout.host}:{registry_port}"\n'
            "insecure = true\n"
            "[[registry]]\n"
            f'location = "localhost:{registry_port}"\n'
            "insecure = true\n"
        )
        sock.parent.mkdir(parents=True, exist_ok=True)
        sock.unlink(missing_ok=True)

    return ServiceSpec(
        name="docker",
        argv=[
            program,
            "--root",
            str(data / "root"),
            "--runroot",
            str(podman_runroot(layout)),
            "--storage-driver",
            "vfs",
            "system",
            "service",
            "--time=0",
            f"unix://{sock}",
        ],
        env=env,
        health=lambda: unix_http_ok(str(sock)),
        prepare=prepare,
    )


def external_docker_spec(docker_host: str) -> ServiceSpec:
    """The user's own Docker Engine (DOCKER_HOST), probed but never started or stopped."""

    def health() -> bool:
        if docker_host.startswith("unix://"):
            return unix_http_ok(docker_host.removeprefix("unix://"))
        if docker_host.startswith("tcp://"):
            return http_ok("http://" + docker_host.removeprefix("tcp://") + "/_ping")
        return False

    return ServiceSpec(name="docker", argv=[], health=health, external=True)


def s3_spec(layout: StackLayout, port: int) -> ServiceSpec:
    """moto's S3-compatible server (production uses S3 or MinIO)."""
    return ServiceSpec(
        name="s3",
        argv=[_bin("moto_server"), "-H", layout.host, "-p", str(port)],
        env={"MOTO_S3_CUSTOM_ENDPOINTS": f"http://{layout.host}:{port}"},
        health=lambda: http_ok(f"http://{layout.host}:{port}/moto-api/"),
    )


def git_spec(layout: StackLayout, port: int) -> ServiceSpec:
    """`git daemon` serving every repo under data/git, pushes allowed (loopback only)."""
    program = require("git")
    base = layout.data_dir("git")
    return ServiceSpec(
        name="git",
        argv=[
            program,
            "daemon",
            "--reuseaddr",
            "--export-all",
            "--enable=receive-pack",
            f"--base-path={base}",
            f"--listen={layout.host}",
            f"--port={port}",
            str(base),
        ],
        health=lambda: tcp_open(layout.host, port),
        prepare=lambda: _seed_git(layout),
    )


def _seed_git(layout: StackLayout) -> None:
    """The git server starts with an empty GitOps repo to push to."""
    create_bare_repo(layout, "gitops")


def create_bare_repo(layout: StackLayout, name: str) -> Path:
    """Create (once) a bare repo served by the stack's git daemon; return its path."""
    path = layout.data_dir("git") / f"{name}.git"
    if not (path / "HEAD").exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["git", "init", "-q", "--bare", "-b", "main", str(path)],
            check=True,
            capture_output=True,
        )
    return path
