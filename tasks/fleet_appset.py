"""Render a fleet as the equivalent Argo CD ApplicationSet (Progressive Syncs).

For Argo CD users who want the fleet's waves driven by Argo CD itself rather than by
``shipyard fleet rollout``. Pure: a validated :class:`~tasks.fleet.config.Fleet` in, an
ApplicationSet (plain JSON) and the labels each Argo CD cluster secret must carry out;
no I/O, no Prefect.

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
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from shipyard.core.errors import ConfigError
from tasks.fleet.config import Fleet, assign_waves

__all__ = [
    "FLEET_LABEL",
    "WAVE_LABEL",
    "AppSetConfig",
    "AppSetResult",
    "render_appset",
    "render_appset_yaml",
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


def render_appset(fleet: Fleet, config: AppSetConfig) -> AppSetResult:
    """The ApplicationSet equivalent to ``fleet``.

    ConfigError when the fleet's waves do not place every cluster (as for the rollout)
    or a fleet or wave name cannot be a label value (Argo CD selects by label).
    """
    name = fleet.metadata.name
    for what, value in [("fleet", name), *(("wave", w.name) for w in fleet.rollout.waves)]:
        if len(value) > 63 or not _LABEL_VALUE.match(value):
            raise ConfigError(f"{what} name {value!r} is not a valid Kubernetes label value")
    membership = assign_waves(fleet)
    steps: list[JSON] = []
    for wave in fleet.rollout.waves:
        step: JSON = {
            "matchExpressions": [{"key": WAVE_LABEL, "operator": "In", "values": [wave.name]}]
        }
        if wave.max_parallel is not None:
            step["maxUpdate"] = wave.max_parallel
        steps.append(step)
    rollout = fleet.rollout
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
                        "path": rollout.path.replace("{cluster}", "{{.name}}"),
                    },
                    "destination": {"server": "{{.server}}", "namespace": rollout.namespace},
                    "syncPolicy": {"syncOptions": ["CreateNamespace=true"]},
                },
            },
        },
    }
    wave_of = {
        c.name: wave.name
        for wave, members in zip(fleet.rollout.waves, membership, strict=True)
        for c in members
    }
    labels = {c.name: {FLEET_LABEL: name, WAVE_LABEL: wave_of[c.name]} for c in fleet.clusters}
    return AppSetResult(appset=appset, cluster_labels=labels, not_mirrored=_not_mirrored(fleet))


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


def _not_mirrored(fleet: Fleet) -> list[str]:
    items: list[str] = []
    for wave in fleet.rollout.waves:
        if wave.bake_seconds:
            items.append(
                f"wave {wave.name}: bake_seconds {wave.bake_seconds:g} (a step moves on as "
                "soon as its Applications are Healthy)"
            )
        if wave.approve:
            items.append(f"wave {wave.name}: approve (RollingSync cannot pause between steps)")
        if wave.on_unreachable == "skip":
            items.append(
                f"wave {wave.name}: on_unreachable: skip (an unreachable cluster stalls the step)"
            )
    items.append(
        f"rollback: {fleet.rollback} (Argo CD does not roll a failed step back; the "
        "remaining steps just do not start)"
    )
    items.append("verify (Argo CD's health assessment replaces the digest-aware verify)")
    driver = fleet.rollout.sync.driver
    if driver != "argocd":
        items.append(f"sync.driver: {driver} (an ApplicationSet always syncs with Argo CD)")
    return items
