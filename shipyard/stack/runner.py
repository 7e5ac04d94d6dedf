"""`stack up | down | status`: start, probe and stop the local services.

`up` is idempotent (a healthy service is left alone), starts what is missing in
parallel, waits for every health probe, and on any failure stops what it started
itself, so a failed `up` leaves nothing half-running.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import time
from collections.abc import Callable

from shipyard.core.errors import ConfigError, TransientError
from shipyard.stack import clusters as fleet_clusters
from shipyard.stack import database as prod
from shipyard.stack import monitoring, process
from shipyard.stack.model import (
    DEFAULT_PORTS,
    ServiceSpec,
    ServiceStatus,
    StackLayout,
    StackReport,
)
from shipyard.stack.probes import free_port, http_ok, tcp_open
from shipyard.stack.seed import seed_limits
from shipyard.stack.services import (
    S3_TEST_CREDENTIALS,
    bridge_secret,
    external_docker_spec,
    git_spec,
    podman_spec,
    prefect_spec,
    registry_spec,
    s3_spec,
)

SERVICE_ORDER = (
    *prod.BACKING_SERVICES,
    "prefect",
    "registry",
    "docker",
    "s3",
    "git",
    "kube",
    *monitoring.MONITORING_SERVICES,
    "bridge",
    "worker",
)

Progress = Callable[[str], None]


def _sim_available() -> bool:
    return importlib.util.find_spec("shipyard.cli.sim") is not None


def resolve_ports(layout: StackLayout, requested: dict[str, int] | None = None) -> dict[str, int]:
    """Ports for this stack: remembered ones first, then requested/env/defaults (0 = free)."""
    ports = dict(layout.load_ports())
    for name, default in DEFAULT_PORTS.items():
        if name in ports:
            continue
        env_value = os.environ.get(f"SHIPYARD_PORT_{name.upper()}")
        value = (requested or {}).get(name, int(env_value) if env_value else default)
        ports[name] = value or free_port(layout.host)
    return ports


def build_specs(layout: StackLayout, ports: dict[str, int]) -> list[ServiceSpec]:
    """Every service of the stack, in start order."""
    docker_host = os.environ.get("DOCKER_HOST")
    profile = prod.load_profile(layout)  # PostgreSQL / Redis when `up` was asked for them
    backing = prod.backing_specs(layout, ports, profile)
    server_env = prod.prefect_server_env(layout, ports, profile)
    specs = [
        *backing,
        prod.wire_prefect(prefect_spec(layout, ports["prefect"]), backing, server_env),
        registry_spec(
            layout,
            ports["registry"],
            os.environ.get("SHIPYARD_REGISTRY_WEBHOOK") or bridge_url(layout, ports),
            bridge_secret(layout),
        ),
        external_docker_spec(docker_host)
        if docker_host
        else podman_spec(layout, ports["registry"]),
        s3_spec(layout, ports["s3"]),
        git_spec(layout, ports["git"]),
    ]
    if _sim_available():
        port = ports["kube"]
        specs.append(
            ServiceSpec(
                name="kube",
                argv=[
                    sys.executable,
                    "-m",
                    "shipyard.cli.main",
                    "sim-cluster",
                    "--kubeconfig",
                    str(layout.kubeconfig),
                    "--host",
                    layout.host,
                    "--port",
                    str(port),
                ],
                health=lambda: (
                    layout.kubeconfig.exists() and http_ok(f"http://{layout.host}:{port}/version")
                ),
            )
        )
    specs += monitoring.monitoring_specs(layout, ports)
    return specs


def bridge_url(layout: StackLayout, ports: dict[str, int]) -> str:
    """Where the registry sends push notifications: the bridge `shipyard demo` starts."""
    return f"http://{layout.host}:{ports['bridge']}/hooks/distribution"


def env_values(layout: StackLayout, ports: dict[str, int]) -> dict[str, str]:
    """The variables the rest of the project reads to find the stack's services."""
    host = layout.host
    docker_host = os.environ.get("DOCKER_HOST") or f"unix://{layout.podman_socket}"
    values = {
        "SHIPYARD_STATE_DIR": str(layout.root),
        "PREFECT_API_URL": f"http://{host}:{ports['prefect']}/api",
        "DOCKER_HOST": docker_host,
        "SHIPYARD_REGISTRY": f"{host}:{ports['registry']}",
        "SHIPYARD_S3_ENDPOINT": f"http://{host}:{ports['s3']}",
        "SHIPYARD_GIT_URL": f"git://{host}:{ports['git']}",
        "SHIPYARD_BRIDGE_URL": f"http://{host}:{ports['bridge']}",
        **S3_TEST_CREDENTIALS,
        **fleet_clusters.cluster_env(layout),
        **monitoring.monitoring_env(layout, ports),
        **prod.client_env(layout, ports, prod.load_profile(layout)),
    }
    if _sim_available():
        values["KUBECONFIG"] = str(layout.kubeconfig)
    return values


