"""Verify a rollout: is the new version of a workload running, ready and the pushed image?

Three layers:

1. :class:`VerifyConfig` - which workload, which digest, the deadline.
2. A pure core, :func:`evaluate_rollout`, that judges a Deployment/StatefulSet/DaemonSet
   and its pods (plain JSON) the way ``kubectl rollout status`` does, plus what kubectl
   does not: it fails fast on pod waiting reasons that never heal by themselves
   (ImagePullBackOff, ErrImagePull, CrashLoopBackOff, CreateContainerConfigError) and
   checks that the running pods' image digest is the one that was pushed.
3. :func:`watch_rollout` (the I/O: one list, then watches of the workload and its pods,
   re-judging on every event, so a result arrives within one event of the change and no
   API server is polled), reporting each judgement to an optional ``progress`` callback.
   The thin task ``verify_rollout`` in :mod:`tasks.steps.rollout` turns that callback
   into a Prefect progress artifact.

"Not ready yet" is a state inside the deadline, never an error before it; a rollout
that was healthy and then degrades inside the stability window is a terminal failure
(Kargo's rule: Healthy -> Degraded does not heal by waiting).
"""

from __future__ import annotations

import queue
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shipyard.core.errors import (
    ConfigError,
    PermanentError,
    PolicyError,
    TransientError,
)
from shipyard.core.kube import KubeClient
from shipyard.core.selectors import label_selector

__all__ = [
    "FAIL_FAST_REASONS",
    "RolloutStatus",
    "VerifyConfig",
    "VerifyResult",
    "evaluate_rollout",
    "parse_workload",
    "run_verify",
    "watch_rollout",
]

JSON = dict[str, Any]
State = Literal["progressing", "healthy", "failed"]

FAIL_FAST_REASONS = frozenset(
    {
        "ImagePullBackOff",
        "ErrImagePull",
        "CrashLoopBackOff",
        "CreateContainerConfigError",
        "InvalidImageName",
        "CreateContainerError",
    }
)
KINDS = {"deployment": "Deployment", "statefulset": "StatefulSet", "daemonset": "DaemonSet"}
PLURALS = {"Deployment": "deployments", "StatefulSet": "statefulsets", "DaemonSet": "daemonsets"}
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


# --- configuration ----------------------------------------------------------------------


def parse_workload(text: str) -> tuple[str, str]:
    """``deployment/cart`` -> ("Deployment", "cart"); ConfigError when malformed."""
    kind, _, name = text.partition("/")
    canonical = KINDS.get(kind.strip().lower().rstrip("s")) or KINDS.get(kind.strip().lower())
    if canonical is None or not name.strip():
        raise ConfigError(
            f"workload {text!r} must be deployment/NAME, statefulset/NAME or daemonset/NAME"
        )
    return canonical, name.strip()


