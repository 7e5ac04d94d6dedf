"""One cluster of a fleet rollout: reach it, resume or record, sync at REV, verify at REV.

The revision a cluster ran before is kept in the cluster itself, in a ConfigMap
``shipyard-fleet-<fleet>`` in the rollout's namespace (``revision``,
``previous-revision``, ``verified-revision``, ``updated-at``), written only to clusters
whose wave started. The live ``app.shipyard.dev/revision`` annotation the apply driver
stamps on every workload wins over the record when both exist (a ``shipyard sync`` run
by hand is seen).

"Verified at REV" means: the sync of REV succeeded, every workload of ``verify`` is
healthy by :func:`tasks.verify_rollout.watch_rollout` (which judges the new template:
observedGeneration, updated replicas, fail-fast pod reasons) and, with the apply driver,
each workload carries REV in its revision annotation. Never an older status.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from shipyard.core.errors import ConfigError, ShipyardError, TransientError
from shipyard.core.kube import KubeClient, Retry, api_client
from tasks.fleet.config import FleetPlan
from tasks.sync.plan import plan_sync
from tasks.sync.render import REVISION_ANNOTATION
from tasks.sync_app import sync
from tasks.verify_rollout import VerifyConfig, evaluate_rollout, parse_workload, watch_rollout

__all__ = [
    "ClusterReport",
    "Status",
    "check_cluster",
    "connect",
    "roll_back_cluster",
    "roll_cluster",
]

Status = Literal["healthy", "failed", "rolled-back", "skipped", "unreachable", "unchanged"]
JSON = dict[str, Any]
PROBE_RETRY = Retry(attempts=2, backoff=0.2, backoff_max=0.5)


def now() -> str:
    """The current time, ISO 8601 in UTC."""
    return datetime.now(UTC).isoformat()


class ClusterReport(BaseModel):
    """What happened to one cluster (the JSON keys plus what a rollback needs)."""

    name: str
    status: Status | None = Field(None, description="None until the cluster's wave ran.")
    started_at: str | None = None
    finished_at: str | None = None
    reason: str | None = None
    previous_revision: str | None = Field(None, description="What it ran before REV.")
    written: bool = Field(False, description="True once REV was applied to it.")

    def cli_json(self) -> JSON:
        """The contract's keys only."""
        return {
            "name": self.name,
            "status": self.status,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "reason": self.reason,
        }


def connect(plan: FleetPlan, name: str, *, retry: Retry | None = None) -> KubeClient:
    """A client for cluster ``name`` (short timeouts: an unreachable cluster is news)."""
    cluster = plan.cluster(name)
    return KubeClient(
        api_client(cluster.kubeconfig, cluster.context), retry=retry, request_timeout=15.0
    )


def _record_path(plan: FleetPlan, name: str | None = None) -> str:
    base = f"/api/v1/namespaces/{plan.fleet.rollout.namespace}/configmaps"
    return f"{base}/{name}" if name else base


def read_record(kube: KubeClient, plan: FleetPlan) -> dict[str, str]:
    """The cluster's rollout record (empty when none)."""
    obj = kube.get(_record_path(plan, plan.record_name)) or {}
    return dict(obj.get("data") or {})


def write_record(kube: KubeClient, plan: FleetPlan, **data: str | None) -> None:
    """Merge ``data`` into the record (server-side apply of the ConfigMap)."""
    resource = kube.resource("v1", "ConfigMap")
    merged = {**read_record(kube, plan), **{k.replace("_", "-"): v or "" for k, v in data.items()}}
    merged["updated-at"] = now()
    obj = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": plan.record_name,
            "namespace": plan.fleet.rollout.namespace,
            "labels": {"app.shipyard.dev/fleet": plan.fleet.metadata.name},
        },
        "data": merged,
    }
    kube.apply(resource, obj, "shipyard-fleet")


def _workload(kube: KubeClient, namespace: str, workload: str) -> JSON | None:
    kind, name = parse_workload(workload)
    path = kube.resource("apps/v1", kind).path(namespace, name)
    obj = kube.get(path)
    if obj is not None:
        obj.setdefault("kind", kind)
    return obj


