"""The alert actions' cores: the notice text, and which rollouts a failure pauses."""

from __future__ import annotations

from typing import Any

from tasks.alert_actions import AlertNotice, notice_markdown, pause_app_rollouts


def test_notice_names_the_alert_where_and_what_to_read() -> None:
    text = notice_markdown(
        AlertNotice(
            alertname="ShipyardRestoreDrillFailed",
            severity="critical",
            summary="The restore drill failed.",
            cluster="default",
            starts_at="2026-11-30T21:00:00Z",
            runbook_url="docs/runbooks/ShipyardRestoreDrillFailed.md",
            generator_url="http://127.0.0.1:9090/graph?g0.expr=x",
        )
    )
    assert text.startswith("# ShipyardRestoreDrillFailed is firing\n")
    assert "**The restore drill failed.**" in text
    assert "| where | the platform on cluster default |" in text
    assert "| severity | critical |" in text
    assert "(docs/runbooks/ShipyardRestoreDrillFailed.md)" in text
    assert "[Prometheus](http://127.0.0.1:9090/graph?g0.expr=x)" in text


def test_notice_of_an_app_alert_without_extras() -> None:
    text = notice_markdown(
        AlertNotice(alertname="X", status="resolved", app="cart", environment="dev")
    )
    assert "# X is resolved" in text and "| where | cart/dev |" in text
    assert "runbook" not in text and "(no description)" in text


def test_pause_app_rollouts_pauses_only_that_apps_running_rollouts() -> None:
    controls: dict[str, Any] = {
        "shipyard-fleet-r1": {"paused": False, "by": "", "skip": {"us-1": "bob"}},
        "shipyard-fleet-r2": '{"paused": false}',
        "shipyard-fleet-r3": {"paused": True, "by": "alice"},
        "shipyard-fleet-r4": None,
        "other-variable": {"paused": False},
    }
    apps = {"r1": "cart", "r2": "shop", "r3": "cart", "r4": None}
    written: dict[str, dict[str, Any]] = {}
    paused = pause_app_rollouts(
        "cart", "alert ShipyardDeliveryFailed", controls, apps.get, written.__setitem__
    )
    assert paused == ["r1", "r3"]
    assert written == {
        "shipyard-fleet-r1": {
            "paused": True,
            "by": "alert ShipyardDeliveryFailed",
            "skip": {"us-1": "bob"},
        }
    }  # r3 was already paused by alice: left as it is


def test_pause_without_an_app_pauses_nothing() -> None:
    written: dict[str, Any] = {}
    assert (
        pause_app_rollouts("", "x", {"shipyard-fleet-r1": {}}, lambda r: "", written.__setitem__)
        == []
    )
    assert written == {}
