"""The Job controller: runs a Job's pods to completion.

It keeps up to ``parallelism`` pods running until ``completions`` have succeeded, and
finishes the Job as Complete, or as Failed past ``backoffLimit`` or
``activeDeadlineSeconds``, with the conditions and counts ``kubectl wait`` and clients
read. Suspending a Job deletes its running pods.
"""

from __future__ import annotations

import time
from collections.abc import Hashable
from typing import Any

from simcluster.clock import now_iso, parse_iso
from simcluster.controllers.base import (
    CONTROLLER_MANAGER,
    owned_by,
    set_condition,
    write_status,
)
from simcluster.controllers.pods import PodController, pod_active, pod_ready

JSON = dict[str, Any]


def job_finished(job: JSON) -> str | None:
    """``"Complete"`` or ``"Failed"`` once the Job has finished so, else None."""
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return str(c["type"])
    return None


def _set_true(
    conditions: list[JSON], ctypes: tuple[str, ...], reason: str, message: str, now: str
) -> list[JSON]:
    """``conditions`` with each of ``ctypes`` set True for the same reason."""
    for ctype in ctypes:
        conditions = set_condition(conditions, ctype, "True", reason, message, now)
    return conditions


class JobController(PodController):
    """Runs Job pods to completion; sets succeeded/failed counts and Complete/Failed."""

    name = "job"
    component = "job-controller"
    resource = ("batch", "jobs")
    kind = "Job"

    def reconcile(self, key: Hashable) -> None:
        job = self.live(key)
        if job is None:
            return
        spec = job["spec"]
        old = job.get("status") or {}
        conditions = [dict(c) for c in old.get("conditions") or []]
        finished = job_finished(job) is not None
        pods = owned_by(self.store, self.pods_rt(), job)
        succeeded = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Succeeded")
        failed = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Failed")
        active = [p for p in pods if pod_active(p)]
        now = now_iso()
        completions = int(spec.get("completions") or 1)
        status: JSON = {k: v for k, v in old.items() if k in ("startTime", "completionTime")}
        status.setdefault("startTime", now)
        if not finished:
            deadline = spec.get("activeDeadlineSeconds")
            elapsed = time.time() - parse_iso(status["startTime"])
            if succeeded >= completions:
                conditions = _set_true(
                    conditions,
                    ("SuccessCriteriaMet", "Complete"),
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                    now,
                )
                status["completionTime"] = now
                finished = True
            elif failed > int(spec.get("backoffLimit", 6)):
                conditions = _set_true(
                    conditions,
                    ("FailureTarget", "Failed"),
                    "BackoffLimitExceeded",
                    "Job has reached the specified backoff limit",
                    now,
                )
                finished = True
            elif deadline is not None and elapsed >= float(deadline):
                conditions = _set_true(
                    conditions,
                    ("FailureTarget", "Failed"),
                    "DeadlineExceeded",
                    "Job was active longer than specified deadline",
                    now,
                )
                finished = True
            elif spec.get("suspend"):
                for p in active:
                    self.delete_pod(p)
                active = []
                conditions = set_condition(
                    conditions, "Suspended", "True", "JobSuspended", "Job suspended", now
                )
            else:
                if deadline is not None:
                    self.enqueue_after(key, float(deadline) - elapsed + 0.05)
                want = min(int(spec.get("parallelism", 1)), completions - succeeded) - len(active)
                for _ in range(max(0, want)):
                    if self.create_pod(job, spec.get("template") or {}, {}) is not None:
                        self.enqueue_after(key, max(1.0, self.config.schedule_retry))
                        break
                active = self.active_pods(job)
        if finished:
            for p in active:
                self.delete_pod(p)
            active = []
        status.update(
            active=len(active),
            succeeded=succeeded,
            failed=failed,
            ready=sum(1 for p in active if pod_ready(p)),
            terminating=0,
        )
        status["uncountedTerminatedPods"] = {}
        for f in ("active", "succeeded", "failed"):
            if not status[f]:
                status.pop(f)
        if conditions:
            status["conditions"] = conditions
        write_status(self.store, self.primary_rt(), job, status, CONTROLLER_MANAGER)
