"""Argo CD hub mode: a fleet rollout that drives one Argo CD Application per cluster.

With ``rollout.sync: {driver: argocd, application: "{app}-{cluster}", hub: {kubeconfig,
context, namespace}}`` the Applications live in the hub cluster (Argo CD's own), one per
fleet cluster, each deploying to its member cluster. Per cluster of a wave:

1. read its Application in the hub (missing: failed; hub or member down: unreachable);
2. record what it ran before, once per rollout, as annotations on the Application:
   ``fleet.shipyard.dev/previous-target-revision`` (``spec.source.targetRevision``) and
   ``fleet.shipyard.dev/previous-revision`` (``status.sync.revision``, the commit);
3. set ``spec.source.targetRevision`` to REV and request a sync of REV (``operation``,
   with a sync id of ours: :func:`tasks.sync.argocd.sync_argocd`);
4. wait until the Application reports our operation Succeeded, ``status.sync.revision``
   = REV, ``operationState.finishedAt`` not before we started, and health Healthy: an
   older Synced/Healthy status (a previous sync, another revision) never counts;
5. verify the workloads on the member cluster itself (:func:`watch_rollout`: the new
   template observed, updated replicas available, fail-fast pod reasons).

Only the Applications of the wave being run are touched. Rollback sets
``targetRevision`` back to the recorded one and syncs the recorded commit. A cluster
already verified at REV (annotation ``fleet.shipyard.dev/verified-revision``, the
Application still Synced+Healthy at REV, the member healthy) is ``unchanged`` (resume).
No Prefect here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from shipyard.core.errors import ConfigError, ShipyardError, TransientError
from shipyard.core.kube import KubeClient, KubeConflict, Retry, api_client
from tasks.fleet.cluster import (
    PROBE_RETRY,
    ClusterReport,
    Status,
    check_cluster,
    connect,
    now,
    rollback_outcome,
)
from tasks.fleet.config import FleetPlan, HubSpec
from tasks.sync.argocd import GROUP_PATH, sync_argocd
from tasks.sync.config import SyncConfig
from tasks.verify_rollout import VerifyConfig, watch_rollout

__all__ = [
    "PREVIOUS_REVISION",
    "PREVIOUS_TARGET",
    "VERIFIED",
    "application_name",
    "judge_synced",
    "recheck_via_hub",
    "roll_back_via_hub",
    "roll_via_hub",
]

JSON = dict[str, Any]
PREVIOUS_TARGET = "fleet.shipyard.dev/previous-target-revision"
PREVIOUS_REVISION = "fleet.shipyard.dev/previous-revision"
VERIFIED = "fleet.shipyard.dev/verified-revision"
_SHA = re.compile(r"^[0-9a-f]{7,40}$")


def _hub(plan: FleetPlan) -> HubSpec:
    hub = plan.fleet.rollout.sync.hub
    if hub is None:
        raise ConfigError("the fleet's sync has no hub")
    return hub


def hub_namespace(plan: FleetPlan) -> str:
    """Namespace of the Applications in the hub."""
    return _hub(plan).namespace or plan.fleet.rollout.sync.application_namespace


def application_name(plan: FleetPlan, cluster: str) -> str:
    """The Application of ``cluster``: the ``application`` pattern filled in."""
    pattern = plan.fleet.rollout.sync.application or "{app}-{cluster}"
    return pattern.replace("{cluster}", cluster).replace("{app}", plan.app_for(cluster))


def _path(plan: FleetPlan, cluster: str) -> str:
    ns = hub_namespace(plan)
    return f"{GROUP_PATH}/namespaces/{ns}/applications/{application_name(plan, cluster)}"


def hub_client(plan: FleetPlan, *, retry: Retry | None = None) -> KubeClient:
    """A client for the hub cluster."""
    hub = _hub(plan)
    return KubeClient(api_client(hub.kubeconfig, hub.context), retry=retry, request_timeout=15.0)


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def judge_synced(
    app: Mapping[str, Any] | None, revision: str, since: datetime | None = None
) -> str | None:
    """Why ``app`` is not Synced and Healthy at ``revision`` (None when it is). Pure.

    No operation pending, the last operation Succeeded with ``syncResult.revision`` =
    ``revision``, ``status.sync`` Synced at ``revision``, health Healthy and, given
    ``since``, the operation finished at or after ``since`` (Argo CD writes whole
    seconds, so ``since`` is compared truncated to the second).
    """
    if app is None:
        return "the Application does not exist"
    if app.get("operation"):
        return "an operation is in progress"
    status = app.get("status") or {}
    op_state = status.get("operationState") or {}
    sync = status.get("sync") or {}
    synced = (op_state.get("syncResult") or {}).get("revision")
    if op_state.get("phase") != "Succeeded":
        return f"last operation {op_state.get('phase') or 'none'}: {op_state.get('message', '')}"
    if synced != revision or sync.get("revision") != revision:
        shown = str(sync.get("revision") or synced or "nothing")[:12]
        return f"Argo CD reports {shown}, not {revision[:12]}"
    if sync.get("status") != "Synced":
        return f"sync status is {sync.get('status') or 'unknown'}"
    if since is not None:
        finished = _time(op_state.get("finishedAt"))
        if finished is None or finished < since.replace(microsecond=0):
            return "the last sync finished before this rollout started it (stale status)"
    health = (status.get("health") or {}).get("status")
    if health != "Healthy":
        detail = (status.get("health") or {}).get("message", "")
        return f"health is {health or 'unknown'}{': ' + detail if detail else ''}"
    return None


def _annotations(app: Mapping[str, Any]) -> dict[str, str]:
    return dict((app.get("metadata") or {}).get("annotations") or {})


def _target(app: Mapping[str, Any], name: str) -> str:
    spec = app.get("spec") or {}
    if "source" not in spec:
        raise ConfigError(f"Application {name} has no spec.source (multiple sources unsupported)")
    return str((spec.get("source") or {}).get("targetRevision") or "HEAD")


def _sync(
    hub: KubeClient, plan: FleetPlan, cluster: str, revision: str | None, expect: str | None
) -> str | None:
    """Request a sync of ``revision`` and wait for it; why it failed, or None.

    ``expect`` is the commit the Application must then report (REV, or the recorded
    previous commit on a rollback); None when only a branch is known.
    """
    started = datetime.now(UTC)
    name = application_name(plan, cluster)
    config = SyncConfig(
        driver="argocd",
        application=name,
        application_namespace=hub_namespace(plan),
        revision=revision,
        timeout_seconds=plan.fleet.rollout.verify.timeout_seconds,
        prune=plan.fleet.rollout.sync.prune,
        wait_healthy=True,
    )
    try:
        sync_argocd(hub, config)
        app = hub.get(_path(plan, cluster))
    except ShipyardError as exc:
        return f"Argo CD sync of {(revision or 'its target')[:12]} failed: {exc}"
    if expect is None:
        return None
    return judge_synced(app, expect, started)


def _verify_member(kube: KubeClient, plan: FleetPlan) -> str | None:
    spec = plan.fleet.rollout
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
    return None


def _point(hub: KubeClient, path: str, name: str, sha: str, attempts: int = 5) -> str | None:
    """Set the Application's ``targetRevision`` to ``sha``, recording what it had (only
    when it changes: a retried rollout keeps the first record); the previous target.

    Each write carries the resourceVersion it read, so a concurrent change (the
    controller's status, a user) is re-read rather than overwritten.
    """
    for attempt in range(attempts):
        app = hub.get(path)
        if app is None:
            raise ConfigError(f"Application {name} does not exist in the hub")
        target, notes = _target(app, name), _annotations(app)
        record: dict[str, str | None] = {VERIFIED: None}
        if target != sha:
            ran = ((app.get("status") or {}).get("sync") or {}).get("revision")
            record.update({PREVIOUS_TARGET: target, PREVIOUS_REVISION: ran or None})
        patch = {
            "metadata": {
                "resourceVersion": app["metadata"]["resourceVersion"],
                "annotations": record,
            },
            "spec": {"source": {"targetRevision": sha}},
        }
        try:
            hub.merge_patch(path, patch)
        except KubeConflict:
            if attempt == attempts - 1:
                raise
            continue
        return target if target != sha else (notes.get(PREVIOUS_TARGET) or None)
    return None


def roll_via_hub(
    plan: FleetPlan,
    name: str,
    *,
    connect_to: Callable[[FleetPlan, str], KubeClient] | None = None,
    hub_connect: Callable[[FleetPlan], KubeClient] | None = None,
) -> ClusterReport:
    """Take cluster ``name`` to ``plan.sha`` through its Application in the hub (see
    module docstring): unreachable, unchanged, healthy or failed."""
    report = ClusterReport(name=name, started_at=now())
    sha = plan.sha

    def done(status: Status, reason: str | None = None, **extra: Any) -> ClusterReport:
        return report.model_copy(
            update={"status": status, "reason": reason, "finished_at": now(), **extra}
        )

    path = _path(plan, name)
    app_name = application_name(plan, name)
    try:
        hub = (hub_connect or (lambda p: hub_client(p, retry=PROBE_RETRY)))(plan)
        app = hub.get(path)
    except TransientError as exc:
        return done("unreachable", f"Argo CD hub unreachable: {exc}")
    except ConfigError as exc:
        return done("failed", f"Argo CD hub: {exc}")
    if app is None:
        return done("failed", f"Application {app_name} does not exist in the hub")
    try:
        probe = (connect_to or (lambda p, n: connect(p, n, retry=PROBE_RETRY)))(plan, name)
        if probe.get(f"/api/v1/namespaces/{plan.fleet.rollout.namespace}") is None:
            return done("failed", f"namespace {plan.fleet.rollout.namespace!r} does not exist")
        kube = connect(plan, name)
        target = _target(app, app_name)
    except TransientError as exc:
        return done("unreachable", f"cluster unreachable: {exc}")
    except ConfigError as exc:
        return done("failed", str(exc))
    notes = _annotations(app)
    if target == sha and notes.get(VERIFIED) == sha and judge_synced(app, sha) is None:
        try:
            still = check_cluster(kube, plan, sha)
        except ShipyardError as exc:
            still = str(exc)
    else:
        still = "not verified at REV"
    if still is None:
        previous = notes.get(PREVIOUS_TARGET) or None
        return done("unchanged", f"already verified at {sha[:12]}", previous_revision=previous)
    try:
        hub = hub_client(plan)
        previous = _point(hub, path, app_name, sha)
    except TransientError as exc:
        return done("unreachable", f"Argo CD hub unreachable: {exc}")
    except ShipyardError as exc:
        return done("failed", f"cannot point {app_name} at {sha[:12]}: {exc}")
    why = _sync(hub, plan, name, sha, sha) or _verify_member(kube, plan)
    if why is not None:
        return done("failed", why, previous_revision=previous, written=True)
    try:
        hub.merge_patch(path, {"metadata": {"annotations": {VERIFIED: sha}}})
    except ShipyardError as exc:
        return done("failed", f"cannot record the verification: {exc}", written=True)
    return done("healthy", f"verified at {sha[:12]}", previous_revision=previous, written=True)


def roll_back_via_hub(plan: FleetPlan, report: ClusterReport, why: str) -> ClusterReport:
    """Point the cluster's Application back at the target it had before and sync the
    commit it ran then; statuses as :func:`tasks.fleet.cluster.roll_back_cluster`."""
    failed = report.status == "failed"
    status: Status = "failed" if failed else "rolled-back"
    prefix = f"{report.reason}; " if failed and report.reason else f"{why}; "
    path = _path(plan, report.name)
    try:
        hub = hub_client(plan)
        app = hub.get(path)
        notes = _annotations(app or {})
        target = notes.get(PREVIOUS_TARGET) or report.previous_revision
        if app is None or not target:
            return report.model_copy(
                update={
                    "status": "failed",
                    "reason": f"{prefix}no previous revision to roll back to",
                }
            )
        commit = notes.get(PREVIOUS_REVISION) or (target if _SHA.match(target) else None)
        hub.merge_patch(
            path,
            {
                "metadata": {"annotations": {VERIFIED: None}},
                "spec": {"source": {"targetRevision": target}},
            },
        )
        why_not = _sync(hub, plan, report.name, commit, commit) or _verify_member(
            connect(plan, report.name), plan
        )
        if why_not is None:
            hub.merge_patch(
                path,
                {
                    "metadata": {
                        "annotations": {
                            PREVIOUS_TARGET: None,
                            PREVIOUS_REVISION: None,
                            VERIFIED: commit,
                        }
                    }
                },
            )
    except ShipyardError as exc:
        why_not = str(exc)
        target = report.previous_revision or "?"
    return rollback_outcome(report, status, prefix, target, why_not)


def recheck_via_hub(plan: FleetPlan, name: str) -> str | None:
    """After a bake: why cluster ``name`` is no longer Synced+Healthy at REV in the hub,
    or its workloads no longer healthy (None when all is well)."""
    try:
        why = judge_synced(hub_client(plan).get(_path(plan, name)), plan.sha)
        return why or check_cluster(connect(plan, name), plan, plan.sha)
    except ShipyardError as exc:
        return str(exc)
