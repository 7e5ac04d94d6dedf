"""The bridge's Kubernetes manifests: least privilege, and arguments the CLI accepts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import typer
from ruamel.yaml import YAML

from shipyard.cli.main import build_app

MANIFESTS = Path(__file__).parents[2] / "deployments" / "bridge" / "bridge.yaml"


def docs() -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in YAML(typ="safe").load_all(MANIFESTS.read_text()) if d}


def test_kinds_present() -> None:
    assert set(docs()) == {
        "Namespace",
        "ServiceAccount",
        "ConfigMap",
        "PersistentVolumeClaim",
        "Deployment",
        "Service",
        "NetworkPolicy",
    }


def test_least_privilege() -> None:
    kinds = docs()
    assert not {"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"} & set(kinds)
    assert kinds["ServiceAccount"]["automountServiceAccountToken"] is False
    spec = kinds["Deployment"]["spec"]
    assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate"
    pod = spec["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    secret_env = {e["name"]: e["valueFrom"] for e in container["env"] if "valueFrom" in e}
    assert secret_env["SHIPYARD_BRIDGE_SECRET"]["secretKeyRef"]["key"] == "webhook-secret"
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    policy = kinds["NetworkPolicy"]["spec"]
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    assert [p["port"] for p in policy["ingress"][0]["ports"]] == [8787]


def test_spool_is_on_the_persistent_volume() -> None:
    pod = docs()["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    claim = volumes["spool"]["persistentVolumeClaim"]["claimName"]
    assert claim == docs()["PersistentVolumeClaim"]["metadata"]["name"]
    assert f"--spool-dir={mounts['spool']}" in container["args"]


def test_args_parse_with_the_real_cli() -> None:
    (container,) = docs()["Deployment"]["spec"]["template"]["spec"]["containers"]
    program, *args = container["args"]
    assert program == "shipyard"
    assert args[:2] == ["bridge", "serve"]
    root = typer.main.get_command(build_app())
    ctx = click.Context(root)
    group = root.get_command(ctx, "bridge")  # type: ignore[attr-defined]
    serve = group.get_command(ctx, "serve")
    parsed = serve.make_context("serve", list(args[2:]), parent=ctx)  # raises on unknown options
    assert parsed.params["port"] == 8787
    assert parsed.params["host"] == "0.0.0.0"
    assert str(parsed.params["catalog"]).endswith("shipyard-catalog.yaml")
