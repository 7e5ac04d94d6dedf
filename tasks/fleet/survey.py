"""Drift check and backup across every cluster of a fleet, one cluster at a time.

A fleet file (:mod:`tasks.fleet.config`) names the clusters; the operations here run the
single-cluster cores (:func:`tasks.detect_drift.detect_drift`,
:func:`tasks.backup_export.run_backup` and retention) once per cluster and turn every
outcome into a :class:`ClusterSweep` row instead of an exception: one unreachable or
broken cluster is reported, and the others still run. :func:`sweep` runs a per-cluster
callable for each cluster, at most ``max_parallel`` at once, in a copy of the caller's
context (so a Prefect task called from a worker thread belongs to the caller's flow run).

Backups of a fleet are keyed per cluster (``<prefix>/<cluster>/<backup-id>/``, the
backup layout of :mod:`tasks.backup_manifest`), so clusters never overwrite each other
and a restore drill picks one cluster by name. No Prefect here.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from time import monotonic
from typing import Any, Literal

from pydantic import BaseModel, Field

from shipyard.core.catalog import App, Environment
from shipyard.core.errors import ConfigError, ShipyardError, TransientError
from shipyard.core.kube import KubeClient, Retry, api_client
from shipyard.core.s3 import S3Store
from tasks.backup_export import BackupConfig, run_backup
from tasks.backup_retention import apply_backup_retention
from tasks.detect_drift import DriftConfig, detect_drift
from tasks.fleet.config import Fleet, FleetCluster, load_fleet, plan_environment

__all__ = [
    "ClusterSweep",
    "FleetSweep",
    "SweepStatus",
    "backup_fleet_cluster",
    "drift_config_for",
    "drift_fleet_cluster",
    "fleet_of_environment",
    "load_fleet_targets",
    "sweep",
]

SweepStatus = Literal["clean", "drifted", "backed-up", "failed", "unreachable"]
PROBE_RETRY = Retry(attempts=2, backoff=0.2, backoff_max=0.5)
JSON = dict[str, Any]


class ClusterSweep(BaseModel):
    """What one cluster's drift check or backup found (one row of the table)."""

    cluster: str = Field(description="Cluster name from the fleet file.")
    status: SweepStatus = Field(description="clean/drifted, backed-up, failed or unreachable.")
    reason: str = Field("", description="Why it failed, or a one-line summary.")
    revision: str | None = Field(None, description="Drift: the git commit compared with.")
    drifted: list[str] = Field(
        default_factory=list, description="Drift: 'Kind/name (change)' of each difference."
    )
    backup_id: str | None = Field(None, description="Backup: the new backup's id.")
    backup_key: str | None = Field(None, description="Backup: S3 key of its manifest.")
    objects: int = Field(0, description="Backup: objects written.")
    bytes: int = Field(0, description="Backup: bytes written.")
    seconds: float = Field(0.0, description="Wall time of this cluster's step.")

    @property
    def ok(self) -> bool:
        """True when the cluster could be checked or backed up (drift is a finding)."""
        return self.status not in ("failed", "unreachable")

    def cli_json(self) -> JSON:
        """The CLI's keys for this cluster."""
        out: JSON = {"cluster": self.cluster, "status": self.status, "reason": self.reason}
        if self.revision is not None or self.drifted:
            out.update(revision=self.revision, drifted=self.drifted)
        if self.backup_id is not None:
            out.update(
                backup_id=self.backup_id,
                backup_key=self.backup_key,
                objects=self.objects,
                bytes=self.bytes,
            )
        return out

    def row(self) -> dict[str, str]:
        """One row of the table artifact: cluster, finding, status."""
        if self.backup_key:
            found = self.backup_key
        elif self.drifted:
            found = "; ".join(self.drifted)[:500]
        else:
            found = "-"
        return {
            "cluster": self.cluster,
            "found": found,
            "status": self.status,
            "reason": self.reason,
        }


