"""The app catalog: which apps exist, where their source and images live, and how each
environment is laid out in the GitOps repo, synced and verified.

The catalog is a YAML file kept in the GitOps repo (default ``shipyard-catalog.yaml`` at
its root) so that a change of delivery policy is itself reviewed and versioned. Every
flow reads apps from it; a malformed catalog is a :class:`ConfigError` naming the entry.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from shipyard.core.errors import ConfigError
from shipyard.core.fleet import LabelSelector, Wave

CATALOG_FILE = "shipyard-catalog.yaml"
# A lower-case RFC 1123 label (app, environment and namespace names); callers add the
# 63-character limit where Kubernetes imposes it.
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceSpec(_Model):
    """Where the app's source is and how to build it."""

    repo: str = Field(description="Git URL of the application source repository.")
    dockerfile: str = Field("Dockerfile", description="Dockerfile path inside the repo.")
    context: str = Field(".", description="Build context directory inside the repo.")
    target: str | None = Field(None, description="Multi-stage build target, if any.")
    build_args: dict[str, str] = Field(default_factory=dict, description="Docker build args.")


class SmokeCheck(_Model):
    """An HTTP request that must answer as expected after a rollout."""

    url: str = Field(description="URL to request (GET).")
    expect_status: int = Field(200, description="Expected HTTP status.")
    expect_body: str | None = Field(None, description="Substring the body must contain.")
    attempts: int = Field(5, ge=1, le=100, description="Attempts before failing.")


class MetricGate(_Model):
    """A Prometheus query evaluated like an Argo Rollouts analysis."""

    prometheus_url: str = Field(description="Base URL of the Prometheus HTTP API.")
    query: str = Field(description="PromQL returning one scalar or one-sample vector.")
    max_value: float | None = Field(None, description="Fail a measurement above this.")
    min_value: float | None = Field(None, description="Fail a measurement below this.")
    interval_seconds: float = Field(10.0, gt=0, description="Seconds between measurements.")
    count: int = Field(3, ge=1, description="Measurements to take.")
    failure_limit: int = Field(0, ge=0, description="Failed measurements tolerated.")


class AnomalyMetric(_Model):
    """One metric the anomaly gate compares between the new version and the baseline."""

    name: str = Field(description="A short name for reports (error-ratio, latency-p90).")
    query: str = Field(
        description="PromQL evaluated as a range query once per version; {{revision}} is "
        "replaced by the version measured (the new one, then the baseline)."
    )
    higher_is_worse: bool = Field(True, description="False when a drop is the regression.")


class AnomalyGate(_Model):
    """New version vs baseline, judged by a one-sided Mann-Whitney U test (tasks.anomaly_gate)."""

    prometheus_url: str = Field(description="Base URL of the Prometheus HTTP API.")
    metrics: list[AnomalyMetric] = Field(min_length=1, description="Metrics to compare.")
    revision: str = Field(
        "{{digest}}", description="Label value of the new version ({{digest}}: the delivered one)."
    )
    baseline: str = Field(description="Label value of the baseline (old) version.")
    window_seconds: float = Field(300.0, gt=0, description="Look-back of the range queries.")
    step_seconds: float = Field(15.0, gt=0, description="Range query resolution.")
    delay_seconds: float = Field(0.0, ge=0, description="Wait this long before measuring.")
    alpha: float = Field(0.05, gt=0, lt=1, description="Significance level (one-sided).")
    min_samples: int = Field(10, ge=3, description="Samples needed per version to judge.")
    allowed_increase: float = Field(
        0.0, ge=0, description="Relative median change tolerated even when significant."
    )
    on_no_data: Literal["not-checked", "fail"] = Field(
        "not-checked", description="Too few samples: report not checked, or fail."
    )


class VerifySpec(_Model):
    """What "healthy" means for an environment."""

    workloads: list[str] = Field(
        default_factory=list, description="Workloads to watch, as KIND/NAME (deployment/cart)."
    )
    timeout_seconds: float = Field(300.0, gt=0, description="Deadline for the rollout.")
    smoke: list[SmokeCheck] = Field(default_factory=list, description="HTTP smoke checks.")
    metrics: list[MetricGate] = Field(default_factory=list, description="Metric gates.")
    anomaly: AnomalyGate | None = Field(None, description="New-vs-baseline anomaly gate.")

    @field_validator("workloads")
    @classmethod
    def _kind_name(cls, value: list[str]) -> list[str]:
        for item in value:
            kind, _, name = item.partition("/")
            if kind.lower() not in {"deployment", "statefulset", "daemonset"} or not name:
                raise ValueError(
                    f"workload {item!r} must be deployment/NAME, statefulset/NAME or daemonset/NAME"
                )
        return value