def write_env_file(layout: StackLayout, values: dict[str, str]) -> None:
    """Write ``export KEY='value'`` lines: `source`-able by a shell, parseable by us."""
    lines = ["# Written by `shipyard stack up`; source it: . .shipyard/env"]
    lines += [f"export {key}='{value}'" for key, value in values.items()]
    layout.env_file.write_text("\n".join(lines) + "\n")


def read_env_file(layout: StackLayout) -> dict[str, str]:
    """Parse the env file written by :func:`write_env_file` ({} when absent)."""
    try:
        text = layout.env_file.read_text()
    except FileNotFoundError:
        return {}
    values: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("export ") and "=" in line:
            key, _, value = line.removeprefix("export ").partition("=")
            values[key] = value.strip("'")
    return values


def stack_up(
    layout: StackLayout,
    ports: dict[str, int] | None = None,
    progress: Progress | None = None,
    clusters: int | None = None,
    database: str | None = None,
    messaging: str | None = None,
) -> StackReport:
    """Start every service that is not already healthy, wait until all are, write env.

    ``clusters``: how many labelled simulated clusters to run beside them (see
    :mod:`shipyard.stack.clusters`); None keeps the number an earlier `up` asked for.
    ``database`` (sqlite | postgresql) and ``messaging`` (memory | redis): the Prefect
    server's profile (:mod:`shipyard.stack.database`); None keeps the last `up`'s.
    """
    say = progress or (lambda _msg: None)
    started_at = time.monotonic()
    profile = prod.resolve_profile(layout, database, messaging)
    layout.root.mkdir(parents=True, exist_ok=True)
    prod.save_profile(layout, profile)
    resolved = resolve_ports(layout, ports)
    specs = build_specs(layout, resolved)
    layout.save_ports(resolved)

    statuses: dict[str, ServiceStatus] = {}
    launched: list[ServiceSpec] = []
    t0: dict[str, float] = {}
    try:
        for spec in specs:
            addr = _address(spec.name, layout, resolved)
            pid = process.read_pid(layout, spec.name)
            if spec.external or pid is not None:
                statuses[spec.name] = ServiceStatus(spec.name, True, False, pid, addr)
                t0[spec.name] = time.monotonic()
                continue
            port = resolved.get(_port_key(spec.name))
            if port and tcp_open(layout.host, port):
                raise ConfigError(
                    f"port {port} for {spec.name} is taken by another process: stop it, or set "
                    f"SHIPYARD_PORT_{_port_key(spec.name).upper()} to a free port and delete "
                    f"{layout.ports_file}"
                )
            if spec.prepare:
                spec.prepare()
            say(f"starting {spec.name}")
            t0[spec.name] = time.monotonic()
            pid = process.spawn(layout, spec)
            launched.append(spec)
            statuses[spec.name] = ServiceStatus(spec.name, True, False, pid, addr)
        _wait_healthy(layout, specs, statuses, t0, say)
        seed_limits(f"http://{layout.host}:{resolved['prefect']}/api")  # before any flow
        fleet = fleet_clusters.clusters_up(layout, clusters, say)
        monitoring.write_cluster_targets(layout, resolved)  # Prometheus scrapes the fleet too
    except BaseException:
        for spec in reversed(launched):
            process.stop(layout, spec.name)
        raise
    values = env_values(layout, resolved)
    if db := serve_trivy_db(values["SHIPYARD_REGISTRY"], say):
        values["SHIPYARD_TRIVY_DB_REPOSITORY"] = db
    write_env_file(layout, values)
    ordered = [statuses[s.name] for s in specs] + fleet
    return StackReport(ordered, time.monotonic() - started_at, layout.env_file, profile.describe())


def serve_trivy_db(registry: str, say: Progress) -> str | None:
    """Push the stack's trivy DB to its registry (see :mod:`shipyard.stack.trivy_db`);
    its reference, or None (said why) when it cannot be built here: scans then block on
    missing vulnerability data unless a policy waives it."""
    from shipyard.core.errors import ShipyardError
    from shipyard.stack.trivy_db import ensure_trivy_db

    started = time.monotonic()
    try:
        ref = ensure_trivy_db(registry)
    except ShipyardError as exc:
        say(f"trivy-db not served: {exc}")
        return None
    say(f"trivy-db served as {ref} ({time.monotonic() - started:.1f}s)")
    return ref


