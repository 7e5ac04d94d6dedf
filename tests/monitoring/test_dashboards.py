"""Static checks of the Grafana dashboards (the live query test runs them on the stack).

Every query parses (promtool checks them as recording rules of a throwaway rules file),
selects only metric names of the contract, uses dashboard variables only as regex
matchers, and the dashboards cover what issue 15 asks for.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from shipyard.stack.monitoring_rules import load_rule_groups
from tests.monitoring.conftest import run_promtool
from tests.monitoring.contract import CONTRACT_METRICS, base_name
from tests.monitoring.dashboards import (
    BUILTIN_VARIABLES,
    DASHBOARDS_DIR,
    DashboardQuery,
    dashboard_files,
    dashboard_queries,
    load_dashboard,
    metric_names,
    resolve,
    variable_queries,
    variables_in,
)

QUERIES = dashboard_queries()


def test_the_dashboards_exist_and_have_queries() -> None:
    names = {p.name for p in dashboard_files()}
    assert {"deliveries.json", "lead-time.json", "fleet.json", "dr.json"} <= names
    per_file = {q.dashboard for q in QUERIES}
    assert per_file == names, names - per_file


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.name)
def test_dashboard_model(path: Path) -> None:
    model = load_dashboard(path)
    assert model["uid"] and model["title"].startswith("Shipyard / ")
    assert "shipyard" in model["tags"]
    ids = [p["id"] for p in model["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    datasource = [v for v in model["templating"]["list"] if v["type"] == "datasource"]
    assert datasource and datasource[0]["query"] == "prometheus"
    for panel in model["panels"]:
        if panel["type"] != "row":
            assert panel["title"] and panel["datasource"]["uid"] == "${datasource}"
            assert panel["targets"], f"{panel['title']} has no query"


def test_every_query_parses(promtool: str, tmp_path: Path) -> None:
    """All queries (and variable queries' selectors) as recording rules for promtool."""
    rules = [
        {"record": f"dashboard:query:{i}", "expr": query.promql} for i, query in enumerate(QUERIES)
    ]
    rules_file = tmp_path / "dashboard-queries.yaml"
    yaml = YAML(typ="safe", pure=True)
    with rules_file.open("w") as out:
        yaml.dump({"groups": [{"name": "dashboards", "rules": rules}]}, out)
    result = run_promtool(promtool, "check", "rules", rules_file)
    failing = result.stdout + result.stderr
    assert result.returncode == 0, failing
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_promtool_refuses_a_broken_query(promtool: str, tmp_path: Path) -> None:
    """The parse check above can fail: a query with a typo is refused."""
    rules_file = tmp_path / "broken.yaml"
    rules_file.write_text(
        "groups:\n- name: x\n  rules:\n  - record: x:y\n    expr: sum by (app (up)\n"
    )
    assert run_promtool(promtool, "check", "rules", rules_file).returncode != 0


@pytest.mark.parametrize("query", QUERIES, ids=str)
def test_queries_use_contract_metrics_only(query: DashboardQuery) -> None:
    used = {base_name(name) for name in metric_names(query.promql)}
    assert used, f"{query}: no metric selected"
    assert used <= CONTRACT_METRICS, f"{query}: not in the contract: {used - CONTRACT_METRICS}"


def test_variable_queries_use_contract_metrics_only() -> None:
    for query in variable_queries():
        assert query.expr.startswith("label_values("), query
        selector = query.expr[len("label_values(") :].rsplit(",", 1)[0]
        assert metric_names(resolve(selector)) <= CONTRACT_METRICS, query


def test_rule_expressions_use_contract_metrics_only() -> None:
    for group in load_rule_groups():
        for rule in group["rules"]:
            used = {base_name(n) for n in metric_names(rule["expr"])}
            assert used and used <= CONTRACT_METRICS, (rule["alert"], used - CONTRACT_METRICS)


def test_dashboard_variables_are_regex_matchers() -> None:
    """Variables resolve to ``.*`` ("All"), which only means "any" after ``=~``."""
    for query in QUERIES:
        defined = {
            v["name"]
            for v in load_dashboard(DASHBOARDS_DIR / query.dashboard)["templating"]["list"]
        }
        for name in variables_in(query.expr) - set(BUILTIN_VARIABLES):
            assert name in defined, f"{query}: ${name} is not a variable of the dashboard"
            assert f'=~"${name}"' in query.expr or f'=~"${{{name}}}"' in query.expr, query


@pytest.mark.parametrize(
    ("promql", "names"),
    [
        (
            'sum by (app) (rate(shipyard_deliveries_total{outcome="failed"}[5m]))',
            {"shipyard_deliveries_total"},
        ),
        (
            "time() - shipyard_drill_last_success_timestamp_seconds > 8 * 86400",
            {"shipyard_drill_last_success_timestamp_seconds"},
        ),
        ('a_total offset 5m / on(x) group_left(y) b{l="c d"} or vector(0)', {"a_total", "b"}),
        ("histogram_quantile(0.9, sum by (le) (rate(x_bucket[1m]))) > bool 1e3", {"x_bucket"}),
        ('{__name__="up"} and inf', set()),
    ],
)
def test_metric_names(promql: str, names: set[str]) -> None:
    assert metric_names(promql) == names


def test_resolve_fills_builtins_and_all() -> None:
    expr = 'increase(x{app=~"$app",env=~"${environment}"}[$__range]) [[cluster]] $__rate_interval'
    assert resolve(expr) == 'increase(x{app=~".*",env=~".*"}[1h]) .* 5m'
    assert resolve("$app", {"app": "shop"}) == "shop"
    assert variables_in(expr) == {"app", "environment", "__range", "cluster", "__rate_interval"}


def test_dashboards_cover_the_issue() -> None:
    """Deliveries, lead time, failures and rollbacks by app/env/cluster, waves and DR."""
    text = {p.name: json.dumps(load_dashboard(p)) for p in dashboard_files()}
    deliveries = text["deliveries.json"]
    for needle in ("shipyard_deliveries_total", "shipyard_rollbacks_total", 'outcome=\\"failed\\"'):
        assert needle in deliveries, needle
    assert "by (app, environment, cluster" in deliveries
    assert "shipyard_lead_time_seconds_bucket" in text["lead-time.json"]
    assert "by (cluster" in text["fleet.json"] and "argocd_app_info" in text["fleet.json"]
    for name in ("shipyard_backup_last_success_timestamp_seconds", "shipyard_drill_rto_seconds"):
        assert name in text["dr.json"], name