class SyncSpec(_Model):
    """How the cluster is made to converge to a GitOps commit."""

    driver: Literal["apply", "argocd", "flux"] = Field(
        "apply", description="apply: server-side apply; argocd or flux: ask the operator."
    )
    application: str | None = Field(None, description="Argo CD Application name (argocd).")
    application_namespace: str = Field("argocd", description="Namespace of the Application.")
    kustomization: str | None = Field(None, description="Flux Kustomization name (flux).")
    source: str | None = Field(None, description="Flux GitRepository name (flux).")
    flux_namespace: str = Field("flux-system", description="Namespace of the Flux objects.")
    prune: bool = Field(
        True, description="apply: delete what this app applied before but no longer declares."
    )

    @model_validator(mode="after")
    def _driver_fields(self) -> SyncSpec:
        if self.driver == "argocd" and not self.application:
            raise ValueError("driver argocd needs 'application'")
        if self.driver == "flux" and not self.kustomization:
            raise ValueError("driver flux needs 'kustomization'")
        return self


class FleetTarget(_Model):
    """An environment spread over many clusters: which ones, and in which waves.

    ``selector`` picks KubernetesCluster blocks by their ``labels``; each selected
    cluster goes into the first wave whose own selector matches it (a wave without a
    selector takes the rest). Same wave schema as a fleet file (:mod:`shipyard.core.fleet`).
    """

    selector: LabelSelector = Field(description="Which cluster blocks (by their labels).")
    waves: list[Wave] = Field(min_length=1, description="In order; the first is the canary.")
    rollback: Literal["wave", "all"] = Field(
        "wave", description="On a halt, roll back the halted wave only, or every wave so far."
    )

    @field_validator("selector")
    @classmethod
    def _not_everything(cls, value: LabelSelector) -> LabelSelector:
        if value.empty:
            raise ValueError("fleet.selector needs matchLabels or matchExpressions")
        return value

    @model_validator(mode="after")
    def _unique_waves(self) -> FleetTarget:
        names = [w.name for w in self.waves]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"wave names must be unique: {', '.join(dupes)}")
        return self


class Environment(_Model):
    """One stage of an app's life (dev, staging, prod).

    It runs on one cluster (``cluster``, a KubernetesCluster block name) or on a fleet
    (``fleet``: cluster blocks selected by label, rolled out in waves), never both.
    """

    name: str = Field(description="Environment name, lower-case DNS label.")
    path: str = Field(description="Directory in the GitOps repo holding this environment.")
    cluster: str = Field("default", description="Name of the cluster block to deploy to.")
    fleet: FleetTarget | None = Field(
        None, description="Deploy to a fleet of cluster blocks in waves (instead of 'cluster')."
    )
    namespace: str = Field(description="Kubernetes namespace the app runs in.")
    branch: str = Field("main", description="GitOps branch written for this environment.")
    sync: SyncSpec = Field(default_factory=lambda: SyncSpec(), description="Sync settings.")
    verify: VerifySpec = Field(default_factory=lambda: VerifySpec(), description="Verification.")
    protected: bool = Field(False, description="Promotion here waits for a person's approval.")
    pull_request: bool = Field(False, description="Write through a pull request, not a push.")

    @field_validator("name", "namespace")
    @classmethod
    def _dns_label(cls, value: str) -> str:
        if not DNS_LABEL.match(value) or len(value) > 63:
            raise ValueError(f"{value!r} is not a lower-case DNS label")
        return value

    @field_validator("path")
    @classmethod
    def _inside_repo(cls, value: str) -> str:
        p = PurePosixPath(value)
        if p.is_absolute() or ".." in p.parts:
            raise ValueError(f"path {value!r} must be relative and stay inside the repo")
        return value

    @model_validator(mode="after")
    def _one_target(self) -> Environment:
        if self.fleet is not None and "cluster" in self.model_fields_set:
            raise ValueError(
                f"environment {self.name!r} sets both 'cluster' and 'fleet': "
                "target one cluster block or a fleet, not both"
            )
        if self.fleet is not None and not self.verify.workloads:
            raise ValueError(
                f"environment {self.name!r} targets a fleet: verify.workloads needs at least "
                "one KIND/NAME (each cluster is verified)"
            )
        return self