def live_revision(kube: KubeClient, plan: FleetPlan) -> str | None:
    """The revision annotation of the first workload (None when absent or not stamped)."""
    workload = _workload(kube, plan.fleet.rollout.namespace, plan.fleet.rollout.verify.workloads[0])
    annotations = ((workload or {}).get("metadata") or {}).get("annotations") or {}
    value = annotations.get(REVISION_ANNOTATION)
    return str(value) if value else None


def check_cluster(kube: KubeClient, plan: FleetPlan, revision: str) -> str | None:
    """Why the cluster is not healthy at ``revision`` right now (None when it is).

    One look, no waiting: each workload exists, carries ``revision`` (apply driver) and
    :func:`evaluate_rollout` judges it healthy with its current pods.
    """
    from shipyard.core.selectors import label_selector

    namespace = plan.fleet.rollout.namespace
    for workload in plan.fleet.rollout.verify.workloads:
        obj = _workload(kube, namespace, workload)
        if obj is None:
            return f"{workload} does not exist"
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        live = annotations.get(REVISION_ANNOTATION)
        if plan.fleet.rollout.sync.driver == "apply" and live != revision:
            return f"{workload} runs {str(live or 'an unknown revision')[:12]}"
        selector = label_selector((obj.get("spec") or {}).get("selector"))
        pods, _ = kube.list(f"/api/v1/namespaces/{namespace}/pods", {"labelSelector": selector})
        status = evaluate_rollout(obj, list[Mapping[str, Any]](pods), None)
        if status.state != "healthy":
            return f"{workload}: {status.reason or status.state}: {status.message}".strip(": ")
    return None


def converge(kube: KubeClient, plan: FleetPlan, name: str, revision: str) -> str | None:
    """Sync ``revision`` to cluster ``name`` and verify it; why it failed, or None."""
    spec = plan.fleet.rollout
    config = plan_sync(
        spec.sync.driver,
        revision=revision,
        timeout_seconds=spec.verify.timeout_seconds,
        repo=plan.repo_dir,
        path=plan.path_for(name),
        namespace=spec.namespace,
        app=plan.app_for(name),
        prune=spec.sync.prune,
        application=spec.sync.application,
        application_namespace=spec.sync.application_namespace,
        kustomization=spec.sync.kustomization,
        source=spec.sync.source,
        flux_namespace=spec.sync.flux_namespace,
    )
    try:
        sync(config.model_copy(update={"branch": plan.branch}), kube=kube)
    except ShipyardError as exc:
        return f"sync of {revision[:12]} failed: {exc}"
    for workload in spec.verify.workloads:
        verify = VerifyConfig(
            namespace=spec.namespace, workload=workload, timeout_seconds=spec.verify.timeout_seconds
        )
        try:
            result = watch_rollout(kube, verify)
        except ShipyardError as exc:
            return f"{workload}: verify failed: {exc}"
        if not result.healthy:
            return f"{workload}: {result.reason}: {result.message}"
    if spec.sync.driver == "apply":
        stale = check_cluster(kube, plan, revision)
        if stale:
            return f"not at {revision[:12]} after verify: {stale}"
    return None


