"""The pure derivation Shipyard events -> delivery ledger (shipyard.core.ledger_events)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from shipyard.core.errors import ConfigError, PermanentError, PolicyError, TransientError
from shipyard.core.ledger import parse_records
from shipyard.core.ledger_events import (
    blocked_attempts,
    blocked_cause,
    derive_records,
    pending_changes,
)

T0 = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)
_ids = itertools.count()


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def event(name: str, minute: float, **payload: Any) -> dict[str, Any]:
    """A Prefect event as the events API returns it."""
    app, env = payload.get("app", "cart"), payload.get("environment", "dev")
    cluster = payload.pop("related_cluster", None)
    related = (
        [
            {
                "prefect.resource.id": f"shipyard.cluster.{cluster}",
                "prefect.resource.role": "cluster",
                "prefect.resource.name": cluster,
            }
        ]
        if cluster
        else []
    )
    return {
        "id": f"e{next(_ids)}",
        "occurred": at(minute).isoformat(),
        "event": name,
        "resource": {"prefect.resource.id": f"shipyard.delivery.{app}.{env}"},
        "related": related,
        "payload": payload,
    }


def delivered(minute: float, **kw: Any) -> dict[str, Any]:
    kw.setdefault("app", "cart")
    kw.setdefault("environment", "dev")
    kw.setdefault("cluster", "eu-1")
    kw.setdefault("outcome", "delivered")
    kw.setdefault("digest", "sha256:" + "a" * 64)
    kw.setdefault("deployed_at", at(minute).isoformat())
    return event("shipyard.delivery.completed", minute, **kw)


def failed(minute: float, **kw: Any) -> dict[str, Any]:
    kw.setdefault("app", "cart")
    kw.setdefault("environment", "dev")
    kw.setdefault("cluster", "eu-1")
    kw.setdefault("digest", "sha256:" + "b" * 64)
    kw.setdefault("reason", "not healthy")
    kw.setdefault("commit", "c0ffee")
    return event("shipyard.delivery.failed", minute, **kw)


def test_succeeded_delivery_is_one_record_with_its_times() -> None:
    (record,) = derive_records(
        [
            event("shipyard.delivery.started", 0, app="cart", environment="dev", flow_run="r1"),
            delivered(
                12,
                change_time="2026-11-01T09:30:00Z",
                source_commit="5f3a2c1",
                flow_run="r1",
            ),
        ]
    )
    assert (record.app, record.environment, record.cluster) == ("cart", "dev", "eu-1")
    assert record.outcome == "succeeded" and record.cause is None and record.restored_at is None
    assert record.change_time == datetime(2026, 11, 1, 9, 30, tzinfo=UTC)
    assert record.deployed_at == at(12)
    assert (record.source_commit, record.flow_run) == ("5f3a2c1", "r1")
    # the JSON Lines round trip of deliveries export
    assert list(parse_records([record.to_json()])) == [record]


def test_already_delivered_is_no_deployment() -> None:
    assert derive_records([delivered(5, outcome="already delivered")]) == []


def test_rolled_back_delivery_is_failed_and_restored_by_its_rollback() -> None:
    (record,) = derive_records([failed(20, deployed_at=at(15).isoformat(), cause="verify")])
    assert record.outcome == "failed" and record.cause == "verify"
    assert record.deployed_at == at(15)
    assert record.restored_at == at(20)  # the rollback was verified healthy when emitted


def test_failed_rollback_stays_open_until_the_next_healthy_verification() -> None:
    records = derive_records(
        [
            failed(10, rollback_error="previous version is not healthy", cause="sync"),
            delivered(30, environment="prod"),  # another environment: restores nothing
            delivered(40, cluster="us-1"),  # another cluster: restores nothing
            delivered(55, outcome="already delivered"),  # healthy again, no record
        ]
    )
    assert [(r.environment, r.cluster, r.outcome) for r in records] == [
        ("dev", "eu-1", "failed"),
        ("prod", "eu-1", "succeeded"),
        ("dev", "us-1", "succeeded"),
    ]
    assert records[0].cause == "sync" and records[0].restored_at == at(55)


def test_next_successful_delivery_restores_every_open_failure() -> None:
    records = derive_records(
        [
            failed(10, rollback_error="x"),
            failed(20, rollback_error="y"),
            delivered(50),
        ]
    )
    assert [r.restored_at for r in records] == [at(50), at(50), None]


def test_clusters_are_separate_series_even_from_the_related_resource() -> None:
    records = derive_records(
        [
            failed(10, rollback_error="x", cluster=None, related_cluster="eu-1"),
            delivered(20, cluster=None, related_cluster="us-1"),
            delivered(30, cluster=None, related_cluster="eu-1"),
        ]
    )
    assert [(r.cluster, r.outcome) for r in records] == [
        ("eu-1", "failed"),
        ("us-1", "succeeded"),
        ("eu-1", "succeeded"),
    ]
    assert records[0].restored_at == at(30)


def test_promotion_inherits_the_change_time_of_its_digest() -> None:
    digest = "sha256:" + "c" * 64
    records = derive_records(
        [
            delivered(10, digest=digest, change_time=at(-60).isoformat()),
            delivered(100, environment="prod", digest=digest),
        ]
    )
    assert [r.change_time for r in records] == [at(-60), at(-60)]


def test_old_events_without_ledger_keys_still_derive() -> None:
    """Events from before the ledger keys: times from verified_at, or occurred."""
    legacy = event(
        "shipyard.delivery.completed",
        9,
        app="cart",
        environment="dev",
        digest="sha256:" + "d" * 64,
        outcome="delivered",
        verified_at="2026-11-01T10:08:00+00:00",
    )
    legacy_failed = event("shipyard.delivery.failed", 30, digest="sha256:" + "e" * 64)
    legacy_failed["payload"].pop("app", None)  # app and environment from the resource id
    first, second = derive_records([legacy, legacy_failed])
    assert (first.deployed_at, first.cluster) == (at(8), None)
    assert (second.app, second.environment, second.cause) == ("cart", "dev", "verify")
    assert second.deployed_at == at(30)


def test_duplicate_events_count_once_and_other_events_are_ignored() -> None:
    one = delivered(5)
    noise = event("shipyard.drift.detected", 6)
    assert len(derive_records([one, dict(one), noise])) == 1


def test_blocked_attempts_are_not_deployments() -> None:
    blocked = event(
        "shipyard.delivery.blocked", 3, app="cart", environment="dev", cause="scan", reason="CVE"
    )
    assert derive_records([blocked]) == []
    (attempt,) = blocked_attempts([blocked, delivered(9)])
    assert (attempt.app, attempt.environment, attempt.cause, attempt.at) == (
        "cart",
        "dev",
        "scan",
        at(3),
    )


def test_blocked_cause_maps_errors_to_steps() -> None:
    assert blocked_cause("build", ConfigError("no source")) == "config"
    assert blocked_cause("build", PolicyError("HIGH found")) == "scan"
    assert blocked_cause("scan", PolicyError("HIGH found")) == "scan"
    assert blocked_cause("push", TransientError("registry down")) == "infrastructure"
    assert blocked_cause("gitops", PermanentError("rejected")) == "gitops"
    assert blocked_cause("somewhere", RuntimeError("?")) == "infrastructure"


def test_pending_change_waits_from_push_until_its_attempt_ends() -> None:
    digest = "sha256:" + "f" * 64
    push = {
        "id": "push-1",
        "occurred": at(1).isoformat(),
        "event": "registry.image.pushed",
        "resource": {"prefect.resource.id": "oci.image.reg/shop/cart"},
        "related": [],
        "payload": {"app": "cart", "digest": digest, "change_time": at(0).isoformat()},
    }
    started = event(
        "shipyard.delivery.started",
        2,
        app="cart",
        environment="dev",
        digest=digest,
        flow_run="r1",
        trigger="registry-push:distribution:push-1",
    )
    # before any delivery of the app: the environment is not known yet
    assert pending_changes([push]) == {("cart", ""): at(0)}
    assert pending_changes([push, started]) == {("cart", "dev"): at(0)}
    done = delivered(9, digest=digest, flow_run="r1")
    assert pending_changes([push, started, done]) == {}
    # the next push of the app waits in the environment its pushes go to
    nxt = dict(push, id="push-2", occurred=at(20).isoformat())
    nxt["payload"] = {
        "app": "cart",
        "digest": "sha256:" + "9" * 64,
        "pushed_at": at(19).isoformat(),
    }
    assert pending_changes([push, started, done, nxt]) == {("cart", "dev"): at(19)}


def test_crashed_attempt_stops_waiting_when_a_later_one_ends() -> None:
    crashed = event("shipyard.delivery.started", 0, app="cart", environment="dev", flow_run="r1")
    later = event("shipyard.delivery.started", 30, app="cart", environment="dev", flow_run="r2")
    queued = event("shipyard.delivery.started", 31, app="cart", environment="dev", flow_run="r3")
    assert pending_changes([crashed, later, queued]) == {("cart", "dev"): at(0)}
    blocked = event(
        "shipyard.delivery.blocked", 40, app="cart", environment="dev", flow_run="r2", cause="scan"
    )
    # r1 (older) is superseded, r3 (started after r2) still waits
    assert pending_changes([crashed, later, queued, blocked]) == {("cart", "dev"): at(31)}


# --- properties -----------------------------------------------------------------------

_kind = st.sampled_from(["ok", "already", "rolled-back", "rollback-failed", "blocked"])
_target = st.tuples(st.sampled_from(["cart", "orders"]), st.sampled_from(["dev", "prod"]))
_story = st.lists(st.tuples(_kind, _target, st.sampled_from(["eu-1", "us-1"])), max_size=30)


def _events(story: list[tuple[str, tuple[str, str], str]]) -> list[dict[str, Any]]:
    out = []
    for minute, (kind, (app, env), cluster) in enumerate(story):
        common = {"app": app, "environment": env, "cluster": cluster}
        if kind in ("ok", "already"):
            out.append(
                delivered(
                    minute, outcome="delivered" if kind == "ok" else "already delivered", **common
                )
            )
        elif kind == "blocked":
            out.append(event("shipyard.delivery.blocked", minute, cause="build", **common))
        else:
            extra = {"rollback_error": "boom"} if kind == "rollback-failed" else {}
            out.append(failed(minute, **common, **extra))
    return out


@settings(max_examples=200, deadline=None)
@given(_story)
def test_properties_of_the_ledger(story: list[tuple[str, tuple[str, str], str]]) -> None:
    events = _events(story)
    records = derive_records(events)
    # one record per deployment: succeeded and failed attempts, nothing else
    assert len(records) == sum(k in ("ok", "rolled-back", "rollback-failed") for k, *_ in story)
    assert [r.deployed_at for r in records] == sorted(r.deployed_at for r in records)
    for record in records:
        assert (record.outcome == "failed") == (record.cause is not None)
        if record.restored_at is not None:
            assert record.outcome == "failed" and record.restored_at >= record.deployed_at
        if record.outcome == "failed" and record.restored_at is None:
            # open only while nothing healthy followed on the same target
            key = (record.app, record.environment, record.cluster)
            later = [
                k
                for minute, (k, (a, e), c) in enumerate(story)
                if (a, e, c) == key and at(minute) > record.deployed_at
            ]
            assert not {"ok", "already"} & set(later)
    # order of arrival does not matter
    assert derive_records(list(reversed(events))) == records