class FleetSweep(BaseModel):
    """Every cluster's outcome, in the order of the fleet file."""

    fleet: str = Field(description="Fleet name (metadata.name).")
    action: Literal["drift-check", "backup"]
    clusters: list[ClusterSweep]

    @property
    def passed(self) -> bool:
        """True when every cluster was checked or backed up (drift is not a failure)."""
        return all(c.ok for c in self.clusters)

    @property
    def drifted(self) -> bool:
        """True when any cluster drifted."""
        return any(c.status == "drifted" for c in self.clusters)

    def summary(self) -> str:
        """One line: how many clusters ended in which status."""
        counts: dict[str, int] = {}
        for c in self.clusters:
            counts[c.status] = counts.get(c.status, 0) + 1
        parts = ", ".join(f"{n} {s}" for s, n in counts.items())
        bad = [f"{c.cluster} {c.status}" for c in self.clusters if not c.ok]
        tail = f" ({', '.join(bad)})" if bad else ""
        return f"{self.action} of fleet {self.fleet}: {parts}{tail}"

    def cli_json(self) -> JSON:
        """``{passed, fleet, action, clusters: [...]}``."""
        return {
            "passed": self.passed,
            "fleet": self.fleet,
            "action": self.action,
            "clusters": [c.cli_json() for c in self.clusters],
        }


def load_fleet_targets(fleet_file: str | Path) -> Fleet:
    """The fleet file with every kubeconfig made absolute (relative to the file).

    ConfigError for an invalid file and for a kubeconfig that is not a file (bad input,
    as for a rollout); reachability is each cluster's own outcome, not checked here.
    """
    fleet = load_fleet(fleet_file)
    base = Path(fleet_file).resolve().parent
    clusters = []
    for c in fleet.clusters:
        kc = Path(c.kubeconfig).expanduser()
        kc = kc if kc.is_absolute() else base / kc
        if not kc.is_file():
            raise ConfigError(f"cluster {c.name!r}: kubeconfig {c.kubeconfig} is not a file")
        clusters.append(c.model_copy(update={"kubeconfig": str(kc)}))
    return fleet.model_copy(update={"clusters": clusters})


def fleet_of_environment(app: App, env: Environment, clusters: list[FleetCluster]) -> Fleet:
    """The fleet of a catalog environment that targets one (``fleet:``): the clusters of
    ``clusters`` (the labelled KubernetesCluster blocks) its selector picks, named
    ``<app>-<env>``, with the environment's path, namespace and sync; ConfigError when it
    targets a single cluster or its selector picks none."""
    return plan_environment(app.name, env, clusters, repo="", sha="").fleet


def _cluster(fleet: Fleet, name: str) -> FleetCluster:
    for c in fleet.clusters:
        if c.name == name:
            return c
    raise ConfigError(f"cluster {name!r} is not in fleet {fleet.metadata.name!r}")


def client_for(cluster: FleetCluster, *, retry: Retry | None = None) -> KubeClient:
    """A client for one fleet cluster (short timeouts: an unreachable cluster is news)."""
    return KubeClient(
        api_client(cluster.kubeconfig, cluster.context), retry=retry, request_timeout=15.0
    )


def drift_config_for(
    fleet: Fleet, name: str, repo: str, *, branch: str = "main", revision: str | None = None
) -> DriftConfig:
    """What cluster ``name`` should run: the rollout's path (``{cluster}`` filled in), its
    namespace, and the ownership labels the fleet's sync driver stamps (with Argo CD, the
    app label is the cluster's Application name, as Argo CD's instance label)."""
    spec = fleet.rollout
    path = spec.path.replace("{cluster}", name)
    driver = spec.sync.driver
    app = spec.app or PurePosixPath(path.rstrip("/")).name or "app"
    if driver == "argocd" and spec.sync.application:  # Argo CD labels with the Application
        app = spec.sync.application.replace("{cluster}", name).replace("{app}", app)
    return DriftConfig(
        repo=repo,
        path=path,
        namespace=spec.namespace,
        branch=branch,
        revision=revision,
        app=app,
        managed_by="shipyard" if driver == "apply" else driver,
    )


def _probe(kube: KubeClient, namespace: str) -> None:
    """ConfigError when ``namespace`` is missing; TransientError when nobody answers."""
    if kube.get(f"/api/v1/namespaces/{namespace}") is None:
        raise ConfigError(f"namespace {namespace!r} does not exist")


