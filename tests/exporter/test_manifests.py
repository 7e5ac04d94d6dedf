"""The exporter's Kubernetes manifests: least privilege, a ServiceMonitor on the metrics
port, and arguments the real CLI accepts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import typer
from ruamel.yaml import YAML

from shipyard.cli.main import build_app

MANIFESTS = Path(__file__).parents[2] / "deployments" / "exporter" / "exporter.yaml"


def docs() -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in YAML(typ="safe").load_all(MANIFESTS.read_text()) if d}


def test_least_privilege_and_probes() -> None:
    kinds = docs()
    assert not {"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"} & set(kinds)
    assert kinds["ServiceAccount"]["automountServiceAccountToken"] is False
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    policy = kinds["NetworkPolicy"]["spec"]
    assert [p["port"] for p in policy["ingress"][0]["ports"]] == [9464]


def test_service_monitor_scrapes_the_service_port() -> None:
    kinds = docs()
    monitor = kinds["ServiceMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    labels = kinds["Service"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in kinds["Service"]["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"


def test_args_parse_with_the_real_cli() -> None:
    (container,) = docs()["Deployment"]["spec"]["template"]["spec"]["containers"]
    program, command, *args = container["args"]
    assert (program, command) == ("shipyard", "exporter")
    root = typer.main.get_command(build_app())
    ctx = click.Context(root)  # type: ignore[arg-type]
    exporter = root.get_command(ctx, "exporter")  # type: ignore[attr-defined]
    parsed = exporter.make_context("exporter", list(args), parent=ctx)  # unknown options raise
    assert (parsed.params["host"], parsed.params["port"]) == ("0.0.0.0", 9464)
    assert container["ports"][0]["containerPort"] == parsed.params["port"]