class VerifyConfig(BaseModel):
    """What to verify and for how long."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    namespace: str = Field(description="Namespace of the workload.")
    workload: str = Field(
        description="KIND/NAME: deployment/cart, statefulset/db, daemonset/agent."
    )
    digest: str | None = Field(
        None, description="sha256:... every running pod must run (the pushed digest)."
    )
    timeout_seconds: float = Field(300.0, gt=0, description="Deadline for the whole rollout.")
    stable_seconds: float = Field(
        0.0, ge=0, description="Keep watching this long after healthy; a regression fails."
    )

    @field_validator("workload")
    @classmethod
    def _workload(cls, value: str) -> str:
        try:
            parse_workload(value)
        except ConfigError as exc:
            raise ValueError(exc.message) from None
        return value

    @field_validator("digest")
    @classmethod
    def _digest(cls, value: str | None) -> str | None:
        if value is not None and not _DIGEST.match(value):
            raise ValueError(f"digest {value!r} must be sha256: and 64 hex digits")
        return value

    @property
    def kind(self) -> str:
        """Canonical kind (Deployment, StatefulSet, DaemonSet)."""
        return parse_workload(self.workload)[0]

    @property
    def name(self) -> str:
        """Workload name."""
        return parse_workload(self.workload)[1]


class RolloutStatus(BaseModel):
    """One judgement of a rollout (the pure core's output)."""

    model_config = ConfigDict(frozen=True)

    state: State = Field(description="progressing, healthy or failed.")
    reason: str | None = Field(None, description="Why not healthy (a pod waiting reason, ...).")
    message: str = Field("", description="Human-readable detail, quoting the pod's message.")
    ready: int = Field(0, description="Ready replicas of the new version.")
    desired: int = Field(0, description="Desired replicas.")
    images: list[str] = Field(default_factory=list, description="Image IDs the new pods run.")


class VerifyResult(BaseModel):
    """The outcome of a verification (the CLI's JSON, plus detail)."""

    healthy: bool = Field(description="True when the rollout completed and checks passed.")
    reason: str | None = Field(None, description="Why it is not healthy; None when healthy.")
    message: str = Field("", description="Detail for humans.")
    ready: int = Field(0, description="Ready replicas of the new version.")
    desired: int = Field(0, description="Desired replicas.")
    images: list[str] = Field(default_factory=list, description="Image IDs the new pods run.")
    seconds: float = Field(0.0, description="Time spent verifying.")
    workload: str = Field("", description="KIND/NAME verified.")
    namespace: str = Field("", description="Namespace verified.")

    def cli_json(self) -> JSON:
        """Exactly the keys of the CLI contract."""
        return {
            "healthy": self.healthy,
            "reason": self.reason,
            "ready": self.ready,
            "desired": self.desired,
            "images": self.images,
            "seconds": round(self.seconds, 3),
        }


# --- pure core ----------------------------------------------------------------------------


def _cond(obj: Mapping[str, Any], ctype: str) -> Mapping[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return dict(c)
    return None


def _template_images(workload: Mapping[str, Any]) -> list[str]:
    spec = ((workload.get("spec") or {}).get("template") or {}).get("spec") or {}
    return [c.get("image", "") for c in spec.get("containers") or []]


def _pod_images(pod: Mapping[str, Any]) -> list[str]:
    return [c.get("image", "") for c in (pod.get("spec") or {}).get("containers") or []]


def _is_current(pod: Mapping[str, Any], workload: Mapping[str, Any]) -> bool:
    """Whether ``pod`` belongs to the workload's current template (not an old revision)."""
    meta = pod.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return False
    status = workload.get("status") or {}
    labels = meta.get("labels") or {}
    kind = workload.get("kind")
    if (
        kind == "StatefulSet"
        and status.get("updateRevision")
        and labels.get("controller-revision-hash")
    ):
        return bool(labels["controller-revision-hash"] == status["updateRevision"])
    return _pod_images(pod) == _template_images(workload)


def _waiting_failure(pod: Mapping[str, Any]) -> tuple[str, str] | None:
    """(reason, message) of the first container stuck in a fail-fast waiting reason."""
    status = pod.get("status") or {}
    name = (pod.get("metadata") or {}).get("name", "")
    for cs in [
        *(status.get("initContainerStatuses") or []),
        *(status.get("containerStatuses") or []),
    ]:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason in FAIL_FAST_REASONS:
            msg = waiting.get("message") or ""
            return reason, f"pod {name} container {cs.get('name')}: {reason}: {msg}".rstrip(": ")
    return None


def _latest(
    events: list[Mapping[str, Any]], uid: str, reasons: set[str]
) -> Mapping[str, Any] | None:
    """The newest Event about object ``uid`` with one of ``reasons``."""
    mine = [
        e
        for e in events
        if (e.get("involvedObject") or {}).get("uid") == uid and e.get("reason") in reasons
    ]
    stamp = lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or "")  # noqa: E731
    return max(mine, key=stamp, default=None)


def _blocker(
    workload: Mapping[str, Any], pods: list[Mapping[str, Any]], events: list[Mapping[str, Any]]
) -> tuple[str, str] | None:
    """(reason, message) of what keeps a progressing rollout from starting its pods.

    What a real cluster reports and waiting may still fix (an object created later, a
    node freed), so it names the outcome at the deadline rather than failing at once:
    FailedCreate (the ReplicaSet/StatefulSet/DaemonSet cannot create pods, e.g. a missing
    ServiceAccount), FailedScheduling (no node fits a pod), FailedMount (a pod's
    ConfigMap/Secret volume is missing).
    """
    failure = _cond(workload, "ReplicaFailure")
    if failure is not None and failure.get("status") == "True":
        return str(failure.get("reason") or "FailedCreate"), str(failure.get("message") or "")
    uid = (workload.get("metadata") or {}).get("uid", "")
    created = _latest(events, uid, {"FailedCreate"}) if uid else None
    if created is not None and not pods:
        return "FailedCreate", str(created.get("message") or "")
    for pod in sorted(pods, key=lambda p: (p.get("metadata") or {}).get("name", "")):
        meta = pod.get("metadata") or {}
        scheduled = _cond(pod, "PodScheduled")
        if scheduled and scheduled.get("status") == "False":
            msg = scheduled.get("message") or scheduled.get("reason") or ""
            return "FailedScheduling", f"pod {meta.get('name')}: {msg}"
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        started = any("running" in (cs.get("state") or {}) for cs in statuses)
        mount = _latest(events, meta.get("uid", ""), {"FailedMount"})
        if mount is not None and not started:
            return "FailedMount", f"pod {meta.get('name')}: {mount.get('message') or ''}"
    return None


def _image_ids(pods: list[Mapping[str, Any]]) -> list[str]:
    out = set()
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            if cs.get("imageID") and "running" in (cs.get("state") or {}):
                out.add(str(cs["imageID"]).removeprefix("docker-pullable://"))
    return sorted(out)


def _workload_progress(workload: Mapping[str, Any]) -> tuple[bool, str, int, int]:
    """(complete, why-not, ready, desired) by kubectl's rollout-status rules per kind."""
    kind = workload.get("kind")
    meta = workload.get("metadata") or {}
    spec = workload.get("spec") or {}
    status = workload.get("status") or {}
    generation = int(meta.get("generation") or 0)
    observed = int(status.get("observedGeneration") or 0)
    if kind == "DaemonSet":
        desired = int(status.get("desiredNumberScheduled") or 0)
        ready = int(status.get("numberReady") or 0)
        if observed < generation:
            return False, "waiting for the controller to observe the new spec", ready, desired
        updated = int(status.get("updatedNumberScheduled") or 0)
        available = int(status.get("numberAvailable") or 0)
        if updated < desired:
            return False, f"{updated} of {desired} updated pods scheduled", ready, desired
        if available < desired:
            return False, f"{available} of {desired} updated pods available", ready, desired
        return True, "", ready, desired
    desired = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
    ready = int(status.get("readyReplicas") or 0)
    if observed < generation:
        return False, "waiting for the controller to observe the new spec", ready, desired
    updated = int(status.get("updatedReplicas") or 0)
    if kind == "StatefulSet":
        strategy = (spec.get("updateStrategy") or {}).get("type", "RollingUpdate")
        if strategy == "OnDelete":
            return ready >= desired, f"{ready} of {desired} ready", ready, desired
        if ready < desired:
            return False, f"{ready} of {desired} pods ready", ready, desired
        if updated < desired:
            return False, f"{updated} of {desired} pods updated", ready, desired
        cur, upd = status.get("currentRevision"), status.get("updateRevision")
        if cur and upd and cur != upd:
            return False, "waiting for the update to finish", ready, desired
        return True, "", ready, desired
    replicas = int(status.get("replicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    if updated < desired:
        return False, f"{updated} of {desired} new replicas updated", ready, desired
    if replicas > updated:
        return False, f"{replicas - updated} old replicas pending termination", ready, desired
    if available < updated:
        return False, f"{available} of {updated} updated replicas available", ready, desired
    return True, "", ready, desired


def evaluate_rollout(
    workload: Mapping[str, Any] | None,
    pods: list[Mapping[str, Any]],
    digest: str | None = None,
    events: list[Mapping[str, Any]] | None = None,
) -> RolloutStatus:
    """Judge a rollout from the workload object, its pods and Warning events (no I/O).

    Order matters: a new pod stuck in a fail-fast waiting reason fails at once (even
    while the rollout is still progressing), then ProgressDeadlineExceeded, then the
    rollout-status rules, then the digest check on the complete rollout. A progressing
    rollout whose pods cannot be created, scheduled or mounted carries that reason
    (FailedCreate, FailedScheduling, FailedMount), which a timeout then reports.
    """
    if workload is None:
        return RolloutStatus(state="progressing", reason="NotFound", message="workload not found")
    current = [p for p in pods if _is_current(p, workload)]
    images = _image_ids(current) or _template_images(workload)
    for pod in sorted(current, key=lambda p: (p.get("metadata") or {}).get("name", "")):
        failure = _waiting_failure(pod)
        if failure is not None:
            complete, _, ready, desired = _workload_progress(workload)
            return RolloutStatus(
                state="failed",
                reason=failure[0],
                message=failure[1],
                ready=ready,
                desired=desired,
                images=images,
            )
    complete, why, ready, desired = _workload_progress(workload)
    progressing = _cond(workload, "Progressing")
    if progressing is not None and progressing.get("reason") == "ProgressDeadlineExceeded":
        return RolloutStatus(
            state="failed",
            reason="ProgressDeadlineExceeded",
            message=str(progressing.get("message") or "progress deadline exceeded"),
            ready=ready,
            desired=desired,
            images=images,
        )
    if not complete:
        blocker = _blocker(workload, current, events or [])
        return RolloutStatus(
            state="progressing",
            reason=blocker[0] if blocker else "Progressing",
            message=f"{why}; {blocker[0]}: {blocker[1]}" if blocker else why,
            ready=ready,
            desired=desired,
            images=images,
        )
    if digest is not None:
        running = [
            p
            for p in current
            if (p.get("status") or {}).get("phase") == "Running" and _image_ids([p])
        ]
        if len(running) < desired:
            # The workload's status can arrive before its pods' (two watch streams).
            return RolloutStatus(
                state="progressing",
                reason="Progressing",
                message=f"waiting for {desired - len(running)} pods to report their image",
                ready=ready,
                desired=desired,
                images=images,
            )
        wrong = [
            (p.get("metadata") or {}).get("name", "")
            for p in running
            if not any(i.endswith("@" + digest) for i in _image_ids([p]))
        ]
        if wrong:
            return RolloutStatus(
                state="failed",
                reason="DigestMismatch",
                message=f"pods {', '.join(sorted(wrong))} do not run {digest}; "
                f"they run {', '.join(images)}",
                ready=ready,
                desired=desired,
                images=images,
            )
    return RolloutStatus(state="healthy", ready=ready, desired=desired, images=images)


# --- the watch loop (I/O) -------------------------------------------------------------------


class _Pump(threading.Thread):
    """Feeds one collection's watch events into a queue; relists after a drop or 410."""

    def __init__(
        self,
        kube: KubeClient,
        tag: str,
        path: str,
        query: dict[str, str],
        rv: str,
        out: queue.Queue[tuple[str, JSON]],
        deadline: float,
    ) -> None:
        super().__init__(name=f"verify-watch-{tag}", daemon=True)
        self.kube, self.tag, self.path, self.query, self.rv = kube, tag, path, query, rv
        self.out, self.deadline = out, deadline
        self.stopped = threading.Event()
        self._raw: Any = None

    def stop(self) -> None:
        self.stopped.set()
        raw = self._raw
        if raw is not None:
            try:
                raw.shutdown()
            except Exception:  # noqa: BLE001, S110 - best effort: the thread is a daemon
                pass

    def _open(self, raw: Any) -> None:
        self._raw = raw
        if self.stopped.is_set():
            self.stop()

    def run(self) -> None:
        backoff = 0.1
        while not self.stopped.is_set():
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                for event in self.kube.watch(
                    self.path, self.query, self.rv, min(remaining + 1, 60), self._open
                ):
                    backoff = 0.1
                    rv = ((event.get("object") or {}).get("metadata") or {}).get("resourceVersion")
                    if rv:
                        self.rv = str(rv)
                    if event.get("type") != "BOOKMARK":
                        self.out.put((self.tag, event))
            except (TransientError, PermanentError) as exc:
                if self.stopped.is_set():
                    return
                if isinstance(exc, PermanentError) and not exc.message.startswith("410"):
                    self.out.put((self.tag, {"type": "FAILED", "error": exc}))
                    return
                time.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                try:
                    items, self.rv = self.kube.list(self.path, self.query)
                except (TransientError, PermanentError) as list_exc:
                    if isinstance(list_exc, PermanentError):
                        self.out.put((self.tag, {"type": "FAILED", "error": list_exc}))
                        return
                    continue
                self.out.put((self.tag, {"type": "RELIST", "items": items}))
            except Exception as exc:  # noqa: BLE001 - hand any bug to the waiting thread
                if not self.stopped.is_set():
                    self.out.put((self.tag, {"type": "FAILED", "error": exc}))
                return


def require_namespace(kube: KubeClient, namespace: str, workload: str) -> None:
    """ConfigError naming ``namespace`` when the cluster has no such namespace.

    A workload can appear after verification starts (a sync still applying), but its
    namespace missing is a mistake no wait can fix: the API answers a list in a missing
    namespace with an empty one, so without this check the whole timeout would pass.
    """
    if kube.get(f"/api/v1/namespaces/{namespace}") is None:
        raise ConfigError(
            f"namespace {namespace!r} does not exist in the cluster (verifying {workload})"
        )


def watch_rollout(
    kube: KubeClient,
    config: VerifyConfig,
    *,
    progress: Callable[[RolloutStatus], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> VerifyResult:
    """Watch the workload and its pods until the rollout is healthy, failed or late.

    One GET of the workload and one LIST of its pods, then two watches; every event
    re-runs :func:`evaluate_rollout`. Returns a :class:`VerifyResult` (never raises for
    an unhealthy rollout; API errors that retrying cannot fix do raise).
    """
    start = clock()
    deadline = start + config.timeout_seconds
    resource = kube.resource("apps/v1", config.kind)
    wpath = resource.path(config.namespace)
    wquery = {"fieldSelector": f"metadata.name={config.name}"}
    workloads, wrv = kube.list(wpath, wquery)
    workload: JSON | None = workloads[0] if workloads else None
    if workload is not None:
        workload.setdefault("kind", config.kind)
    else:
        require_namespace(kube, config.namespace, config.workload)
    pods: dict[str, JSON] = {}
    events: queue.Queue[tuple[str, JSON]] = queue.Queue()
    pumps: list[_Pump] = []
    selector = ""
    warnings: dict[str, JSON] = {}  # Warning events in the namespace (reasons to name)
    epath = f"/api/v1/namespaces/{config.namespace}/events"
    equery = {"fieldSelector": "type=Warning"}
    try:
        items, erv = kube.list(epath, equery)
    except PermanentError:  # e.g. no RBAC for events: verify without them
        erv = ""
    else:
        warnings.update({e["metadata"]["name"]: e for e in items})
        epump = _Pump(kube, "events", epath, equery, erv, events, deadline)
        pumps.append(epump)
        epump.start()

    def start_pod_watch() -> None:
        nonlocal selector
        selector = label_selector((workload or {}).get("spec", {}).get("selector"))
        if not selector:
            return
        ppath = f"/api/v1/namespaces/{config.namespace}/pods"
        items, prv = kube.list(ppath, {"labelSelector": selector})
        pods.clear()
        pods.update({p["metadata"]["name"]: p for p in items})
        pump = _Pump(kube, "pods", ppath, {"labelSelector": selector}, prv, events, deadline)
        pumps.append(pump)
        pump.start()

    wpump = _Pump(kube, "workload", wpath, wquery, wrv, events, deadline)
    pumps.append(wpump)
    wpump.start()
    if workload is not None:
        start_pod_watch()
    healthy_at: float | None = None
    status = evaluate_rollout(workload, list(pods.values()), config.digest, list(warnings.values()))
    try:
        while True:
            if progress is not None:
                progress(status)
            now = clock()
            if status.state == "failed":
                if healthy_at is not None and status.reason:
                    status = status.model_copy(
                        update={"message": f"regressed after being healthy: {status.message}"}
                    )
                return _result(status, config, now - start)
            if status.state == "healthy":
                healthy_at = healthy_at if healthy_at is not None else now
                if now - healthy_at >= config.stable_seconds:
                    return _result(status, config, now - start)
            elif healthy_at is not None:
                status = RolloutStatus(
                    state="failed",
                    reason="Degraded",
                    message=f"regressed after being healthy: {status.message}",
                    ready=status.ready,
                    desired=status.desired,
                    images=status.images,
                )
                continue
            wait = deadline - now
            if healthy_at is not None:
                wait = min(wait, healthy_at + config.stable_seconds - now)
            if wait <= 0:
                reason = "Timeout" if status.reason in (None, "Progressing") else status.reason
                timed_out = status.model_copy(
                    update={
                        "state": "failed",
                        "reason": reason,
                        "message": f"not healthy after {config.timeout_seconds:g}s: "
                        f"{status.message}",
                    }
                )
                return _result(timed_out, config, clock() - start)
            try:
                tag, event = events.get(timeout=wait)
            except queue.Empty:
                continue
            batch = [(tag, event)]
            while True:  # coalesce a burst of events into one judgement
                try:
                    batch.append(events.get_nowait())
                except queue.Empty:
                    break
            for tag, event in batch:
                kind = event.get("type")
                if tag == "events":
                    if kind == "RELIST":
                        warnings = {e["metadata"]["name"]: e for e in event["items"]}
                    elif kind == "DELETED":
                        warnings.pop(event["object"]["metadata"]["name"], None)
                    elif kind != "FAILED":  # events are a help, never a reason to stop
                        warnings[event["object"]["metadata"]["name"]] = event["object"]
                    continue
                if kind == "FAILED":
                    raise event["error"]
                if tag == "workload":
                    if kind == "RELIST":
                        items = event["items"]
                        workload = items[0] if items else None
                    elif kind == "DELETED":
                        workload = None
                    else:
                        workload = event["object"]
                    if workload is not None:
                        workload.setdefault("kind", config.kind)
                        if not selector:
                            start_pod_watch()
                elif kind == "RELIST":
                    pods.clear()
                    pods.update({p["metadata"]["name"]: p for p in event["items"]})
                elif kind == "DELETED":
                    pods.pop(event["object"]["metadata"]["name"], None)
                else:
                    pods[event["object"]["metadata"]["name"]] = event["object"]
            status = evaluate_rollout(
                workload, list(pods.values()), config.digest, list(warnings.values())
            )
    finally:
        for pump in pumps:
            pump.stop()


def _result(status: RolloutStatus, config: VerifyConfig, seconds: float) -> VerifyResult:
    healthy = status.state == "healthy"
    return VerifyResult(
        healthy=healthy,
        reason=None if healthy else status.reason,
        message=status.message,
        ready=status.ready,
        desired=status.desired,
        images=status.images,
        seconds=seconds,
        workload=config.workload,
        namespace=config.namespace,
    )


def run_verify(
    api_client: Any,
    config: VerifyConfig,
    *,
    progress: Callable[[RolloutStatus], None] | None = None,
    fail: bool = True,
) -> VerifyResult:
    """Verify through ``api_client`` (a kubernetes ``ApiClient``); PolicyError when
    unhealthy and ``fail`` (the CLI passes ``fail=False`` and reports instead)."""
    result = watch_rollout(KubeClient(api_client), config, progress=progress)
    if fail and not result.healthy:
        raise PolicyError(
            f"{config.workload} in {config.namespace} is not healthy: {result.reason}: "
            f"{result.message}"
        )
    return result
