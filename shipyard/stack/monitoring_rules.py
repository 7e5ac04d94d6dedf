"""Shipyard's alert rules as a plain Prometheus rules file, from the one PrometheusRule.

``deployments/monitoring/prometheusrule.yaml`` (a Prometheus Operator ``PrometheusRule``)
is the single source of truth for the alerts. A plain Prometheus (the local stack's, and
``promtool``) reads rules files with a top-level ``groups:`` instead, so this module
extracts ``spec.groups`` unchanged. The checked-in copy
``deployments/monitoring/rules/shipyard-rules.yaml`` is generated from it
(``python -m shipyard.stack.monitoring_rules``; ``--check`` only compares), and a test
fails when the two differ.

The stack calls :func:`write_rules_file` to put the rules next to its generated
Prometheus config; the end-to-end alert test derives a copy with ``for: 0s``
(:func:`with_for`) so an alert fires within one evaluation.
"""

from __future__ import annotations

import argparse
import copy
import io
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from shipyard.core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
MONITORING_DIR = ROOT / "deployments" / "monitoring"
PROMETHEUS_RULE = MONITORING_DIR / "prometheusrule.yaml"
RULES_FILE = MONITORING_DIR / "rules" / "shipyard-rules.yaml"

RuleGroup = dict[str, Any]

_HEADER = (
    "# GENERATED from deployments/monitoring/prometheusrule.yaml (its spec.groups): do not\n"
    "# edit. Regenerate with: .venv/bin/python -m shipyard.stack.monitoring_rules\n"
)


def _yaml() -> YAML:
    # Round-trip mode keeps the source's key order and folded (>-) expressions, so the
    # generated file reads like the PrometheusRule it comes from.
    yaml = YAML(typ="rt")
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def parse_rule_groups(text: str) -> list[RuleGroup]:
    """``spec.groups`` of a PrometheusRule document (pure); ConfigError when it is none."""
    doc = _yaml().load(text)
    if not isinstance(doc, dict) or doc.get("kind") != "PrometheusRule":
        raise ConfigError("not a PrometheusRule: kind must be PrometheusRule")
    if not str(doc.get("apiVersion", "")).startswith("monitoring.coreos.com/"):
        raise ConfigError("not a PrometheusRule: apiVersion must be monitoring.coreos.com/v1")
    groups = (doc.get("spec") or {}).get("groups")
    if not isinstance(groups, list) or not groups:
        raise ConfigError("PrometheusRule has no spec.groups")
    for group in groups:
        if not isinstance(group, dict) or not group.get("name") or not group.get("rules"):
            raise ConfigError("every rule group needs a name and rules")
    return groups


def load_rule_groups(path: Path = PROMETHEUS_RULE) -> list[RuleGroup]:
    """The rule groups of the PrometheusRule at ``path`` (the repository's by default)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    return parse_rule_groups(text)


def render_rules_file(groups: list[RuleGroup]) -> str:
    """A plain Prometheus rules file (``groups:``) holding ``groups`` (pure)."""
    out = io.StringIO()
    _yaml().dump({"groups": groups}, out)
    return _HEADER + out.getvalue()


def alert_names(groups: list[RuleGroup]) -> list[str]:
    """Every alert name, once, in file order."""
    names: list[str] = []
    for group in groups:
        for rule in group["rules"]:
            name = rule.get("alert")
            if name and name not in names:
                names.append(name)
    return names


def with_for(groups: list[RuleGroup], overrides: Mapping[str, str]) -> list[RuleGroup]:
    """A copy of ``groups`` where each alert named in ``overrides`` gets that ``for``.

    ``with_for(groups, {"ArgoSyncFailed": "0s"})`` is the test-only copy the end-to-end
    test loads so the alert fires on the first evaluation. Unknown names are an error, so
    a renamed alert cannot leave a test silently waiting.
    """
    unknown = sorted(set(overrides) - set(alert_names(groups)))
    if unknown:
        raise ConfigError(f"no such alert: {', '.join(unknown)}")
    result = copy.deepcopy(groups)
    for group in result:
        for rule in group["rules"]:
            if rule.get("alert") in overrides:
                rule["for"] = overrides[rule["alert"]]
    return result


def with_runbook_base(groups: list[RuleGroup], base: str) -> list[RuleGroup]:
    """A copy of ``groups`` whose relative ``runbook_url``s are prefixed with ``base``.

    The repository keeps runbook URLs relative to its root (``docs/runbooks/X.md``);
    an install prefixes them with where the repository is browsable.
    """
    prefix = base.rstrip("/") + "/"
    result = copy.deepcopy(groups)
    for group in result:
        for rule in group["rules"]:
            annotations = rule.get("annotations") or {}
            url = annotations.get("runbook_url", "")
            if url and "://" not in url:
                annotations["runbook_url"] = prefix + url.lstrip("/")
    return result


def write_rules_file(
    dest: Path,
    *,
    for_overrides: Mapping[str, str] | None = None,
    runbook_base: str | None = None,
    source: Path = PROMETHEUS_RULE,
) -> Path:
    """Write the rules of ``source`` as a plain rules file at ``dest`` and return ``dest``.

    What the local stack's Prometheus loads (``rule_files: [dest]``).
    """
    groups = load_rule_groups(source)
    if for_overrides:
        groups = with_for(groups, for_overrides)
    if runbook_base:
        groups = with_runbook_base(groups, runbook_base)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(render_rules_file(groups), encoding="utf-8")
    return dest


def main(argv: list[str] | None = None) -> int:
    """Regenerate the checked-in rules file, or with ``--check`` only say if it is stale."""
    parser = argparse.ArgumentParser(prog="python -m shipyard.stack.monitoring_rules")
    parser.add_argument("--check", action="store_true", help="exit 1 when the file is stale")
    args = parser.parse_args(argv)
    wanted = render_rules_file(load_rule_groups())
    current = RULES_FILE.read_text(encoding="utf-8") if RULES_FILE.exists() else ""
    if args.check:
        if current != wanted:
            print(f"{RULES_FILE} is stale: run python -m shipyard.stack.monitoring_rules")
            return 1
        return 0
    if current != wanted:
        RULES_FILE.parent.mkdir(parents=True, exist_ok=True)
        RULES_FILE.write_text(wanted, encoding="utf-8")
        print(f"wrote {RULES_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