def roll_cluster(
    plan: FleetPlan, name: str, *, connect_to: Callable[[FleetPlan, str], KubeClient] | None = None
) -> ClusterReport:
    """Take cluster ``name`` to ``plan.sha``: unreachable, unchanged, healthy or failed."""
    if plan.fleet.rollout.sync.hub is not None:  # Argo CD hub mode: tasks.fleet.hub
        from tasks.fleet.hub import roll_via_hub

        return roll_via_hub(plan, name, connect_to=connect_to)
    report = ClusterReport(name=name, started_at=now())

    def done(status: Status, reason: str | None = None, **extra: Any) -> ClusterReport:
        return report.model_copy(
            update={"status": status, "reason": reason, "finished_at": now(), **extra}
        )

    try:
        probe = (connect_to or _probe_client)(plan, name)
        if probe.get(f"/api/v1/namespaces/{plan.fleet.rollout.namespace}") is None:
            return done("failed", f"namespace {plan.fleet.rollout.namespace!r} does not exist")
        kube = connect(plan, name)
        record = read_record(kube, plan)
        live = live_revision(kube, plan)
    except TransientError as exc:
        return done("unreachable", f"cluster unreachable: {exc}")
    except ConfigError as exc:
        return done("failed", str(exc))
    current = live or record.get("revision") or None
    if current == plan.sha:  # a retried rollout: keep what it ran before the first try
        previous = record.get("previous-revision") or None
        if (
            record.get("verified-revision") == plan.sha
            and check_cluster(kube, plan, plan.sha) is None
        ):
            return done(
                "unchanged", f"already verified at {plan.sha[:12]}", previous_revision=previous
            )
    else:
        previous = current
    try:
        write_record(
            kube, plan, revision=plan.sha, previous_revision=previous, verified_revision=""
        )
    except TransientError as exc:
        return done("unreachable", f"cluster unreachable: {exc}", previous_revision=previous)
    except ShipyardError as exc:
        return done("failed", f"cannot record the rollout: {exc}", previous_revision=previous)
    why = converge(kube, plan, name, plan.sha)
    if why is not None:
        return done("failed", why, previous_revision=previous, written=True)
    write_record(kube, plan, verified_revision=plan.sha)
    return done("healthy", f"verified at {plan.sha[:12]}", previous_revision=previous, written=True)


def _probe_client(plan: FleetPlan, name: str) -> KubeClient:
    return connect(plan, name, retry=PROBE_RETRY)


def roll_back_cluster(plan: FleetPlan, report: ClusterReport, why: str) -> ClusterReport:
    """Put the cluster of ``report`` back to the revision it ran before.

    A cluster that failed stays ``failed`` (the reason says it was rolled back); one that
    was healthy or unchanged becomes ``rolled-back``. Without a recorded previous
    revision nothing can be restored: it stays as it is, and the reason says so.
    """
    if plan.fleet.rollout.sync.hub is not None:
        from tasks.fleet.hub import roll_back_via_hub

        return roll_back_via_hub(plan, report, why)
    previous = report.previous_revision
    failed = report.status == "failed"
    status: Status = "failed" if failed else "rolled-back"
    prefix = f"{report.reason}; " if failed and report.reason else f"{why}; "
    if not previous:
        return report.model_copy(
            update={"status": "failed", "reason": f"{prefix}no previous revision to roll back to"}
        )
    try:
        kube = connect(plan, report.name)
        why_not = converge(kube, plan, report.name, previous)
        if why_not is None:
            write_record(
                kube, plan, revision=previous, previous_revision="", verified_revision=previous
            )
    except ShipyardError as exc:
        why_not = str(exc)
    return rollback_outcome(report, status, prefix, previous, why_not)


def rollback_outcome(
    report: ClusterReport, status: Status, prefix: str, target: str, why_not: str | None
) -> ClusterReport:
    """The cluster's row after a rollback to ``target``: ``status`` with the reason, or
    ``failed`` saying why the rollback did not work (``why_not``)."""
    if why_not is not None:
        return report.model_copy(
            update={
                "status": "failed",
                "reason": f"{prefix}rollback to {target[:12]} failed: {why_not}",
                "finished_at": now(),
            }
        )
    return report.model_copy(
        update={
            "status": status,
            "reason": f"{prefix}rolled back to {target[:12]}",
            "finished_at": now(),
        }
    )


def recheck_cluster(plan: FleetPlan, name: str) -> str | None:
    """After a bake: why cluster ``name`` is no longer healthy at REV (None when it is)."""
    if plan.fleet.rollout.sync.hub is not None:
        from tasks.fleet.hub import recheck_via_hub

        return recheck_via_hub(plan, name)
    try:
        return check_cluster(connect(plan, name), plan, plan.sha)
    except ShipyardError as exc:
        return str(exc)
