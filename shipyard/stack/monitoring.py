"""The stack's monitoring: the Shipyard exporter, Prometheus and Alertmanager.

Three services beside the others, each one process with its config generated under
the state directory (never in /etc):

- ``exporter``: ``shipyard exporter`` (metrics derived from Prefect's events and flow
  runs), started only once the command exists in this checkout;
- ``prometheus``: the Debian package's ``/usr/bin/prometheus``. It scrapes the exporter,
  the bridge (optional: a down target only shows ``up == 0``), the Prefect server's
  ``/api/metrics`` (``PREFECT_SERVER_METRICS_ENABLED``), the main simulator and every
  fleet cluster of ``stack up --clusters N`` (a file-discovered target list that
  ``stack up`` rewrites, each with its ``cluster`` label; the main simulator's is
  :data:`MAIN_CLUSTER`, the name of the demo's cluster block). Rule files are every
  ``*.yaml`` in ``data/prometheus/rules/``: Shipyard's rules (the plain ``groups:``
  file of ``deployments/monitoring/rules/``) plus whatever a test adds there before a
  reload (:func:`add_rules`);
- ``alertmanager``: ``/usr/bin/prometheus-alertmanager``, one route to the bridge's
  ``POST /hooks/alertmanager`` with the bridge's bearer secret read from its file (the
  secret never appears in the config), a short ``group_wait`` so a local alert reaches
  Prefect within seconds.

Intervals are short (5 s) because the stack is for demos and tests; production sizes
its own Prometheus (docs/observability.md).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml

from shipyard.core.errors import ConfigError, TransientError
from shipyard.stack.model import ServiceSpec, StackLayout
from shipyard.stack.probes import http_ok

__all__ = [
    "ALERTMANAGER",
    "MAIN_CLUSTER",
    "MONITORING_SERVICES",
    "PROMETHEUS",
    "SCRAPE_INTERVAL",
    "add_rules",
    "alertmanager_config",
    "alertmanager_spec",
    "exporter_available",
    "exporter_spec",
    "monitoring_env",
    "monitoring_specs",
    "prometheus_config",
    "prometheus_spec",
    "reload_prometheus",
    "write_cluster_targets",
    "write_shipyard_rules",
]

PROMETHEUS = "/usr/bin/prometheus"
ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
# Debian package per program, for the "missing prerequisite" message.
PACKAGES = {PROMETHEUS: "prometheus", ALERTMANAGER: "prometheus-alertmanager"}
MONITORING_SERVICES = ("exporter", "prometheus", "alertmanager")
SCRAPE_INTERVAL = "5s"
EXPORTER_INTERVAL = "5"  # seconds between the exporter's refreshes from Prefect
# The `cluster` label of the stack's main simulator: the demo's cluster block name.
MAIN_CLUSTER = "default"
ROOT = Path(__file__).resolve().parents[2]
RULES_FILE = ROOT / "deployments" / "monitoring" / "rules" / "shipyard-rules.yaml"
SHIPYARD_RULES = "shipyard.yaml"

Target = tuple[str, dict[str, str]]


def exporter_available() -> bool:
    """True when this checkout has the ``shipyard exporter`` command."""
    return importlib.util.find_spec("shipyard.cli.exporter") is not None


def _program(path: str, package: str | None = None) -> str:
    """``path`` when installed (Debian's path), else the upstream name on PATH, else a
    ConfigError naming the Debian ``package`` to install (as ``services.require`` does)."""
    package = package or PACKAGES[path]
    if os.access(path, os.X_OK):
        return path
    upstream = os.path.basename(path).removeprefix("prometheus-")
    found = shutil.which(upstream)
    if found is not None:
        return found
    raise ConfigError(
        f"'{path}' is missing: install it with 'apt-get install -y {package}' "
        "(or run scripts/setup.sh as root)"
    )


def _prom_dir(layout: StackLayout) -> Path:
    return layout.data_dir("prometheus")


def rules_dir(layout: StackLayout) -> Path:
    """Where Prometheus loads rule files from (every ``*.yaml``)."""
    return _prom_dir(layout) / "rules"


def targets_file(layout: StackLayout) -> Path:
    """The simulators Prometheus scrapes (file service discovery, rewritten by `up`)."""
    return _prom_dir(layout) / "targets" / "clusters.json"


def write_shipyard_rules(layout: StackLayout) -> Path | None:
    """Write Shipyard's alert rules into the rules directory; None when there are none.

    :func:`shipyard.stack.monitoring_rules.write_rules_file` extracts them from the
    PrometheusRule (the one source of truth); without that module, the plain copy kept
    in ``deployments/monitoring/rules/`` is used as it is.
    """
    dest = rules_dir(layout) / SHIPYARD_RULES
    if importlib.util.find_spec("shipyard.stack.monitoring_rules") is not None:
        module = importlib.import_module("shipyard.stack.monitoring_rules")
        if module.PROMETHEUS_RULE.exists():
            written: Path = module.write_rules_file(dest)
            return written
    if RULES_FILE.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(RULES_FILE.read_text())
        return dest
    return None


def prometheus_config(
    layout: StackLayout, ports: dict[str, int], *, prefect_metrics: bool = True
) -> dict[str, Any]:
    """Prometheus's configuration for this stack (as a mapping; dumped as YAML)."""
    host = layout.host

    def job(name: str, target: str, path: str = "/metrics") -> dict[str, Any]:
        return {
            "job_name": name,
            "metrics_path": path,
            "static_configs": [{"targets": [target]}],
        }

    jobs = [job("prometheus", f"{host}:{ports['prometheus']}")]
    if "exporter" in ports and exporter_available():
        jobs.append(job("shipyard-exporter", f"{host}:{ports['exporter']}"))
    jobs.append(job("shipyard-bridge", f"{host}:{ports['bridge']}"))
    if prefect_metrics:
        jobs.append(job("prefect", f"{host}:{ports['prefect']}", "/api/metrics"))
    jobs.append(
        {
            "job_name": "simcluster",
            "metrics_path": "/metrics",
            "file_sd_configs": [{"files": [str(targets_file(layout))], "refresh_interval": "5s"}],
        }
    )
    return {
        "global": {
            "scrape_interval": SCRAPE_INTERVAL,
            "scrape_timeout": "4s",
            "evaluation_interval": SCRAPE_INTERVAL,
        },
        "rule_files": [str(rules_dir(layout) / "*.yaml")],
        "alerting": {
            "alertmanagers": [
                {"static_configs": [{"targets": [f"{host}:{ports['alertmanager']}"]}]}
            ]
        },
        "scrape_configs": jobs,
    }


def alertmanager_config(layout: StackLayout, ports: dict[str, int]) -> dict[str, Any]:
    """Alertmanager's configuration: every alert to the bridge, resolved ones too."""
    return {
        "route": {
            "receiver": "shipyard-bridge",
            "group_by": ["alertname", "cluster", "app", "environment"],
            "group_wait": "1s",
            "group_interval": "5s",
            "repeat_interval": "4h",
        },
        "receivers": [
            {
                "name": "shipyard-bridge",
                "webhook_configs": [
                    {
                        "url": f"http://{layout.host}:{ports['bridge']}/hooks/alertmanager",
                        "send_resolved": True,
                        "max_alerts": 0,
                        "http_config": {
                            "authorization": {
                                "type": "Bearer",
                                "credentials_file": str(layout.root / "bridge.secret"),
                            }
                        },
                    }
                ],
            }
        ],
    }


def _cluster_targets(layout: StackLayout, ports: dict[str, int]) -> list[Target]:
    """The main simulator (when this checkout has one) and every recorded fleet cluster."""
    from shipyard.stack import clusters as fleet_clusters

    targets: list[Target] = []
    if "kube" in ports and importlib.util.find_spec("shipyard.cli.sim") is not None:
        targets.append((f"{layout.host}:{ports['kube']}", {"cluster": MAIN_CLUSTER}))
    for status in fleet_clusters.clusters_status(layout):
        address = status.address.removeprefix("http://")
        if address:
            targets.append((address, {"cluster": status.name.removeprefix("cluster-")}))
    return targets


def write_cluster_targets(layout: StackLayout, ports: dict[str, int]) -> Path:
    """(Re)write the simulators' target list; Prometheus re-reads it within seconds."""
    path = targets_file(layout)
    path.parent.mkdir(parents=True, exist_ok=True)
    groups = [{"targets": [t], "labels": labels} for t, labels in _cluster_targets(layout, ports)]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(groups, indent=2) + "\n")
    tmp.replace(path)  # atomic: Prometheus never reads half a file
    return path


