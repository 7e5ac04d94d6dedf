"""CronJob schedules and the CronJob controller."""

from __future__ import annotations

import datetime as dt

import pytest
from kubernetes import client
from simcluster import cron

from tests.fixtures.simcluster import SimClusterHandle
from tests.simcluster.helpers import eventually

T0 = dt.datetime(2026, 1, 5, 10, 7, 30, tzinfo=dt.UTC)  # a Monday


def test_next_after() -> None:
    assert cron.next_after("*/15 * * * *", T0) == T0.replace(minute=15, second=0)
    assert cron.next_after("@hourly", T0) == T0.replace(hour=11, minute=0, second=0)
    assert cron.next_after("0 9 * * 0", T0) == dt.datetime(2026, 1, 11, 9, 0, tzinfo=dt.UTC)
    assert cron.next_after("30 2 1 2 *", T0) == dt.datetime(2026, 2, 1, 2, 30, tzinfo=dt.UTC)
    assert cron.last_due("* * * * *", T0 - dt.timedelta(minutes=5), T0) == T0.replace(second=0)


@pytest.mark.parametrize("bad", ["* * *", "61 * * * *", "*/0 * * * *", "a b c d e"])
def test_invalid_schedules(bad: str) -> None:
    with pytest.raises(cron.CronError):
        cron.parse(bad)


def test_cronjob_creates_job_for_missed_schedule(
    sim_cluster: SimClusterHandle, sim_namespace: str
) -> None:
    batch = client.BatchV1Api(sim_cluster.api_client())
    pod = {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1.36"}]}
    body = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "nightly"},
        "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": pod}}}},
    }
    batch.create_namespaced_cron_job(sim_namespace, body)
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    batch.patch_namespaced_cron_job_status(
        "nightly", sim_namespace, {"status": {"lastScheduleTime": past}}
    )

    def jobs() -> list[client.V1Job]:
        return [
            j
            for j in batch.list_namespaced_job(sim_namespace).items
            if j.metadata.name.startswith("nightly-")
        ]

    eventually(lambda: jobs())
    job = jobs()[0]
    assert job.metadata.owner_references[0].kind == "CronJob"
    assert "batch.kubernetes.io/cronjob-scheduled-timestamp" in job.metadata.annotations
    eventually(
        lambda: (
            batch.read_namespaced_cron_job("nightly", sim_namespace).status.last_successful_time
        ),
        timeout=10,
    )