def _wait_healthy(
    layout: StackLayout,
    specs: list[ServiceSpec],
    statuses: dict[str, ServiceStatus],
    t0: dict[str, float],
    say: Progress,
) -> None:
    pending = {s.name: s for s in specs}
    while pending:
        for name, spec in list(pending.items()):
            status = statuses[name]
            if spec.health():
                status.healthy = True
                status.seconds = time.monotonic() - t0[name]
                say(f"{name} ready in {status.seconds:.1f}s")
                del pending[name]
                continue
            if spec.external:
                raise ConfigError(
                    f"{name}: DOCKER_HOST={os.environ.get('DOCKER_HOST')} does not answer; "
                    "start that engine or unset DOCKER_HOST to use podman"
                )
            if process.read_pid(layout, name) is None:
                raise TransientError(
                    f"{name} exited during start; last log lines: "
                    f"{process.tail(layout.log_file(name)) or '(none)'} "
                    f"(full log: {layout.log_file(name)})"
                )
            if time.monotonic() - t0[name] > spec.ready_timeout:
                raise TransientError(
                    f"{name} not healthy after {spec.ready_timeout:.0f}s; "
                    f"see {layout.log_file(name)}"
                )
        if pending:
            time.sleep(0.1)


def stack_down(
    layout: StackLayout, purge: bool = False, progress: Progress | None = None
) -> StackReport:
    """Stop every service of the stack (reverse order); ``purge`` also deletes its state."""
    say = progress or (lambda _msg: None)
    started_at = time.monotonic()
    statuses = list(reversed(fleet_clusters.clusters_down(layout, say)))
    for name in reversed(SERVICE_ORDER):
        was_running = process.stop(layout, name)
        if was_running:
            say(f"stopped {name}")
        statuses.append(
            ServiceStatus(name, False, False, None, "", note="stopped" if was_running else "")
        )
    layout.env_file.unlink(missing_ok=True)
    if purge and layout.root.exists():
        prod.remove_cluster(layout)  # it may live outside the state dir
        shutil.rmtree(layout.root)
    return StackReport(list(reversed(statuses)), time.monotonic() - started_at, layout.env_file)


def stack_status(layout: StackLayout) -> StackReport:
    """Each service's pid and health, without starting or stopping anything.

    The bridge and the Kubernetes worker, which `shipyard demo` starts under the same
    state directory, are listed too; when they are not running they are reported as
    such without making the stack unhealthy.
    """
    started_at = time.monotonic()
    ports = layout.load_ports()
    statuses: list[ServiceStatus] = []
    if ports:
        for spec in build_specs(layout, resolve_ports(layout)):
            pid = process.read_pid(layout, spec.name)
            healthy = (pid is not None or spec.external) and spec.health()
            statuses.append(
                ServiceStatus(
                    spec.name, pid is not None, healthy, pid, _address(spec.name, layout, ports)
                )
            )
        statuses += [_bridge_status(layout, ports), _worker_status(layout)]
    statuses += fleet_clusters.clusters_status(layout)
    profile = prod.load_profile(layout).describe() if ports else ""
    return StackReport(statuses, time.monotonic() - started_at, layout.env_file, profile)


def _bridge_status(layout: StackLayout, ports: dict[str, int]) -> ServiceStatus:
    """The registry-event bridge: running when its pid lives, healthy when /healthz answers."""
    pid = process.read_pid(layout, "bridge")
    address = _address("bridge", layout, ports)
    healthy = pid is not None and bool(address) and http_ok(f"{address}/healthz")
    note = "" if pid is not None else "not started (shipyard demo starts it)"
    return ServiceStatus("bridge", pid is not None, healthy, pid, address, note=note, optional=True)


def _worker_status(layout: StackLayout) -> ServiceStatus:
    """The Prefect Kubernetes worker: healthy while its process runs (it polls the pool
    named on its command line, shown as its address)."""
    pid = process.read_pid(layout, "worker")
    pool = process.option_of(pid, "--pool") if pid is not None else None
    note = "" if pid is not None else "not started (shipyard demo starts it)"
    address = f"work pool {pool}" if pool else ""
    return ServiceStatus(
        "worker", pid is not None, pid is not None, pid, address, note=note, optional=True
    )


def _port_key(service: str) -> str:
    return service


def _address(service: str, layout: StackLayout, ports: dict[str, int]) -> str:
    if service == "docker":
        return os.environ.get("DOCKER_HOST") or f"unix://{layout.podman_socket}"
    if service in prod.BACKING_SERVICES:
        return prod.address(layout, service, ports)
    port = ports.get(service)
    scheme = {"git": "git", "prefect": "http", "s3": "http", "registry": "http", "kube": "http"}
    return f"{scheme.get(service, 'http')}://{layout.host}:{port}" if port else ""