def add_rules(layout: StackLayout, name: str, text: str) -> Path:
    """Put a rules file beside Shipyard's (e.g. a test's); :func:`reload_prometheus` after."""
    path = rules_dir(layout) / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def reload_prometheus(url: str, timeout: float = 10.0) -> None:
    """Ask Prometheus to re-read its config and rule files (``--web.enable-lifecycle``)."""
    try:
        response = httpx.post(f"{url.rstrip('/')}/-/reload", timeout=timeout)
    except httpx.HTTPError as exc:
        raise TransientError(f"Prometheus at {url} unreachable: {exc}") from None
    if response.status_code != 200:
        raise TransientError(f"Prometheus reload failed ({response.status_code}): {response.text}")


def prometheus_spec(layout: StackLayout, ports: dict[str, int]) -> ServiceSpec:
    """Prometheus on loopback with the generated config, rules and target list."""
    program = _program(PROMETHEUS)
    data = _prom_dir(layout)
    config = data / "prometheus.yml"
    port = ports["prometheus"]

    def prepare() -> None:
        rules_dir(layout).mkdir(parents=True, exist_ok=True)
        write_shipyard_rules(layout)
        write_cluster_targets(layout, ports)
        config.write_text(yaml.safe_dump(prometheus_config(layout, ports), sort_keys=False))

    return ServiceSpec(
        name="prometheus",
        argv=[
            program,
            f"--config.file={config}",
            f"--storage.tsdb.path={data / 'tsdb'}",
            "--storage.tsdb.retention.time=7d",
            f"--web.listen-address={layout.host}:{port}",
            "--web.enable-lifecycle",
            f"--web.external-url=http://{layout.host}:{port}/",
        ],
        health=lambda: http_ok(f"http://{layout.host}:{port}/-/ready"),
        prepare=prepare,
    )