class App(_Model):
    """An application Shipyard delivers."""

    name: str = Field(description="App name, lower-case DNS label, unique in the catalog.")
    image: str = Field(description="Image repository without tag, e.g. registry.example/shop/cart.")
    source: SourceSpec | None = Field(None, description="How to build; omit for promote-only apps.")
    environments: list[Environment] = Field(description="Environments in promotion order.")

    @field_validator("name")
    @classmethod
    def _dns(cls, value: str) -> str:
        if not DNS_LABEL.match(value):
            raise ValueError(f"{value!r} is not a lower-case DNS label")
        return value

    @field_validator("image")
    @classmethod
    def _no_tag(cls, value: str) -> str:
        last = value.rsplit("/", 1)[-1]
        if "@" in value or ":" in last:
            raise ValueError(f"image {value!r} must be a repository without tag or digest")
        return value

    @model_validator(mode="after")
    def _unique_envs(self) -> App:
        names = [e.name for e in self.environments]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate environments {dupes}")
        if not names:
            raise ValueError("needs at least one environment")
        return self

    def environment(self, name: str) -> Environment:
        """The environment called ``name``; ConfigError listing the known ones otherwise."""
        for env in self.environments:
            if env.name == name:
                return env
        known = ", ".join(e.name for e in self.environments)
        raise ConfigError(f"app {self.name!r} has no environment {name!r} (known: {known})")

    def next_environment(self, name: str) -> Environment | None:
        """The environment after ``name`` in promotion order, or None if it is the last."""
        envs = self.environments
        for i, env in enumerate(envs):
            if env.name == name:
                return envs[i + 1] if i + 1 < len(envs) else None
        self.environment(name)  # raises with the known names
        return None


class Catalog(_Model):
    """The whole catalog file."""

    apiVersion: Literal["shipyard.dev/v1"] = Field(
        "shipyard.dev/v1", description="Schema version of the catalog."
    )
    apps: list[App] = Field(default_factory=list, description="Apps Shipyard delivers.")

    @model_validator(mode="after")
    def _unique_apps(self) -> Catalog:
        names = [a.name for a in self.apps]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate apps {dupes}")
        return self

    def app(self, name: str) -> App:
        """The app called ``name``; ConfigError listing the known ones otherwise."""
        for app in self.apps:
            if app.name == name:
                return app
        known = ", ".join(a.name for a in self.apps) or "none"
        raise ConfigError(f"catalog has no app {name!r} (known: {known})")

    def app_for_image(self, repository: str) -> App | None:
        """The app whose image repository is ``repository`` (with or without registry host)."""
        for app in self.apps:
            if app.image == repository or app.image.split("/", 1)[-1] == repository:
                return app
        return None


def parse_catalog(text: str, source: str = CATALOG_FILE) -> Catalog:
    """Parse catalog YAML; ConfigError naming the file, line or entry on any problem."""
    try:
        data = YAML(typ="safe").load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise ConfigError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the catalog must be a mapping with 'apps'")
    try:
        return Catalog.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = _locate(data, first["loc"])
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ConfigError(f"{source}: {where}: {first['msg']}{more}") from None


def load_catalog(path: str | Path) -> Catalog:
    """Read and parse the catalog at ``path`` (a file, or a repo dir holding CATALOG_FILE)."""
    p = Path(path)
    if p.is_dir():
        p = p / CATALOG_FILE
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"no app catalog at {p} (create {CATALOG_FILE}; see README)") from None
    return parse_catalog(text, str(p))


def _locate(data: object, loc: tuple[int | str, ...]) -> str:
    """Render a pydantic error location, naming apps and environments by name."""
    parts: list[str] = []
    node: object = data
    for key in loc:
        if isinstance(key, int) and isinstance(node, list) and key < len(node):
            node = node[key]
            name = node.get("name") if isinstance(node, dict) else None
            parts[-1] = f"{parts[-1]}[{name!r}]" if name else f"{parts[-1]}[{key}]"
        else:
            parts.append(str(key))
            node = node.get(key) if isinstance(node, dict) else None
    return ".".join(parts) or "top level"
