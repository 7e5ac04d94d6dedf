"""Every PromQL query of the Grafana dashboards, ready to run against a Prometheus.

Used by the static test (``test_dashboards.py``: each query parses and uses contract
metric names only) and by the live test that runs each query against the stack's
Prometheus after a demo delivery::

    from tests.monitoring.dashboards import dashboard_queries
    for query in dashboard_queries():
        result = prometheus_query(query.promql)      # the query with variables filled in

Grafana fills template variables in before it sends a query; :func:`resolve` does the same
with fixed values: ``$__range`` is 1h, ``$__rate_interval`` 5m, ``$__interval`` 1m, and
every dashboard variable (``$app``, ``$environment``, ``$cluster``) is "All", i.e. ``.*``
(dashboards use them only as ``label=~"$var"``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipyard.stack.monitoring_rules import MONITORING_DIR

DASHBOARDS_DIR = MONITORING_DIR / "dashboards"

BUILTIN_VARIABLES: dict[str, str] = {
    "__range": "1h",
    "__range_s": "3600",
    "__rate_interval": "5m",
    "__interval": "1m",
    "__interval_ms": "60000",
}
ALL = ".*"

_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


@dataclass(frozen=True)
class DashboardQuery:
    """One target of one panel."""

    dashboard: str  # file name, e.g. "deliveries.json"
    panel: str  # panel title
    ref_id: str  # the target's refId (A, B, ...)
    expr: str  # as written, with Grafana variables

    @property
    def promql(self) -> str:
        """The query with every variable filled in (see :func:`resolve`)."""
        return resolve(self.expr)

    @property
    def metrics(self) -> set[str]:
        """The metric names the query selects (to tell which activity feeds it)."""
        return metric_names(self.promql)

    def __str__(self) -> str:
        return f"{self.dashboard} / {self.panel} / {self.ref_id}"


def variables_in(expr: str) -> set[str]:
    """Names of the Grafana variables ``expr`` uses (``$x``, ``${x}``, ``${x:fmt}``, ``[[x]]``)."""
    return {next(g for g in m.groups() if g) for m in _VARIABLE.finditer(expr)}


def resolve(expr: str, values: Mapping[str, str] | None = None) -> str:
    """``expr`` with its variables replaced: ``values``, else the built-ins, else "All"."""
    table = {**BUILTIN_VARIABLES, **(values or {})}

    def fill(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        return table.get(name, ALL)

    return _VARIABLE.sub(fill, expr)


def iter_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in (collapsed) rows."""
    for panel in panels:
        yield panel
        yield from iter_panels(panel.get("panels") or [])


def load_dashboard(path: Path) -> dict[str, Any]:
    """A dashboard JSON file (the bare model, or wrapped as ``{"dashboard": ...}``)."""
    model: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return model.get("dashboard", model)


def dashboard_files(directory: Path = DASHBOARDS_DIR) -> list[Path]:
    """Every dashboard JSON file, sorted by name."""
    return sorted(directory.glob("*.json"))


def dashboard_queries(directory: Path = DASHBOARDS_DIR) -> list[DashboardQuery]:
    """Every PromQL ``expr`` of every panel target of every dashboard in ``directory``."""
    found: list[DashboardQuery] = []
    for path in dashboard_files(directory):
        model = load_dashboard(path)
        for panel in iter_panels(model.get("panels") or []):
            for target in panel.get("targets") or []:
                expr = (target.get("expr") or "").strip()
                if expr and not target.get("hide"):
                    found.append(
                        DashboardQuery(path.name, panel.get("title", ""), target["refId"], expr)
                    )
    return found


def variable_queries(directory: Path = DASHBOARDS_DIR) -> list[DashboardQuery]:
    """The ``label_values(...)`` queries of the dashboards' template variables."""
    found: list[DashboardQuery] = []
    for path in dashboard_files(directory):
        for var in load_dashboard(path).get("templating", {}).get("list", []):
            if var.get("type") != "query":
                continue
            query = var.get("query")
            text = query.get("query", "") if isinstance(query, dict) else str(query or "")
            found.append(DashboardQuery(path.name, f"${var['name']}", "variable", text))
    return found


# --- metric names used by a PromQL expression (a small lexer, no full parser) ---------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_OFFSET = re.compile(r"\boffset\s+-?\w+")
_IDENT = re.compile(r"(?<![\w.:])([a-zA-Z_:][\w:]*)(?![\w:])\s*(\()?")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "by", "without", "on", "ignoring"}
    | {"group_left", "group_right", "offset", "inf", "nan", "start", "end"}
)


def metric_names(promql: str) -> set[str]:
    """The metric names a (resolved) PromQL expression selects.

    Strings, label matchers, grouping clauses, ranges and offsets are removed first; what
    remains as an identifier not followed by ``(`` and not a keyword is a metric name.
    """
    text = _STRING.sub('""', promql)
    text = _MATCHERS.sub("{}", text)
    text = _GROUPING.sub(" ", text)
    text = _RANGE.sub("", text)
    text = _OFFSET.sub(" ", text)
    names: set[str] = set()
    for match in _IDENT.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names
