"""Render a fleet as the equivalent Argo CD ApplicationSet (Progressive Syncs).

For Argo CD users who want the fleet's waves driven by Argo CD itself rather than by
``shipyard fleet rollout``. Pure: a fleet file's content in, an ApplicationSet (plain
JSON) and the labels each Argo CD cluster secret must carry out; no I/O, no Prefect.

How the fleet maps onto ``argoproj.io/v1alpha1`` ApplicationSet:

- **Inventory** -> one ``clusters`` generator selecting the cluster secrets labelled
  ``shipyard.dev/fleet: <fleet name>``. Argo CD's generator only sees the secrets'
  labels, so each secret must carry that label (and the wave label below):
  :attr:`AppSetResult.cluster_labels` says which, cluster by cluster.
- **Waves** -> ``strategy: {type: RollingSync, rollingSync: {steps}}``, one step per
  wave, in order, selecting Applications by ``matchExpressions`` on the
  ``shipyard.dev/wave`` label, which the template copies from the cluster secret. The
  wave of each cluster is computed here exactly as the rollout computes it (the first
  wave whose selector matches; a wave without selector takes the rest), because a
  RollingSync step cannot express "not in an earlier step".
- ``max_parallel`` -> the step's ``maxUpdate``; no ``max_parallel`` -> no ``maxUpdate``
  (Argo CD's default: the whole step at once).
- **path / namespace** -> the template's ``source.path`` (``{cluster}`` becomes the
  cluster's name) and ``destination.namespace``; destination server from the generator.

What cannot be mirrored (Argo CD has no equivalent; listed in the rendered file's header
and in :attr:`AppSetResult.not_mirrored`): ``bake_seconds`` (a step moves on as soon as
its Applications are Healthy), ``approve`` (no pause between steps), ``on_unreachable:
skip`` (an unreachable cluster stalls its step), ``rollback`` (no rollback of a step),
``verify`` (Argo CD's health checks replace Shipyard's digest-aware verify), and the
sync driver (an ApplicationSet always syncs with Argo CD).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shipyard.core.errors import ConfigError

__all__ = [
    "FLEET_LABEL",
    "WAVE_LABEL",
    "AppSetConfig",
    "AppSetResult",
    "assign_waves",
    "render_appset",
    "render_appset_yaml",
    "selector_matches",
]

JSON = dict[str, Any]

FLEET_LABEL = "shipyard.dev/fleet"
WAVE_LABEL = "shipyard.dev/wave"
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


class AppSetConfig(BaseModel):
    """How to render: what the fleet file cannot say (Argo CD specifics)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    repo_url: str = Field(min_length=1, description="The GitOps repo's URL as Argo CD knows it.")
    project: str = Field(default="default", min_length=1, description="The Argo CD project.")
    target_revision: str = Field(
        default="HEAD", min_length=1, description="The branch, tag or commit Argo CD tracks."
    )
    argocd_namespace: str = Field(
        default="argocd", min_length=1, description="Namespace of Argo CD (and the AppSet)."
    )