def _failure(name: str, exc: Exception, started: float) -> ClusterSweep:
    status: SweepStatus = "unreachable" if isinstance(exc, TransientError) else "failed"
    text = str(exc) if isinstance(exc, ShipyardError) else f"{type(exc).__name__}: {exc}"
    reason = f"cluster unreachable: {text}" if status == "unreachable" else text
    return ClusterSweep(cluster=name, status=status, reason=reason, seconds=monotonic() - started)


def drift_fleet_cluster(
    fleet: Fleet,
    name: str,
    repo: str,
    *,
    branch: str = "main",
    revision: str | None = None,
    connect: Callable[[FleetCluster, Retry | None], KubeClient] | None = None,
) -> ClusterSweep:
    """Drift of cluster ``name`` against git: clean, drifted, failed or unreachable."""
    started = monotonic()
    make = connect or (lambda c, r: client_for(c, retry=r))
    try:
        cluster = _cluster(fleet, name)
        config = drift_config_for(fleet, name, repo, branch=branch, revision=revision)
        _probe(make(cluster, PROBE_RETRY), config.namespace)
        report = detect_drift(make(cluster, None), config)
    except ShipyardError as exc:
        return _failure(name, exc, started)
    items = [f"{i.object} ({i.change})" for i in report.items]
    return ClusterSweep(
        cluster=name,
        status="drifted" if report.drifted else "clean",
        reason=f"{len(items)} object(s) differ from git" if items else "matches git",
        revision=report.revision,
        drifted=items,
        seconds=monotonic() - started,
    )


def backup_fleet_cluster(
    fleet: Fleet,
    name: str,
    config: BackupConfig,
    store: S3Store,
    *,
    prefix: str,
    connect: Callable[[FleetCluster, Retry | None], KubeClient] | None = None,
) -> ClusterSweep:
    """Back up cluster ``name`` under ``<prefix>/<name>/``, then apply retention to its
    backups only; backed-up, failed or unreachable."""
    started = monotonic()
    make = connect or (lambda c, r: client_for(c, retry=r))
    mine = config.model_copy(update={"cluster": name})
    try:
        cluster = _cluster(fleet, name)
        _probe(make(cluster, PROBE_RETRY), mine.namespaces[0])
        result = run_backup(make(cluster, Retry(attempts=4)), store, mine, prefix=prefix)
        retention = apply_backup_retention(store, mine, prefix=prefix)
    except ShipyardError as exc:
        return _failure(name, exc, started)
    return ClusterSweep(
        cluster=name,
        status="backed-up",
        reason=(
            f"{result.objects} objects, {result.bytes} bytes; "
            f"retention deleted {len(retention.deleted)}"
        ),
        backup_id=result.backup_id,
        backup_key=result.manifest_key,
        objects=result.objects,
        bytes=result.bytes,
        seconds=monotonic() - started,
    )


def sweep(
    names: Sequence[str],
    one: Callable[[str], ClusterSweep],
    max_parallel: int | None = None,
    *,
    publish: Callable[[list[ClusterSweep]], None] | None = None,
) -> list[ClusterSweep]:
    """``[one(n) for n in names]``, at most ``max_parallel`` at once (default all).

    An exception out of ``one`` (a task that failed in an unforeseen way) becomes that
    cluster's ``failed`` row; the other clusters still run. ``publish`` sees the rows
    done so far after each cluster (the live table).
    """
    done: dict[str, ClusterSweep] = {}
    lock = threading.Lock()

    def guarded(name: str) -> ClusterSweep:
        started = monotonic()
        try:
            result = one(name)
        except Exception as exc:  # noqa: BLE001 - one cluster never stops the others
            result = _failure(name, exc, started)
        with lock:
            done[name] = result
            if publish is not None:
                publish([done[n] for n in names if n in done])
        return result

    if not names:
        return []
    workers = max(1, min(max_parallel or len(names), len(names)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fleet-sweep") as pool:
        futures = [pool.submit(contextvars.copy_context().run, guarded, n) for n in names]
        return [f.result() for f in futures]
