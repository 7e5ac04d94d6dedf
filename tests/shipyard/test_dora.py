"""The DORA figures of :mod:`shipyard.core.dora`: every definition of issue 16 by hand,
empty windows, the window's boundaries, bands at their cut-offs, breakdowns,
comparisons, and properties over generated ledgers."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shipyard.core.dora import (
    FIGURE_KEYS,
    band_change_failure_rate,
    band_deployment_frequency,
    band_lead_time,
    band_time_to_restore,
    breakdown,
    cause_shares,
    compare,
    compute,
    default_window,
    platform_score,
)
from shipyard.core.errors import ConfigError
from shipyard.core.ledger import DeliveryRecord

T0 = datetime(2026, 11, 1, tzinfo=UTC)
T1 = T0 + timedelta(days=10)
H = timedelta(hours=1)


def rec(
    at: datetime,
    outcome: str = "succeeded",
    *,
    app: str = "cart",
    environment: str = "prod",
    lead: timedelta | None = H,
    restored: timedelta | None = None,
    cause: str | None = None,
) -> DeliveryRecord:
    return DeliveryRecord.model_validate(
        {
            "app": app,
            "environment": environment,
            "outcome": outcome,
            "deployed_at": at,
            "change_time": at - lead if lead is not None else None,
            "restored_at": at + restored if restored is not None else None,
            "cause": cause if outcome == "failed" else None,
        }
    )


# --- the definitions, by hand ------------------------------------------------------------


def test_every_figure_by_hand() -> None:
    records = [
        rec(T0 + 1 * H, lead=2 * H),
        rec(T0 + 5 * H, lead=4 * H),
        rec(T0 + 9 * H, lead=9 * H),
        rec(T0 + 20 * H, "failed", restored=timedelta(minutes=30), cause="verify"),
        rec(T0 + 30 * H, "failed", restored=timedelta(minutes=90), cause="sync"),
        rec(T0 + 40 * H, app="shop", environment="dev", lead=1 * H),
    ]
    f = compute(records, T0, T1)
    assert f.deployments == 6
    assert f.failures == 2
    assert f.window_days == 10.0
    assert f.deployment_frequency_per_day == pytest.approx(4 / 10)
    assert f.lead_time_hours_median == pytest.approx(3.0)  # median of 1, 2, 4, 9
    assert f.change_failure_rate == pytest.approx(2 / 6)
    assert f.time_to_restore_minutes_mean == pytest.approx(60.0)
    # two series (cart/prod, shop/dev), 120 minutes down in 2 x 14,400 minutes
    assert f.availability_percent == pytest.approx(100 * (1 - 120 / (14_400 * 2)))
    assert f.availability_percent is not None
    expected = 0.6 * f.availability_percent + 20 * math.log(0.4) + 100 / 61
    assert f.platform_score == pytest.approx(expected)
    assert f.bands.model_dump() == {
        "deployment_frequency": "high",
        "lead_time": "elite",
        "change_failure_rate": "low",
        "time_to_restore": "high",
    }


def test_json_has_exactly_the_contract_keys() -> None:
    data = compute([rec(T0)], T0, T1).to_json_dict()
    assert list(data) == [
        "deployments",
        "failures",
        "deployment_frequency_per_day",
        "lead_time_hours_median",
        "change_failure_rate",
        "time_to_restore_minutes_mean",
        "availability_percent",
        "platform_score",
        "bands",
        "window_days",
    ]
    assert tuple(data) == FIGURE_KEYS
    assert set(data["bands"]) == {
        "deployment_frequency",
        "lead_time",
        "change_failure_rate",
        "time_to_restore",
    }


def test_unrestored_failure_is_down_until_the_window_ends() -> None:
    f = compute([rec(T1 - 6 * H, "failed", cause="verify")], T0, T1)
    assert f.availability_percent == pytest.approx(100 * (1 - 360 / 14_400))
    assert f.time_to_restore_minutes_mean == 0.0
    assert f.bands.time_to_restore is None  # nothing restored: no band, not "elite"


def test_restore_after_the_window_counts_downtime_only_up_to_until() -> None:
    f = compute([rec(T1 - 2 * H, "failed", restored=10 * H)], T0, T1)
    assert f.availability_percent == pytest.approx(100 * (1 - 120 / 14_400))
    # the time to restore itself is the whole 10 h (the record has been restored)
    assert f.time_to_restore_minutes_mean == pytest.approx(600.0)


def test_lead_time_leaves_out_failures_and_records_without_change_time() -> None:
    records = [rec(T0 + H, lead=5 * H), rec(T0 + 2 * H, lead=None), rec(T0 + 3 * H, "failed")]
    assert compute(records, T0, T1).lead_time_hours_median == pytest.approx(5.0)


def test_only_failures_gives_no_score_and_no_lead_time() -> None:
    f = compute([rec(T0 + H, "failed", restored=H)], T0, T1)
    assert f.deployment_frequency_per_day == 0.0
    assert f.platform_score is None
    assert f.lead_time_hours_median is None
    assert f.change_failure_rate == 1.0
    assert f.bands.deployment_frequency == "low"


def test_filters_by_app_and_environment() -> None:
    records = [
        rec(T0 + H),
        rec(T0 + H, app="shop"),
        rec(T0 + H, environment="dev"),
        rec(T0 + H, app="shop", environment="dev"),
    ]
    assert compute(records, T0, T1, app="shop").deployments == 2
    assert compute(records, T0, T1, environment="dev").deployments == 2
    assert compute(records, T0, T1, app="shop", environment="dev").deployments == 1


# --- empty windows and boundaries --------------------------------------------------------


def test_empty_window() -> None:
    f = compute([rec(T1 + H)], T0, T1)
    assert f.to_json_dict() == {
        "deployments": 0,
        "failures": 0,
        "deployment_frequency_per_day": 0.0,
        "lead_time_hours_median": None,
        "change_failure_rate": None,
        "time_to_restore_minutes_mean": 0.0,
        "availability_percent": None,
        "platform_score": None,
        "bands": {
            "deployment_frequency": "low",
            "lead_time": None,
            "change_failure_rate": None,
            "time_to_restore": None,
        },
        "window_days": 10.0,
    }


def test_record_at_since_is_in_and_at_until_is_out() -> None:
    assert compute([rec(T0)], T0, T1).deployments == 1
    assert compute([rec(T1)], T0, T1).deployments == 0
    assert compute([rec(T1 - timedelta(microseconds=1))], T0, T1).deployments == 1
    assert compute([rec(T0 - timedelta(microseconds=1))], T0, T1).deployments == 0


def test_since_not_before_until_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="must be before"):
        compute([], T1, T1)
    with pytest.raises(ConfigError):
        default_window(T0, since=T1, until=T0)


def test_default_window_is_the_last_30_days() -> None:
    assert default_window(T1) == (T1 - timedelta(days=30), T1)
    assert default_window(T1, until=T0) == (T0 - timedelta(days=30), T0)
    assert default_window(T1, since=T0) == (T0, T1)


# --- bands at their cut-offs -------------------------------------------------------------


@pytest.mark.parametrize(
    ("per_day", "band"),
    [
        (1.0, "elite"),
        (0.99, "high"),
        (1 / 7, "high"),
        (0.14, "medium"),
        (1 / 30, "medium"),
        (0.03, "low"),
        (0.0, "low"),
    ],
)
def test_deployment_frequency_bands(per_day: float, band: str) -> None:
    assert band_deployment_frequency(per_day) == band


@pytest.mark.parametrize(
    ("hours", "band"),
    [
        (0.0, "elite"),
        (23.99, "elite"),
        (24.0, "high"),
        (167.9, "high"),
        (168.0, "medium"),
        (719.9, "medium"),
        (720.0, "low"),
    ],
)
def test_lead_time_bands(hours: float, band: str) -> None:
    assert band_lead_time(hours) == band


@pytest.mark.parametrize(
    ("rate", "band"),
    [
        (0.0, "elite"),
        (0.05, "elite"),
        (0.051, "high"),
        (0.10, "high"),
        (0.15, "medium"),
        (3 / 20, "medium"),
        (0.151, "low"),
        (1.0, "low"),
    ],
)
def test_change_failure_rate_bands(rate: float, band: str) -> None:
    assert band_change_failure_rate(rate) == band


@pytest.mark.parametrize(
    ("minutes", "band"),
    [
        (59.9, "elite"),
        (60.0, "high"),
        (1439.0, "high"),
        (1440.0, "medium"),
        (10079.0, "medium"),
        (10080.0, "low"),
    ],
)
def test_time_to_restore_bands(minutes: float, band: str) -> None:
    assert band_time_to_restore(minutes) == band


def test_platform_score_formula_and_its_units() -> None:
    # 97 % available, one deploy a day (ln 1 = 0), 12 minutes to restore
    assert platform_score(97.0, 1.0, 12.0) == pytest.approx(0.6 * 97 + 100 / 13)
    assert platform_score(100.0, math.e, 0.0) == pytest.approx(60 + 20 + 100)
    assert platform_score(100.0, 0.0, 0.0) is None


# --- breakdowns and comparisons ----------------------------------------------------------


def test_breakdown_by_app_and_environment() -> None:
    records = [rec(T0 + H), rec(T0 + 2 * H, "failed"), rec(T0 + H, app="shop", environment="dev")]
    by_app = breakdown(records, T0, T1, "app")
    assert list(by_app) == ["cart", "shop"]
    assert by_app["cart"].failures == 1
    assert by_app["shop"].deployments == 1
    by_env = breakdown(records, T0, T1, "environment", app="cart")
    assert list(by_env) == ["prod"]


def test_cause_shares() -> None:
    records = [
        rec(T0 + H, "failed", cause="verify"),
        rec(T0 + 2 * H, "failed", cause="verify"),
        rec(T0 + 3 * H, "failed", cause="sync"),
        rec(T0 + 4 * H, "failed"),
        rec(T0 + 5 * H),
        rec(T1 + H, "failed", cause="build"),  # outside the window
    ]
    shares = cause_shares(records, T0, T1)
    assert [(s.cause, s.failures, s.share) for s in shares] == [
        ("verify", 2, 0.5),
        ("sync", 1, 0.25),
        ("unknown", 1, 0.25),
    ]
    assert cause_shares([rec(T0)], T0, T1) == []


def test_compare_orders_before_after_and_subtracts() -> None:
    early = (T0 - timedelta(days=10), T0)
    records = [rec(T0 - 5 * H, "failed", restored=H), rec(T0 - 4 * H), rec(T0 + H), rec(T0 + 2 * H)]
    c = compare(records, (T0, T1), early)  # the later window first: still before = early
    assert c.before.since == early[0]
    assert c.after.since == T0
    assert c.change["deployments"] == 0.0
    assert c.change["failures"] == -1.0
    assert c.change["change_failure_rate"] == pytest.approx(-0.5)
    assert c.after.platform_score is not None and c.before.platform_score is not None
    assert c.change["platform_score"] == pytest.approx(
        c.after.platform_score - c.before.platform_score
    )
    assert c.change["lead_time_hours_median"] == pytest.approx(0.0)
    empty = compare(records, (T0, T1), (T1, T1 + timedelta(days=1)))
    assert empty.change["platform_score"] is None  # the later window has no score
    data = c.to_json_dict()
    assert set(data) == {"before", "after", "change", "windows"}
    assert data["windows"]["before"] == {
        "since": "2026-10-22T00:00:00Z",
        "until": "2026-11-01T00:00:00Z",
    }


# --- properties --------------------------------------------------------------------------

OFFSETS = st.integers(min_value=-2 * 24 * 60, max_value=12 * 24 * 60)  # minutes from T0
RECORDS = st.lists(
    st.builds(
        lambda minutes, failed, app, env, lead, restored: rec(
            T0 + timedelta(minutes=minutes),
            "failed" if failed else "succeeded",
            app=app,
            environment=env,
            lead=timedelta(minutes=lead),
            restored=timedelta(minutes=restored) if restored is not None else None,
        ),
        OFFSETS,
        st.booleans(),
        st.sampled_from(["cart", "shop"]),
        st.sampled_from(["dev", "prod"]),
        st.integers(min_value=0, max_value=60 * 24 * 40),
        st.none() | st.integers(min_value=0, max_value=60 * 24 * 20),
    ),
    max_size=40,
)


@given(RECORDS)
def test_counts_and_rates_stay_in_range(records: list[DeliveryRecord]) -> None:
    f = compute(records, T0, T1)
    inside = [r for r in records if T0 <= r.deployed_at < T1]
    assert f.deployments == len(inside)
    assert 0 <= f.failures <= f.deployments
    if f.change_failure_rate is not None:
        assert 0.0 <= f.change_failure_rate <= 1.0
    if f.availability_percent is not None:
        assert 0.0 <= f.availability_percent <= 100.0
    assert f.time_to_restore_minutes_mean >= 0.0
    assert (f.platform_score is None) == (f.deployment_frequency_per_day == 0)


@given(RECORDS)
def test_records_outside_the_window_change_nothing(records: list[DeliveryRecord]) -> None:
    inside = [r for r in records if T0 <= r.deployed_at < T1]
    assert compute(records, T0, T1) == compute(inside, T0, T1)


@given(RECORDS)
def test_order_does_not_matter_and_groups_add_up(records: list[DeliveryRecord]) -> None:
    assert compute(records, T0, T1) == compute(list(reversed(records)), T0, T1)
    groups = breakdown(records, T0, T1, "app")
    total = compute(records, T0, T1)
    assert sum(g.deployments for g in groups.values()) == total.deployments
    assert sum(g.failures for g in groups.values()) == total.failures
    assert sum(s.failures for s in cause_shares(records, T0, T1)) == total.failures


@given(RECORDS, st.integers(min_value=1, max_value=9))
def test_splitting_the_window_adds_up(records: list[DeliveryRecord], split_day: int) -> None:
    middle = T0 + timedelta(days=split_day)
    left, right, whole = (
        compute(records, T0, middle),
        compute(records, middle, T1),
        compute(records, T0, T1),
    )
    assert left.deployments + right.deployments == whole.deployments
    assert left.failures + right.failures == whole.failures