class AppSetResult(BaseModel):
    """The ApplicationSet, the labels each cluster secret needs, what is not mirrored."""

    appset: JSON
    cluster_labels: dict[str, dict[str, str]]
    not_mirrored: list[str]


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Whether a Kubernetes LabelSelector (``matchLabels``, ``matchExpressions``) matches.

    An empty selector matches everything, as in Kubernetes.
    """
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != str(value):
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op = expr.get("key"), expr.get("operator")
        values = [str(v) for v in expr.get("values") or []]
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
        if op not in {"In", "NotIn", "Exists", "DoesNotExist"}:
            raise ConfigError(f"selector operator {op!r} is not In, NotIn, Exists or DoesNotExist")
    return True


def assign_waves(fleet: Mapping[str, Any]) -> dict[str, list[str]]:
    """Wave name -> its clusters, in file order: each cluster in the first wave matching it.

    A wave without selector takes every cluster not in an earlier wave. A wave matching
    no cluster and a cluster in no wave are bad input (ConfigError), as for the rollout.
    """
    clusters = _clusters(fleet)
    waves = _waves(fleet)
    placed: set[str] = set()
    result: dict[str, list[str]] = {}
    for wave in waves:
        name = str(wave["name"])
        selector = wave.get("selector")
        members = [
            c["name"]
            for c in clusters
            if c["name"] not in placed
            and (selector is None or selector_matches(selector, c.get("labels") or {}))
        ]
        if not members:
            raise ConfigError(f"wave {name!r} matches no cluster (not already in an earlier wave)")
        placed.update(members)
        result[name] = members
    if missing := [c["name"] for c in clusters if c["name"] not in placed]:
        raise ConfigError(
            f"cluster(s) {', '.join(missing)} are in no wave: add a last wave without selector"
        )
    return result


def render_appset(fleet: Mapping[str, Any], config: AppSetConfig) -> AppSetResult:
    """The ApplicationSet equivalent to ``fleet`` (a parsed fleet file)."""
    name = _fleet_name(fleet)
    rollout = _rollout(fleet)
    membership = assign_waves(fleet)
    waves = _waves(fleet)
    steps: list[JSON] = []
    for wave in waves:
        step: JSON = {
            "matchExpressions": [
                {"key": WAVE_LABEL, "operator": "In", "values": [str(wave["name"])]}
            ]
        }
        if wave.get("max_parallel") is not None:
            step["maxUpdate"] = int(wave["max_parallel"])
        steps.append(step)
    path = str(rollout["path"]).replace("{cluster}", "{{.name}}")
    appset: JSON = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "ApplicationSet",
        "metadata": {"name": name, "namespace": config.argocd_namespace},
        "spec": {
            "goTemplate": True,
            "goTemplateOptions": ["missingkey=error"],
            "generators": [{"clusters": {"selector": {"matchLabels": {FLEET_LABEL: name}}}}],
            "strategy": {"type": "RollingSync", "rollingSync": {"steps": steps}},
            "template": {
                "metadata": {
                    "name": f"{name}-{{{{.name}}}}",
                    "labels": {
                        FLEET_LABEL: name,
                        WAVE_LABEL: f'{{{{index .metadata.labels "{WAVE_LABEL}"}}}}',
                    },
                },
                "spec": {
                    "project": config.project,
                    "source": {
                        "repoURL": config.repo_url,
                        "targetRevision": config.target_revision,
                        "path": path,
                    },
                    "destination": {
                        "server": "{{.server}}",
                        "namespace": str(rollout["namespace"]),
                    },
                    "syncPolicy": {"syncOptions": ["CreateNamespace=true"]},
                },
            },
        },
    }
    labels = {
        cluster: {FLEET_LABEL: name, WAVE_LABEL: wave}
        for wave, members in membership.items()
        for cluster in members
    }
    ordered = {c["name"]: labels[c["name"]] for c in _clusters(fleet)}
    return AppSetResult(
        appset=appset, cluster_labels=ordered, not_mirrored=_not_mirrored(rollout, waves)
    )


def render_appset_yaml(result: AppSetResult) -> str:
    """The ApplicationSet as YAML, headed by comments: the labels to put on each Argo CD
    cluster secret and what Argo CD cannot mirror."""
    namespace = result.appset["metadata"]["namespace"]
    lines = [
        "# Rendered by `shipyard fleet appset` from the fleet file.",
        "# Label each Argo CD cluster secret so the clusters generator and the RollingSync",
        "# steps select it (the wave is computed by Shipyard: first matching wave):",
    ]
    for cluster, labels in result.cluster_labels.items():
        pairs = " ".join(f"{k}={v}" for k, v in labels.items())
        lines.append(f"#   kubectl -n {namespace} label secret <secret of {cluster}> {pairs}")
    if result.not_mirrored:
        lines.append("# Not mirrored (Argo CD Progressive Syncs has no equivalent):")
        lines += [f"#   - {item}" for item in result.not_mirrored]
    body = yaml.safe_dump(result.appset, sort_keys=False, default_flow_style=False)
    return "\n".join(lines) + "\n" + body


def _not_mirrored(rollout: Mapping[str, Any], waves: Sequence[Mapping[str, Any]]) -> list[str]:
    items: list[str] = []
    for wave in waves:
        wave_name = wave["name"]
        if wave.get("bake_seconds"):
            items.append(
                f"wave {wave_name}: bake_seconds {wave['bake_seconds']} (a step moves on "
                "as soon as its Applications are Healthy)"
            )
        if wave.get("approve"):
            items.append(f"wave {wave_name}: approve (RollingSync cannot pause between steps)")
        if wave.get("on_unreachable") == "skip":
            items.append(
                f"wave {wave_name}: on_unreachable: skip (an unreachable cluster stalls the step)"
            )
    if rollout.get("rollback"):
        items.append(f"rollback: {rollout['rollback']} (Argo CD does not roll a step back)")
    if rollout.get("verify"):
        items.append("verify (Argo CD's health assessment replaces the digest-aware verify)")
    driver = (rollout.get("sync") or {}).get("driver")
    if driver and driver != "argocd":
        items.append(f"sync.driver: {driver} (an ApplicationSet always syncs with Argo CD)")
    return items


def _fleet_name(fleet: Mapping[str, Any]) -> str:
    name = (fleet.get("metadata") or {}).get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError("the fleet file has no metadata.name")
    if len(name) > 63 or not _LABEL_VALUE.match(name):
        raise ConfigError(f"fleet name {name!r} is not a valid Kubernetes label value")
    return name


def _rollout(fleet: Mapping[str, Any]) -> Mapping[str, Any]:
    rollout = fleet.get("rollout")
    if not isinstance(rollout, Mapping):
        raise ConfigError("the fleet file has no rollout section")
    for key in ("path", "namespace"):
        if not rollout.get(key):
            raise ConfigError(f"the fleet file's rollout has no {key}")
    return rollout


class _Wave(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = Field(min_length=1)
    selector: dict[str, Any] | None = None
    max_parallel: int | None = Field(default=None, ge=1)


class _Cluster(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = Field(min_length=1)
    labels: dict[str, str] = Field(default_factory=dict)


def _waves(fleet: Mapping[str, Any]) -> list[JSON]:
    raw = _rollout(fleet).get("waves")
    if not isinstance(raw, list) or not raw:
        raise ConfigError("the fleet file's rollout has no waves")
    waves = [_checked(_Wave, item, "wave") for item in raw]
    names = [w["name"] for w in waves]
    if dupes := sorted({n for n in names if names.count(n) > 1}):
        raise ConfigError(f"wave name(s) {', '.join(dupes)} appear more than once")
    for name in names:
        if len(name) > 63 or not _LABEL_VALUE.match(name):
            raise ConfigError(f"wave name {name!r} is not a valid Kubernetes label value")
    return waves


def _clusters(fleet: Mapping[str, Any]) -> list[JSON]:
    raw = fleet.get("clusters")
    if not isinstance(raw, list) or not raw:
        raise ConfigError("the fleet file has no clusters")
    clusters = [_checked(_Cluster, item, "cluster") for item in raw]
    names = [c["name"] for c in clusters]
    if dupes := sorted({n for n in names if names.count(n) > 1}):
        raise ConfigError(f"cluster name(s) {', '.join(dupes)} appear more than once")
    return clusters


def _checked(model: type[BaseModel], item: object, what: str) -> JSON:
    try:
        return model.model_validate(item).model_dump(exclude_none=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"invalid {what} {item!r}: {where}: {first['msg']}") from None
