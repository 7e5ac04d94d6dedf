"""docs/observability.md lists every metric and alert; every runbook has its sections."""

from __future__ import annotations

import re

import pytest

from shipyard.stack.monitoring_rules import ROOT, alert_names, load_rule_groups
from tests.monitoring.contract import CONTRACT_METRICS

DOC = ROOT / "docs" / "observability.md"
ALERTS = alert_names(load_rule_groups())


def test_every_contract_metric_is_documented() -> None:
    text = DOC.read_text()
    missing = sorted(m for m in CONTRACT_METRICS if f"`{m}`" not in text)
    assert not missing, missing


def test_every_alert_is_documented_with_its_runbook() -> None:
    text = DOC.read_text()
    for name in ALERTS:
        assert f"[{name}](runbooks/{name}.md)" in text, name


def test_the_local_stack_section_is_there() -> None:
    assert re.search(r"^## In the local stack$", DOC.read_text(), re.MULTILINE)


@pytest.mark.parametrize("name", ALERTS)
def test_runbook_sections(name: str) -> None:
    text = (ROOT / "docs" / "runbooks" / f"{name}.md").read_text()
    assert text.startswith(f"# {name}\n")
    for section in ("## Meaning", "## Impact", "## Diagnosis", "## Fix"):
        assert section in text, f"{name}: {section} missing"
    assert "```promql" in text and "```sh" in text, f"{name}: PromQL and CLI diagnosis"
