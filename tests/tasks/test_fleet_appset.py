"""`shipyard fleet appset`: the fleet's waves as an Argo CD ApplicationSet with RollingSync
steps, valid against the ApplicationSet schema (as JSON Schema, and as a CRD's structural
schema that the cluster simulator enforces on apply)."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from shipyard.core.errors import ConfigError
from tasks.fleet.config import Fleet, assign_waves, load_fleet
from tasks.fleet_appset import (
    FLEET_LABEL,
    WAVE_LABEL,
    AppSetConfig,
    render_appset,
    render_appset_yaml,
)
from tests.fixtures.simcluster import SimClusterHandle

SHIPYARD = [sys.executable, "-m", "shipyard.cli.main"]

SPEC: dict[str, Any] = {
    "apiVersion": "shipyard.dev/v1",
    "kind": "Fleet",
    "metadata": {"name": "shop-prod"},
    "clusters": [
        {"name": "eu-1", "kubeconfig": "/kc/eu-1", "labels": {"region": "eu", "tier": "canary"}},
        {"name": "eu-2", "kubeconfig": "/kc/eu-2", "labels": {"region": "eu"}},
        {"name": "eu-3", "kubeconfig": "/kc/eu-3", "labels": {"region": "eu", "edge": "yes"}},
        {"name": "us-1", "kubeconfig": "/kc/us-1", "labels": {"region": "us"}},
        {"name": "ap-1", "kubeconfig": "/kc/ap-1", "labels": {"region": "ap"}},
    ],
    "rollout": {
        "path": "envs/prod/{cluster}/api",
        "namespace": "shop",
        "sync": {"driver": "apply"},
        "verify": {"workloads": ["deployment/api"], "timeout_seconds": 60},
        "waves": [
            {
                "name": "canary",
                "selector": {"matchLabels": {"tier": "canary"}},
                "bake_seconds": 300,
            },
            {
                "name": "eu",
                "selector": {
                    "matchLabels": {"region": "eu"},
                    "matchExpressions": [{"key": "edge", "operator": "DoesNotExist"}],
                },
                "max_parallel": 2,
            },
            {
                "name": "us",
                "selector": {
                    "matchExpressions": [{"key": "region", "operator": "In", "values": ["us"]}]
                },
                "approve": True,
            },
            {"name": "rest", "on_unreachable": "skip"},
        ],
    },
    "rollback": "all",
}
FLEET = Fleet.model_validate(SPEC)

CONFIG = AppSetConfig(repo_url="https://git.example.com/shop/gitops.git", project="shop")

# The parts of the ApplicationSet CRD (argoproj.io/v1alpha1) a rendered fleet uses, as a
# structural schema: every field typed, nothing unknown (the API server prunes or, with
# strict field validation, refuses undeclared fields). Shaped after Argo CD's
# manifests/crds/applicationset-crd.yaml; enums as Argo CD's RollingSync accepts them.
_SELECTOR: dict[str, Any] = {
    "type": "object",
    "properties": {
        "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
        "matchExpressions": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["key", "operator"],
                "properties": {
                    "key": {"type": "string"},
                    "operator": {"type": "string"},
                    "values": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
}
APPSET_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        # No "metadata" here: the API server validates ObjectMeta itself. (Argo CD's CRD
        # declares `metadata: {type: object}`; the simulator then prunes metadata.name,
        # which kube-apiserver never does: reported to the simulator's owner.)
        "spec": {
            "type": "object",
            "required": ["generators", "template"],
            "properties": {
                "goTemplate": {"type": "boolean"},
                "goTemplateOptions": {"type": "array", "items": {"type": "string"}},
                "generators": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "clusters": {
                                "type": "object",
                                "properties": {
                                    "selector": _SELECTOR,
                                    "values": {
                                        "type": "object",
                                        "additionalProperties": {"type": "string"},
                                    },
                                },
                            }
                        },
                    },
                },
                "strategy": {
                    "type": "object",
                    "required": ["type"],
                    "properties": {
                        "type": {"type": "string", "enum": ["AllAtOnce", "RollingSync"]},
                        "rollingSync": {
                            "type": "object",
                            "properties": {
                                "steps": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "required": ["matchExpressions"],
                                        "properties": {
                                            "matchExpressions": {
                                                "type": "array",
                                                "items": {
                                                    "type": "object",
                                                    "required": ["key", "operator", "values"],
                                                    "properties": {
                                                        "key": {"type": "string"},
                                                        "operator": {
                                                            "type": "string",
                                                            "enum": ["In", "NotIn"],
                                                        },
                                                        "values": {
                                                            "type": "array",
                                                            "items": {"type": "string"},
                                                        },
                                                    },
                                                },
                                            },
                                            "maxUpdate": {"x-kubernetes-int-or-string": True},
                                        },
                                    },
                                }
                            },
                        },
                    },
                },
                "template": {
                    "type": "object",
                    "required": ["metadata", "spec"],
                    "properties": {
                        "metadata": {
                            "type": "object",
                            "properties": {
                                "name": {"type": "string"},
                                "namespace": {"type": "string"},
                                "labels": {
                                    "type": "object",
                                    "additionalProperties": {"type": "string"},
                                },
                                "annotations": {
                                    "type": "object",
                                    "additionalProperties": {"type": "string"},
                                },
                            },
                        },
                        "spec": {
                            "type": "object",
                            "required": ["destination", "project"],
                            "properties": {
                                "project": {"type": "string"},
                                "source": {
                                    "type": "object",
                                    "required": ["repoURL"],
                                    "properties": {
                                        "repoURL": {"type": "string"},
                                        "targetRevision": {"type": "string"},
                                        "path": {"type": "string"},
                                    },
                                },
                                "destination": {
                                    "type": "object",
                                    "properties": {
                                        "server": {"type": "string"},
                                        "name": {"type": "string"},
                                        "namespace": {"type": "string"},
                                    },
                                },
                                "syncPolicy": {
                                    "type": "object",
                                    "properties": {
                                        "syncOptions": {
                                            "type": "array",
                                            "items": {"type": "string"},
                                        }
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


def strict_json_schema(schema: Any) -> Any:
    """The structural schema as strict JSON Schema: undeclared fields refused (as the API
    server with fieldValidation=Strict), int-or-string spelled out."""
    if isinstance(schema, list):
        return [strict_json_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict_json_schema(v) for k, v in schema.items()}
    if out.pop("x-kubernetes-int-or-string", False):
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.get("type") == "object" and "properties" in out:
        out.setdefault("additionalProperties", False)
    return out


def crd(schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "applicationsets.argoproj.io"},
        "spec": {
            "group": "argoproj.io",
            "scope": "Namespaced",
            "names": {
                "plural": "applicationsets",
                "singular": "applicationset",
                "kind": "ApplicationSet",
                "listKind": "ApplicationSetList",
                "shortNames": ["appset", "appsets"],
            },
            "versions": [
                {
                    "name": "v1alpha1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def test_waves_become_rolling_sync_steps_in_order() -> None:
    result = render_appset(FLEET, CONFIG)
    spec = result.appset["spec"]
    assert spec["generators"] == [
        {"clusters": {"selector": {"matchLabels": {FLEET_LABEL: "shop-prod"}}}}
    ]
    assert spec["strategy"] == {
        "type": "RollingSync",
        "rollingSync": {
            "steps": [
                {"matchExpressions": [{"key": WAVE_LABEL, "operator": "In", "values": ["canary"]}]},
                {
                    "matchExpressions": [{"key": WAVE_LABEL, "operator": "In", "values": ["eu"]}],
                    "maxUpdate": 2,
                },
                {"matchExpressions": [{"key": WAVE_LABEL, "operator": "In", "values": ["us"]}]},
                {"matchExpressions": [{"key": WAVE_LABEL, "operator": "In", "values": ["rest"]}]},
            ]
        },
    }
    template = spec["template"]
    assert template["metadata"]["labels"][WAVE_LABEL] == (
        '{{index .metadata.labels "shipyard.dev/wave"}}'
    )
    assert template["spec"]["source"] == {
        "repoURL": CONFIG.repo_url,
        "targetRevision": "HEAD",
        "path": "envs/prod/{{.name}}/api",
    }
    assert template["spec"]["destination"] == {"server": "{{.server}}", "namespace": "shop"}
    assert template["spec"]["project"] == "shop"
    # No automated sync: RollingSync drives the syncs.
    assert "automated" not in template["spec"]["syncPolicy"]


def test_each_cluster_gets_the_first_matching_wave_as_a_secret_label() -> None:
    assert [[c.name for c in wave] for wave in assign_waves(FLEET)] == [
        ["eu-1"],  # canary
        ["eu-2"],  # eu: eu-1 is already the canary; eu-3 is edge (DoesNotExist)
        ["us-1"],  # us
        ["eu-3", "ap-1"],  # rest
    ]
    labels = render_appset(FLEET, CONFIG).cluster_labels
    assert list(labels) == ["eu-1", "eu-2", "eu-3", "us-1", "ap-1"]
    assert labels["eu-3"] == {FLEET_LABEL: "shop-prod", WAVE_LABEL: "rest"}


def test_what_cannot_be_mirrored_is_said() -> None:
    result = render_appset(FLEET, CONFIG)
    said = "\n".join(result.not_mirrored)
    for needle in (
        "wave canary: bake_seconds 300",
        "wave us: approve",
        "wave rest: on_unreachable: skip",
        "rollback: all",
        "verify",
        "sync.driver: apply",
    ):
        assert needle in said
    text = render_appset_yaml(result)
    assert "#   - wave canary: bake_seconds 300" in text
    assert f"label secret <secret of eu-3> {FLEET_LABEL}=shop-prod {WAVE_LABEL}=rest" in text
    assert yaml.safe_load(text) == result.appset


def test_output_validates_against_the_appset_schema() -> None:
    schema = strict_json_schema(APPSET_SCHEMA)
    schema["properties"]["metadata"] = {"type": "object", "required": ["name", "namespace"]}
    appset = render_appset(FLEET, CONFIG).appset
    jsonschema.validate(appset, schema)
    # The schema can fail: an operator RollingSync does not support, an unknown field.
    bad = copy.deepcopy(appset)
    bad["spec"]["strategy"]["rollingSync"]["steps"][0]["matchExpressions"][0]["operator"] = "Exists"
    with pytest.raises(jsonschema.ValidationError, match="'Exists' is not one of"):
        jsonschema.validate(bad, schema)
    bad = copy.deepcopy(appset)
    bad["spec"]["strategy"]["rollingSync"]["steps"][1]["maxParallel"] = 2
    with pytest.raises(jsonschema.ValidationError, match="maxParallel"):
        jsonschema.validate(bad, schema)


def test_applies_to_a_cluster_with_the_appset_crd(
    sim_cluster: SimClusterHandle, sim_namespace: str
) -> None:
    sim_cluster.kubectl("apply", "-f", "-", input=json.dumps(crd(APPSET_SCHEMA)))
    try:
        result = render_appset(FLEET, CONFIG.model_copy(update={"argocd_namespace": sim_namespace}))
        appset = result.appset
        out = sim_cluster.kubectl(
            "apply", "--validate=strict", "-f", "-", input=render_appset_yaml(result)
        )
        assert "applicationset.argoproj.io/shop-prod created" in out.stdout
        got = json.loads(
            sim_cluster.kubectl(
                "get", "-n", sim_namespace, "applicationset/shop-prod", "-o", "json"
            ).stdout
        )
        # Nothing pruned: every field rendered is one the CRD declares.
        assert got["spec"] == appset["spec"]
        bad = copy.deepcopy(appset)
        bad["metadata"]["name"] = "bad"
        step = bad["spec"]["strategy"]["rollingSync"]["steps"][0]
        step["matchExpressions"][0]["operator"] = "Exists"
        out = sim_cluster.kubectl("apply", "-f", "-", input=json.dumps(bad), check=False)
        assert out.returncode == 1
        assert 'Unsupported value: "Exists": supported values: "In", "NotIn"' in out.stderr
    finally:
        sim_cluster.kubectl("delete", "crd", "applicationsets.argoproj.io", "--wait=false")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f["rollout"]["waves"].pop(), "cluster(s) in no wave: eu-3, ap-1"),
        (
            lambda f: f["rollout"]["waves"].insert(
                1, {"name": "none", "selector": {"matchLabels": {"region": "mars"}}}
            ),
            "wave 'none': its selector matches no cluster",
        ),
        (
            lambda f: f["rollout"]["waves"][0].update(name="Canary wave"),
            "wave name 'Canary wave' is not a valid Kubernetes label value",
        ),
        (lambda f: f["rollout"]["waves"][1].update(max_parallel=0), "max_parallel"),
        (lambda f: f["clusters"].append({"name": "eu-1", "kubeconfig": "k"}), "unique: eu-1"),
    ],
)
def test_bad_fleet_is_a_config_error(change: Any, message: str, tmp_path: Path) -> None:
    spec = copy.deepcopy(SPEC)
    change(spec)
    fleet_file = tmp_path / "fleet.yaml"
    fleet_file.write_text(yaml.safe_dump(spec))
    with pytest.raises(ConfigError, match=re.escape(message)):
        render_appset(load_fleet(fleet_file), CONFIG)


def test_cli_writes_the_appset_and_bad_input_is_one_line(tmp_path: Path) -> None:
    fleet_file = tmp_path / "fleet.yaml"
    fleet_file.write_text(yaml.safe_dump(SPEC))
    out_file = tmp_path / "appset.yaml"
    args = [*SHIPYARD, "fleet", "appset", "--fleet", str(fleet_file)]
    result = subprocess.run(
        [*args, "--repo-url", CONFIG.repo_url, "--project", "shop", "-o", str(out_file)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(out_file.read_text()) == render_appset(FLEET, CONFIG).appset
    # No --repo-url outside a checkout with origin; a wave matching nothing: exit 2, one line.
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "shipyard: --repo-url is required (the fleet file is in no checkout with origin)"
    ]
    bad = copy.deepcopy(SPEC)
    bad["rollout"]["waves"].insert(0, {"name": "x", "selector": {"matchLabels": {"tier": "no"}}})
    fleet_file.write_text(yaml.safe_dump(bad))
    result = subprocess.run([*args, "--repo-url", "u"], capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "shipyard: wave 'x': its selector matches no cluster"
    ]
    assert "Traceback" not in result.stderr
