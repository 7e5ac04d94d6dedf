"""The scan policy gate on trivy JSON reports, and the `shipyard scan-gate` CLI contract."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from shipyard.cli.main import main
from shipyard.core.errors import ConfigError
from tasks.scan_policy import (
    ScanPolicy,
    evaluate_gate,
    parse_ignorefile,
    parse_severities,
    parse_trivy_report,
    render_markdown,
)

DATA = Path(__file__).parent / "data" / "trivy"
TODAY = date(2026, 11, 27)


def findings(name: str):  # type: ignore[no-untyped-def]
    return parse_trivy_report(json.loads((DATA / name).read_text()), name)


def test_parse_image_report_types_every_class() -> None:
    found = findings("image-vulns.json")
    kinds = sorted({f.category for f in found})
    assert kinds == ["secret", "vulnerability"]
    openssl = next(f for f in found if f.id == "CVE-2024-0001")
    assert (openssl.package, openssl.installed_version, openssl.fixed_version) == (
        "openssl",
        "3.1.4-r0",
        "3.1.4-r5",
    )
    assert next(f for f in found if f.id == "CVE-2024-0002").fixed is False


def test_parse_real_trivy_fs_report_keeps_failed_misconfigs_and_no_secret_value() -> None:
    found = findings("fs-secret-misconfig.json")
    ids = {(f.category, f.id) for f in found}
    assert ("secret", "aws-access-key-id") in ids
    assert ("misconfiguration", "DS-0002") in ids
    assert all("AKIA" not in f.model_dump_json() for f in found)


def test_default_policy_blocks_high_and_critical() -> None:
    gate = evaluate_gate(findings("image-vulns.json"), ScanPolicy(), TODAY)
    assert not gate.passed
    assert gate.counts == {"CRITICAL": 2, "HIGH": 2, "MEDIUM": 1, "LOW": 1, "UNKNOWN": 1}
    assert [f.id for f in gate.blocking] == [
        "github-pat",
        "CVE-2024-0001",
        "CVE-2024-0002",
        "GHSA-abcd-efgh-ijkl",
    ]


def test_ignore_unfixed_only_spares_vulnerabilities_without_a_fix() -> None:
    gate = evaluate_gate(findings("image-vulns.json"), ScanPolicy(ignore_unfixed=True), TODAY)
    assert "CVE-2024-0002" not in {f.id for f in gate.blocking}
    assert "github-pat" in {f.id for f in gate.blocking}  # secrets have nothing to "fix"


def test_ignorefile_comments_expiry_and_all_classes() -> None:
    rules = parse_ignorefile((DATA / "accepted.trivyignore").read_text())
    assert [r.id for r in rules] == [
        "CVE-2024-0001",
        "GHSA-abcd-efgh-ijkl",
        "AVD-DS-0002",
        "github-pat",
    ]
    policy = ScanPolicy(ignore=rules)
    image = evaluate_gate(findings("image-vulns.json"), policy, TODAY)
    # expired acceptance of the GHSA no longer applies; openssl and the secret are accepted
    assert [f.id for f in image.blocking] == ["CVE-2024-0002", "GHSA-abcd-efgh-ijkl"]
    assert image.ignored == 2
    fs = evaluate_gate(findings("fs-secret-misconfig.json"), policy, TODAY)
    # AVD-DS-0002 matches trivy 0.76's misconfig ID DS-0002; the AWS key still blocks
    assert [f.id for f in fs.blocking] == ["aws-access-key-id"]
    later = evaluate_gate(findings("image-vulns.json"), policy, date(2099, 1, 2))
    assert "CVE-2024-0001" in {f.id for f in later.blocking}


def test_bad_expiry_and_unknown_severity_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"x:2: bad expiry"):
        parse_ignorefile("# c\nCVE-1 exp:2024-13-40\n", "x")
    with pytest.raises(ConfigError, match="unknown severity 'SEVERE'"):
        parse_severities("HIGH,severe")
    assert parse_severities("low, high") == ("LOW", "HIGH")


def test_not_a_trivy_report() -> None:
    with pytest.raises(ConfigError, match="not a trivy JSON report"):
        parse_trivy_report({"bomFormat": "CycloneDX"})
    with pytest.raises(ConfigError, match="SchemaVersion 1"):
        parse_trivy_report({"SchemaVersion": 1, "Results": []})


def test_markdown_counts_and_blocking_without_secret_values() -> None:
    found = findings("fs-secret-misconfig.json")
    text = render_markdown(evaluate_gate(found, ScanPolicy(), TODAY), "src", {"digest": "sha256:x"})
    assert "| CRITICAL | 1 |" in text and "aws-access-key-id" in text and "blocked" in text
    assert "AKIA" not in text and "****" not in text


def test_policy_key_changes_with_policy_and_expiry() -> None:
    rules = parse_ignorefile("CVE-1 exp:2026-12-01\n")
    assert ScanPolicy().key(TODAY) != ScanPolicy(fail_on=("CRITICAL",)).key(TODAY)
    assert ScanPolicy(ignore=rules).key(TODAY) != ScanPolicy().key(TODAY)
    assert ScanPolicy(ignore=rules).key(date(2027, 1, 1)) == ScanPolicy().key(TODAY)


def test_missing_vulnerability_data_blocks_unless_waived() -> None:
    found = findings("clean.json")
    scanned = evaluate_gate(found, ScanPolicy(), TODAY)
    assert scanned.passed and scanned.verdict() == "passed (no findings)"
    assert "vulnerabilities" not in scanned.contract()

    missing = evaluate_gate(found, ScanPolicy(), TODAY, vulnerabilities_scanned=False)
    assert not missing.passed and not missing.blocking and not missing.waived
    assert missing.summary().startswith("scan gate blocked by vulnerabilities NOT scanned")
    assert "waive_missing_vulnerability_data" in missing.summary()
    assert missing.contract()["vulnerabilities"] == "not scanned"
    assert missing.verdict().startswith("blocked: vulnerabilities NOT scanned")
    assert "**vulnerabilities NOT scanned**" in render_markdown(missing, "img")

    policy = ScanPolicy(waive_missing_vulnerability_data=True)
    waived = evaluate_gate(found, policy, TODAY, vulnerabilities_scanned=False)
    assert waived.passed and waived.waived
    assert waived.verdict() == (
        "vulnerabilities NOT scanned (waived); secrets and misconfigurations: no findings"
    )
    assert waived.contract()["vulnerabilities"] == "not scanned (waived)"
    assert waived.summary().endswith("; vulnerabilities NOT scanned (waived)")
    assert "waived by the policy" in render_markdown(waived, "img")
    assert policy.key(TODAY) != ScanPolicy().key(TODAY)

    # a waiver lets missing data through, never a finding
    secrets = evaluate_gate(
        findings("fs-secret-misconfig.json"), policy, TODAY, vulnerabilities_scanned=False
    )
    assert not secrets.passed and secrets.blocking
    assert secrets.verdict().startswith("blocked")


# --- the CLI contract -----------------------------------------------------------------


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(["scan-gate", *args])
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def test_cli_blocked_json_shape(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "--report", str(DATA / "image-vulns.json"), "--json")
    assert code == 1
    doc = json.loads(out)
    assert set(doc) == {"passed", "counts", "blocking"}
    assert doc["passed"] is False
    assert doc["counts"] == {"CRITICAL": 2, "HIGH": 2, "MEDIUM": 1, "LOW": 1, "UNKNOWN": 1}
    assert doc["blocking"][0] == {
        "id": "github-pat",
        "severity": "CRITICAL",
        "target": "app/.env",
        "class": "secret",
    }
    assert all(set(b) == {"id", "severity", "target", "class"} for b in doc["blocking"])


def test_cli_passes_with_ignorefile_and_fail_on(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(
        capsys,
        "--report",
        str(DATA / "image-vulns.json"),
        "--fail-on",
        "critical",
        "--ignorefile",
        str(DATA / "accepted.trivyignore"),
        "--json",
    )
    assert code == 0
    assert json.loads(out)["passed"] is True
    code, out, _ = run_cli(capsys, "--report", str(DATA / "clean.json"))
    assert code == 0 and "passed" in out


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--report", "/nonexistent/report.json"], "does not exist"),
        (["--report", str(DATA / "broken.json")], "not JSON"),
        (["--report", str(DATA / "not-trivy.json")], "not a trivy JSON report"),
        (["--report", str(DATA / "clean.json"), "--fail-on", "HIGH,BAD"], "unknown severity"),
        (
            ["--report", str(DATA / "clean.json"), "--ignorefile", "/nonexistent/.trivyignore"],
            "does not exist",
        ),
    ],
)
def test_cli_unusable_input_exits_2_with_one_line(
    capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    code, out, err = run_cli(capsys, *args)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and needle in err
