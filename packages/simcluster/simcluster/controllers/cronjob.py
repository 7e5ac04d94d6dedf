"""The CronJob controller: creates Jobs from CronJobs on their schedule (UTC).

It honours ``concurrencyPolicy`` (Allow, Forbid, Replace), ``startingDeadlineSeconds``
and ``suspend``, lists running Jobs in ``status.active``, prunes finished Jobs past the
history limits, and wakes itself for the next scheduled time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Hashable
from typing import Any

from simcluster import cron, events
from simcluster.clock import parse_iso
from simcluster.controllers.base import (
    CONTROLLER_MANAGER,
    OwnerController,
    owned_by,
    owner_ref,
    write_status,
)
from simcluster.controllers.job import job_finished
from simcluster.errors import ApiError
from simcluster.store import clone

JSON = dict[str, Any]


class CronJobController(OwnerController):
    """Creates Jobs from CronJobs on schedule (UTC), with concurrency and history limits."""

    name = "cronjob"
    component = "cronjob-controller"
    resource = ("batch", "cronjobs")
    kind = "CronJob"
    owns = ("batch", "jobs")

    def reconcile(self, key: Hashable) -> None:
        cj_rt, job_rt = self.primary_rt(), self.rt("batch", "jobs")
        cj = self.live(key)
        if cj is None:
            return
        ns = cj["metadata"]["namespace"]
        spec = cj.get("spec") or {}
        status: JSON = {k: v for k, v in (cj.get("status") or {}).items() if k != "active"}
        jobs = owned_by(self.store, job_rt, cj)
        active = [j for j in jobs if not job_finished(j)]
        now = dt.datetime.now(dt.UTC)
        since = parse_iso(status.get("lastScheduleTime") or cj["metadata"]["creationTimestamp"])
        after = max(dt.datetime.fromtimestamp(since, dt.UTC), now - dt.timedelta(days=7))
        try:
            due = cron.last_due(str(spec.get("schedule", "")), after, now)
            upcoming = cron.next_after(str(spec.get("schedule", "")), now)
        except cron.CronError as exc:
            events.record(self.store, cj, "Warning", "InvalidSchedule", str(exc), self.component)
            return
        deadline = spec.get("startingDeadlineSeconds")
        too_late = (
            due is not None and deadline is not None and (now - due).total_seconds() > deadline
        )
        if due is not None and not spec.get("suspend") and not too_late:
            policy = spec.get("concurrencyPolicy", "Allow")
            if policy == "Forbid" and active:
                due = None
            elif policy == "Replace":
                for j in active:
                    self.store.delete(job_rt, ns, j["metadata"]["name"], propagation="Background")
                active = []
        if due is not None and not spec.get("suspend") and not too_late:
            job = self._create_job(cj, due)
            if job is not None:
                active.append(job)
            status["lastScheduleTime"] = due.strftime("%Y-%m-%dT%H:%M:%SZ")
        succeeded = [j for j in jobs if job_finished(j) == "Complete"]
        if succeeded:
            latest = max(str((j.get("status") or {}).get("completionTime", "")) for j in succeeded)
            if latest:
                status["lastSuccessfulTime"] = latest
        if active:
            status["active"] = [
                {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "name": j["metadata"]["name"],
                    "namespace": ns,
                    "uid": j["metadata"]["uid"],
                }
                for j in active
            ]
        self._prune(jobs, "Complete", int(spec.get("successfulJobsHistoryLimit", 3)))
        self._prune(jobs, "Failed", int(spec.get("failedJobsHistoryLimit", 1)))
        write_status(self.store, cj_rt, cj, status, CONTROLLER_MANAGER)
        if upcoming is not None:
            self.enqueue_after(key, (upcoming - now).total_seconds() + 0.5)

    def _create_job(self, cj: JSON, due: dt.datetime) -> JSON | None:
        template = (cj.get("spec") or {}).get("jobTemplate") or {}
        meta_t = template.get("metadata") or {}
        name = f"{cj['metadata']['name']}-{int(due.timestamp() // 60)}"
        annotations = {
            **(meta_t.get("annotations") or {}),
            "batch.kubernetes.io/cronjob-scheduled-timestamp": due.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        body = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": name,
                "labels": dict(meta_t.get("labels") or {}),
                "annotations": annotations,
                "ownerReferences": [owner_ref(cj)],
            },
            "spec": clone(template.get("spec") or {}),
        }
        try:
            job = self.store.create(
                self.rt("batch", "jobs"),
                body,
                cj["metadata"]["namespace"],
                manager=CONTROLLER_MANAGER,
            )
        except ApiError as exc:
            if exc.code != 409:
                events.record(
                    self.store, cj, "Warning", "FailedCreate", exc.message, self.component
                )
            return None
        events.record(
            self.store, cj, "Normal", "SuccessfulCreate", f"Created job {name}", self.component
        )
        return job

    def _prune(self, jobs: list[JSON], outcome: str, keep: int) -> None:
        done = sorted(
            (j for j in jobs if job_finished(j) == outcome),
            key=lambda j: j["metadata"]["creationTimestamp"],
        )
        for j in done[: max(0, len(done) - keep)]:
            self.delete_quietly(self.rt("batch", "jobs"), j, propagation="Background")
