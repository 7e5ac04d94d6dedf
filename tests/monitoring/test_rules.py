"""The alert rules: one source of truth, mixin conventions, and promtool's verdict.

``promtool check rules`` validates the generated rules file, ``promtool test rules``
runs the unit tests in deployments/monitoring/tests/, and mutating each ``for`` by one
evaluation interval must make those unit tests fail (so every ``for`` boundary is pinned).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from shipyard.core.errors import ConfigError
from shipyard.stack.monitoring_rules import (
    PROMETHEUS_RULE,
    ROOT,
    RULES_FILE,
    alert_names,
    load_rule_groups,
    main,
    parse_rule_groups,
    render_rules_file,
    with_for,
    with_runbook_base,
    write_rules_file,
)
from tests.monitoring.conftest import RULE_TESTS_DIR, run_promtool

CONTRACT_ALERTS = {
    "ArgoSyncFailed",
    "DeploymentLag",
    "ResourceOvercommit",
    "ShipyardDeliveryFailed",
    "ShipyardRollbackFailed",
    "ShipyardRestoreDrillFailed",
    "ShipyardRestoreDrillStale",
    "ShipyardBackupStale",
    "ShipyardBridgeSpoolBacklog",
    "ShipyardNoWorkerPolling",
    "ShipyardDriftDetected",
}


def _rules() -> list[dict[str, Any]]:
    return [rule for group in load_rule_groups() for rule in group["rules"]]


def _unit_test_files() -> list[Path]:
    return sorted(RULE_TESTS_DIR.glob("*.yaml"))


def _alert_rule_tests() -> list[dict[str, Any]]:
    yaml = YAML(typ="safe", pure=True)
    found: list[dict[str, Any]] = []
    for path in _unit_test_files():
        for group in yaml.load(path.read_text())["tests"]:
            found.extend(group.get("alert_rule_test") or [])
    return found


def test_the_plain_rules_file_is_the_prometheusrule_spec() -> None:
    assert RULES_FILE.read_text() == render_rules_file(load_rule_groups()), (
        "deployments/monitoring/rules/shipyard-rules.yaml is stale: "
        "run .venv/bin/python -m shipyard.stack.monitoring_rules"
    )
    yaml = YAML(typ="safe", pure=True)
    plain = yaml.load(RULES_FILE.read_text())
    source = yaml.load(PROMETHEUS_RULE.read_text())
    assert plain == {"groups": source["spec"]["groups"]}
    assert main(["--check"]) == 0


def test_every_contract_alert_is_defined() -> None:
    assert set(alert_names(load_rule_groups())) == CONTRACT_ALERTS


def test_seed_alerts_keep_the_issue_thresholds() -> None:
    by_name: dict[str, list[dict[str, Any]]] = {}
    for rule in _rules():
        by_name.setdefault(rule["alert"], []).append(rule)
    argo = {rule["labels"]["reason"]: rule for rule in by_name["ArgoSyncFailed"]}
    assert 'argocd_app_info{sync_status="OutOfSync"}' in argo["OutOfSync"]["expr"]
    assert argo["OutOfSync"]["for"] == "10m"
    assert "argocd_app_sync_total" in argo["SyncFailed"]["expr"]
    (lag,) = by_name["DeploymentLag"]
    assert lag["expr"] == "time() - shipyard_change_pending_since_timestamp_seconds > 3600"
    (overcommit,) = by_name["ResourceOvercommit"]
    assert overcommit["for"] == "30m"
    assert overcommit["expr"].endswith("> 0.9")
    assert 'kube_pod_container_resource_limits{resource="cpu"}' in overcommit["expr"]
    assert 'kube_node_status_allocatable{resource="cpu"}' in overcommit["expr"]


@pytest.mark.parametrize("rule", _rules(), ids=lambda r: f"{r['alert']}")
def test_mixin_conventions(rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in {"critical", "warning", "info"}
    annotations = rule["annotations"]
    assert annotations["summary"].strip() and annotations["description"].strip()
    assert annotations["runbook_url"] == f"docs/runbooks/{rule['alert']}.md"
    assert (ROOT / annotations["runbook_url"]).is_file()


def test_promtool_checks_the_rules(promtool: str) -> None:
    result = run_promtool(promtool, "check", "rules", RULES_FILE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in result.stdout


def test_promtool_unit_tests_pass(promtool: str) -> None:
    result = run_promtool(promtool, "test", "rules", *_unit_test_files())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAILED" not in result.stdout


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in _alert_rule_tests():
        (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    assert firing >= CONTRACT_ALERTS, CONTRACT_ALERTS - firing
    assert quiet >= CONTRACT_ALERTS, CONTRACT_ALERTS - quiet


def _minutes(duration: str) -> int:
    value, unit = int(duration[:-1]), duration[-1]
    return value * {"m": 1, "h": 60}[unit]


def _mutants() -> list[tuple[str, str]]:
    """(alert, for) pairs one evaluation interval (1m) off each rule's ``for``."""
    cases = []
    for name in alert_names(load_rule_groups()):
        fors = {str(r["for"]) for r in _rules() if r["alert"] == name and r.get("for")}
        for duration in sorted(fors):
            cases += [(name, f"{_minutes(duration) - 1}m"), (name, f"{_minutes(duration) + 1}m")]
    return cases


