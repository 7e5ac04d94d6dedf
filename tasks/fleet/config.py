"""The fleet file, label selectors, and the plan of a rollout (which cluster in which wave).

Everything here is checked before anything is written to a cluster: a fleet file that
does not parse or validate, a wave that gets no cluster, a cluster that falls in no
wave, a revision unknown to the repository, a path missing at that revision and a
kubeconfig that is not a file are all :class:`ConfigError` (exit 2 at the CLI).
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shipyard.core.catalog import Environment, SyncSpec, VerifySpec
from shipyard.core.errors import ConfigError
from shipyard.core.fleet import LabelSelector, Requirement, Wave, selector_matches

__all__ = [
    "Fleet",
    "FleetCluster",
    "FleetPlan",
    "FleetSyncSpec",
    "HubSpec",
    "LabelSelector",
    "PlannedWave",
    "Requirement",
    "Wave",
    "assign_waves",
    "load_fleet",
    "plan_environment",
    "plan_rollout",
    "selector_matches",
]

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FleetCluster(_Model):
    """One cluster of the inventory."""

    name: str = Field(description="Cluster name (DNS label style), unique in the fleet.")
    kubeconfig: str = Field(description="Path to its kubeconfig file.")
    context: str | None = Field(None, description="kubeconfig context; default the current.")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels waves select on.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"cluster name {value!r} must be lower-case letters, digits, - or .")
        return value


class HubSpec(_Model):
    """Argo CD hub mode: the cluster whose Argo CD holds one Application per fleet cluster."""

    kubeconfig: str = Field(description="Path to the hub's kubeconfig (relative: to the file).")
    context: str | None = Field(None, description="kubeconfig context; default the current.")
    namespace: str | None = Field(
        None, description="Namespace of the Applications; default sync.application_namespace."
    )


class FleetSyncSpec(SyncSpec):
    """A fleet's sync: as `shipyard sync`, plus ``hub`` for Argo CD hub mode.

    With ``hub``, ``application`` is a pattern naming each cluster's Application in the
    hub: ``{cluster}`` (required) and ``{app}`` are filled in, e.g. ``{app}-{cluster}``.
    """

    hub: HubSpec | None = Field(None, description="argocd: the hub holding the Applications.")

    @model_validator(mode="after")
    def _hub(self) -> FleetSyncSpec:
        if self.hub is not None:
            if self.driver != "argocd":
                raise ValueError("sync.hub needs driver argocd")
            if "{cluster}" not in (self.application or ""):
                raise ValueError(
                    "with a hub, sync.application must contain {cluster} (one Application "
                    "per cluster), e.g. '{app}-{cluster}'"
                )
        return self


class RolloutSpec(_Model):
    """What every cluster gets and how it is checked."""

    path: str = Field(description="Path in the GitOps repo; {cluster} is the cluster's name.")
    namespace: str = Field(description="Namespace everything goes to (must exist).")
    app: str | None = Field(
        None, description="Ownership label value; default the path's last part."
    )
    sync: FleetSyncSpec = Field(default_factory=FleetSyncSpec, description="As `shipyard sync`.")
    verify: VerifySpec = Field(description="As the catalog's verify (workloads, timeout).")
    waves: list[Wave] = Field(min_length=1, description="In order.")

    @field_validator("sync", mode="before")
    @classmethod
    def _fleet_sync(cls, value: object) -> object:
        """A catalog SyncSpec (no hub) is accepted as it is."""
        if isinstance(value, SyncSpec) and not isinstance(value, FleetSyncSpec):
            return value.model_dump()
        return value

    @field_validator("verify")
    @classmethod
    def _workloads(cls, value: VerifySpec) -> VerifySpec:
        if not value.workloads:
            raise ValueError("verify.workloads needs at least one KIND/NAME")
        return value


class FleetMeta(_Model):
    """metadata of the fleet file."""

    name: str = Field(description="Fleet name (names the per-cluster record).")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"fleet name {value!r} must be lower-case letters, digits, - or .")
        return value


class Fleet(_Model):
    """A fleet file (``apiVersion: shipyard.dev/v1``, ``kind: Fleet``)."""

    apiVersion: Literal["shipyard.dev/v1"] = Field(description="Format version.")
    kind: Literal["Fleet"] = Field(description="Always Fleet.")
    metadata: FleetMeta
    clusters: list[FleetCluster] = Field(min_length=1, description="The inventory.")
    rollout: RolloutSpec
    rollback: Literal["wave", "all"] = Field(
        "wave", description="On a halt, roll back the halted wave only, or every wave so far."
    )

    @model_validator(mode="after")
    def _unique(self) -> Fleet:
        for what, names in (
            ("cluster", [c.name for c in self.clusters]),
            ("wave", [w.name for w in self.rollout.waves]),
        ):
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"{what} names must be unique: {', '.join(dupes)}")
        return self


def load_fleet(path: str | Path) -> Fleet:
    """Read and validate a fleet file; ConfigError naming the file and the first problem."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"fleet file {file} does not exist")
    try:
        data = yaml.safe_load(file.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        text = " ".join(str(exc).split())
        raise ConfigError(f"fleet file {file} is not valid YAML: {text}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"fleet file {file} must be a mapping (apiVersion, kind, ...)")
    try:
        return Fleet.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        msg = str(first.get("msg", "")).removeprefix("Value error, ")
        raise ConfigError(f"fleet file {file}: {where + ': ' if where else ''}{msg}") from None


def assign_waves(fleet: Fleet) -> list[list[FleetCluster]]:
    """The clusters of each wave, in order: each cluster in the first wave that selects it.

    ConfigError for a cluster that no wave selects and for a wave left with no cluster.
    """
    taken: set[str] = set()
    waves: list[list[FleetCluster]] = []
    for wave in fleet.rollout.waves:
        members = [
            c
            for c in fleet.clusters
            if c.name not in taken and selector_matches(wave.selector, c.labels)
        ]
        if not members:
            raise ConfigError(
                f"wave {wave.name!r} matches no cluster (none left after the earlier waves)"
                if any(selector_matches(wave.selector, c.labels) for c in fleet.clusters)
                else f"wave {wave.name!r}: its selector matches no cluster"
            )
        taken.update(c.name for c in members)
        waves.append(members)
    left = [c.name for c in fleet.clusters if c.name not in taken]
    if left:
        raise ConfigError(f"cluster(s) in no wave: {', '.join(left)} (add a wave without selector)")
    return waves


class PlannedWave(_Model):
    """A wave with its clusters resolved."""

    name: str
    clusters: list[str]
    bake_seconds: float = 0.0
    max_parallel: int | None = None
    on_unreachable: Literal["fail", "skip"] = "fail"
    approve: bool = False


class FleetPlan(_Model):
    """Everything a rollout needs, validated: the fleet, the commit, the waves."""

    fleet: Fleet
    repo_dir: str = Field(
        description="GitOps working tree (only committed content counts), or its clone URL."
    )
    branch: str = Field("main", description="Branch fetched when repo_dir is a URL.")
    revision: str = Field(description="REV as the user gave it.")
    sha: str = Field(description="The commit REV names.")
    waves: list[PlannedWave]

    def cluster(self, name: str) -> FleetCluster:
        """The inventory entry of ``name``."""
        return next(c for c in self.fleet.clusters if c.name == name)

    def path_for(self, name: str) -> str:
        """The GitOps path cluster ``name`` syncs."""
        return self.fleet.rollout.path.replace("{cluster}", name)

    def app_for(self, name: str) -> str:
        """The ownership label value of what is applied to ``name``."""
        spec = self.fleet.rollout
        return spec.app or PurePosixPath(self.path_for(name).rstrip("/")).name or "app"

    @property
    def record_name(self) -> str:
        """The ConfigMap (per cluster, in the namespace) that records the rollout state."""
        return f"shipyard-fleet-{self.fleet.metadata.name}"


def resolve_revision(repo_dir: str, revision: str) -> tuple[str, list[str]]:
    """(sha, paths at it) helper: the commit ``revision`` names in ``repo_dir``."""
    from git import Repo
    from git.exc import BadName, InvalidGitRepositoryError, NoSuchPathError

    try:
        repo = Repo(repo_dir, search_parent_directories=False)
    except (InvalidGitRepositoryError, NoSuchPathError):
        raise ConfigError(f"--repo-dir {repo_dir} is not a git repository") from None
    try:
        try:
            commit = repo.commit(revision)
        except (BadName, ValueError):
            raise ConfigError(f"revision {revision!r} does not exist in {repo_dir}") from None
        return str(commit.hexsha), [str(i.path) for i in commit.tree.traverse()]  # type: ignore[union-attr]
    finally:
        repo.close()


def _resolve_hub(fleet: Fleet, base: Path) -> Fleet:
    """The fleet with the hub's kubeconfig made absolute; ConfigError when not a file."""
    sync = fleet.rollout.sync
    if sync.hub is None:
        return fleet
    kc = Path(sync.hub.kubeconfig).expanduser()
    kc = kc if kc.is_absolute() else base / kc
    if not kc.is_file():
        raise ConfigError(f"sync.hub: kubeconfig {sync.hub.kubeconfig} is not a file")
    hub = sync.hub.model_copy(update={"kubeconfig": str(kc)})
    rollout = fleet.rollout.model_copy(update={"sync": sync.model_copy(update={"hub": hub})})
    return fleet.model_copy(update={"rollout": rollout})


def plan_rollout(fleet_file: str | Path, repo_dir: str, revision: str) -> FleetPlan:
    """Load and check everything (see module docstring); the plan of the rollout."""
    fleet = load_fleet(fleet_file)
    if not revision.strip():
        raise ConfigError("--revision is required")
    waves = assign_waves(fleet)
    base = Path(fleet_file).resolve().parent
    clusters = []
    for c in fleet.clusters:
        kc = Path(c.kubeconfig).expanduser()
        kc = kc if kc.is_absolute() else base / kc
        if not kc.is_file():
            raise ConfigError(f"cluster {c.name!r}: kubeconfig {c.kubeconfig} is not a file")
        clusters.append(c.model_copy(update={"kubeconfig": str(kc)}))
    fleet = fleet.model_copy(update={"clusters": clusters})
    fleet = _resolve_hub(fleet, base)
    sha, paths = resolve_revision(repo_dir, revision)
    known = set(paths)
    for c in fleet.clusters:
        path = fleet.rollout.path.replace("{cluster}", c.name).strip("/")
        if path not in known:
            raise ConfigError(f"path {path!r} does not exist at {sha[:12]} (cluster {c.name!r})")
    return FleetPlan(
        fleet=fleet,
        repo_dir=str(Path(repo_dir).resolve()),
        revision=revision,
        sha=sha,
        waves=_planned(fleet, waves),
    )


def _planned(fleet: Fleet, waves: list[list[FleetCluster]]) -> list[PlannedWave]:
    return [
        PlannedWave(
            name=w.name,
            clusters=[c.name for c in members],
            bake_seconds=w.bake_seconds,
            max_parallel=w.max_parallel,
            on_unreachable=w.on_unreachable,
            approve=w.approve,
        )
        for w, members in zip(fleet.rollout.waves, waves, strict=True)
    ]


def plan_environment(
    app: str, env: Environment, clusters: list[FleetCluster], repo: str, sha: str
) -> FleetPlan:
    """The rollout of commit ``sha`` of ``repo`` (URL or working tree) to the fleet of a
    catalog environment: the clusters its ``fleet.selector`` picks from ``clusters`` (the
    KubernetesCluster blocks, as inventory entries), in its waves.

    The fleet is named ``<app>-<env>`` (its per-cluster record
    ``shipyard-fleet-<app>-<env>``); everything is applied with the app's ownership
    label, as a single-cluster delivery does. ConfigError (naming app and environment)
    when no block matches, or a wave gets no cluster, or a cluster falls in no wave.
    """
    target = env.fleet
    where = f"{app}/{env.name}"
    if target is None:
        raise ConfigError(f"{where} does not target a fleet (it has 'cluster', not 'fleet')")
    selected = [c for c in clusters if selector_matches(target.selector, c.labels)]
    if not selected:
        known = "; ".join(f"{c.name} {c.labels}" for c in clusters) or "none"
        raise ConfigError(
            f"{where}: the fleet selector matches no KubernetesCluster block (blocks: {known})"
        )
    try:
        fleet = Fleet(
            apiVersion="shipyard.dev/v1",
            kind="Fleet",
            metadata=FleetMeta(name=f"{app}-{env.name}"),
            clusters=selected,
            rollout=RolloutSpec(
                path=env.path,
                namespace=env.namespace,
                app=app,
                sync=env.sync,
                verify=env.verify,
                waves=target.waves,
            ),
            rollback=target.rollback,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        msg = str(first.get("msg", "")).removeprefix("Value error, ")
        raise ConfigError(f"{where}: fleet: {msg}") from None
    try:
        waves = assign_waves(fleet)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc.message}") from None
    return FleetPlan(
        fleet=fleet,
        repo_dir=repo,
        branch=env.branch,
        revision=sha,
        sha=sha,
        waves=_planned(fleet, waves),
    )