def alertmanager_spec(layout: StackLayout, ports: dict[str, int]) -> ServiceSpec:
    """Alertmanager on loopback, clustering off, routing every alert to the bridge."""
    from shipyard.stack.services import bridge_secret

    program = _program(ALERTMANAGER)
    data = layout.data_dir("alertmanager")
    config = data / "alertmanager.yml"
    port = ports["alertmanager"]

    def prepare() -> None:
        bridge_secret(layout)  # the credentials file must exist before Alertmanager reads it
        (data / "storage").mkdir(parents=True, exist_ok=True)
        config.write_text(yaml.safe_dump(alertmanager_config(layout, ports), sort_keys=False))

    return ServiceSpec(
        name="alertmanager",
        argv=[
            program,
            f"--config.file={config}",
            f"--storage.path={data / 'storage'}",
            f"--web.listen-address={layout.host}:{port}",
            f"--web.external-url=http://{layout.host}:{port}/",
            "--cluster.listen-address=",
        ],
        health=lambda: http_ok(f"http://{layout.host}:{port}/-/ready"),
        prepare=prepare,
    )


def exporter_spec(layout: StackLayout, ports: dict[str, int]) -> ServiceSpec:
    """``shipyard exporter`` reading the stack's Prefect API."""
    port = ports["exporter"]
    return ServiceSpec(
        name="exporter",
        argv=[
            sys.executable,
            "-m",
            "shipyard.cli.main",
            "exporter",
            "--host",
            layout.host,
            "--port",
            str(port),
            "--interval",
            EXPORTER_INTERVAL,
        ],
        env={
            "PREFECT_API_URL": f"http://{layout.host}:{ports['prefect']}/api",
            "SHIPYARD_STATE_DIR": str(layout.root),
        },
        health=lambda: http_ok(f"http://{layout.host}:{port}/metrics"),
    )


def monitoring_specs(layout: StackLayout, ports: dict[str, int]) -> list[ServiceSpec]:
    """The exporter (when available), Prometheus and Alertmanager, in start order."""
    makers: list[Callable[[StackLayout, dict[str, int]], ServiceSpec]] = []
    if exporter_available():
        makers.append(exporter_spec)
    makers += [prometheus_spec, alertmanager_spec]
    return [make(layout, ports) for make in makers]


def monitoring_env(layout: StackLayout, ports: dict[str, int]) -> dict[str, str]:
    """``SHIPYARD_PROMETHEUS_URL``, ``SHIPYARD_ALERTMANAGER_URL`` (and the exporter's)."""
    host = layout.host
    values = {
        "SHIPYARD_PROMETHEUS_URL": f"http://{host}:{ports['prometheus']}",
        "SHIPYARD_ALERTMANAGER_URL": f"http://{host}:{ports['alertmanager']}",
    }
    if exporter_available():
        values["SHIPYARD_EXPORTER_URL"] = f"http://{host}:{ports['exporter']}"
    return values