@pytest.mark.parametrize(("alert", "duration"), _mutants())
def test_unit_tests_pin_every_for_boundary(
    promtool: str, tmp_path: Path, alert: str, duration: str
) -> None:
    """A ``for`` one minute shorter or longer makes the unit tests fail."""
    tests_dir = tmp_path / "tests"
    shutil.copytree(RULE_TESTS_DIR, tests_dir)
    write_rules_file(tmp_path / "rules" / "shipyard-rules.yaml", for_overrides={alert: duration})
    result = run_promtool(promtool, "test", "rules", *sorted(tests_dir.glob("*.yaml")))
    assert result.returncode != 0, f"{alert} with for: {duration} still passes every unit test"
    assert f"alertname: {alert}" in result.stdout + result.stderr


def test_with_for_makes_the_end_to_end_copy(promtool: str, tmp_path: Path) -> None:
    dest = write_rules_file(tmp_path / "e2e.yaml", for_overrides={"ArgoSyncFailed": "0s"})
    yaml = YAML(typ="safe", pure=True)
    rules = [r for g in yaml.load(dest.read_text())["groups"] for r in g["rules"]]
    assert {r["for"] for r in rules if r["alert"] == "ArgoSyncFailed"} == {"0s"}
    assert {r["for"] for r in rules if r["alert"] == "ResourceOvercommit"} == {"30m"}
    assert run_promtool(promtool, "check", "rules", dest).returncode == 0
    with pytest.raises(ConfigError, match="no such alert: ArgoSyncFailure"):
        with_for(load_rule_groups(), {"ArgoSyncFailure": "0s"})


def test_runbook_base_prefixes_relative_urls_only() -> None:
    groups = with_runbook_base(load_rule_groups(), "https://git.example.com/shipyard/blob/main/")
    urls = {r["annotations"]["runbook_url"] for g in groups for r in g["rules"]}
    assert "https://git.example.com/shipyard/blob/main/docs/runbooks/DeploymentLag.md" in urls
    assert all(url.startswith("https://git.example.com/") for url in urls)
    again = with_runbook_base(groups, "https://elsewhere.example.com")
    assert again == groups
    assert load_rule_groups()[0]["rules"][0]["annotations"]["runbook_url"].startswith("docs/")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("groups: []\n", "not a PrometheusRule"),
        (
            "apiVersion: v1\nkind: PrometheusRule\nspec: {groups: [{name: a, rules: [1]}]}\n",
            "apiVersion",
        ),
        ("apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nspec: {}\n", "no spec"),
        (
            "apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\n"
            "spec: {groups: [{name: a}]}\n",
            "name and rules",
        ),
    ],
)
def test_parse_refuses_what_is_not_a_prometheusrule(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_rule_groups(text)


def test_load_reports_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_rule_groups(tmp_path / "absent.yaml")
