"""The pure half of the scan step: trivy reports in, typed findings and a gate verdict out.

Nothing here runs trivy, touches the network or imports Prefect, so the policy that
decides whether an image may ship is tested on plain report files, and the CLI's
``scan-gate`` gives the same answer as the pipeline. A report is trivy's JSON
(``SchemaVersion: 2``); the policy is fail-on severities, ignore-unfixed and an ignore
file in trivy's ``.trivyignore`` format, applied alike to vulnerabilities, secrets and
failed misconfigurations.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shipyard.core.errors import ConfigError

SEVERITIES: tuple[str, ...] = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN")
DEFAULT_FAIL_ON: tuple[str, ...] = ("HIGH", "CRITICAL")
FindingClass = Literal["vulnerability", "secret", "misconfiguration"]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Finding(_Frozen):
    """One thing trivy found; ``id`` is the VulnerabilityID, misconfig ID or secret RuleID."""

    category: FindingClass = Field(description="vulnerability, secret or misconfiguration.")
    id: str = Field(description="VulnerabilityID, misconfiguration ID, or secret RuleID.")
    severity: str = Field(description="CRITICAL, HIGH, MEDIUM, LOW or UNKNOWN.")
    target: str = Field(description="Trivy's Target: the file, package manifest or OS.")
    title: str = Field("", description="One-line title (never a secret's value).")
    aliases: tuple[str, ...] = Field((), description="Other IDs, e.g. AVDID of a misconfig.")
    package: str | None = Field(None, description="Affected package (vulnerabilities).")
    installed_version: str | None = Field(None, description="Installed package version.")
    fixed_version: str | None = Field(None, description="First fixed version, if any.")
    line: int | None = Field(None, description="Line in the target (secrets).")

    @property
    def fixed(self) -> bool:
        """A fix exists; only meaningful for vulnerabilities (others count as fixable)."""
        return self.category != "vulnerability" or bool(self.fixed_version)

    def contract(self) -> dict[str, str]:
        """The stable JSON shape of a blocking finding in ``scan-gate --json``."""
        return {
            "id": self.id,
            "severity": self.severity,
            "target": self.target,
            "class": self.category,
        }


class IgnoreRule(_Frozen):
    """One line of a ``.trivyignore``: an ID, optionally until an expiry date."""

    id: str = Field(description="The ID to ignore (CVE, GHSA, AVD-DS-0002, secret rule).")
    expires: date | None = Field(None, description="Ignore only up to and including this day.")

    def active(self, today: date) -> bool:
        """True while the rule still applies (no expiry, or not past it)."""
        return self.expires is None or today <= self.expires

    def matches(self, finding: Finding) -> bool:
        """True when the rule names the finding by its ID or one of its aliases."""
        wanted = _norm_id(self.id)
        return any(_norm_id(i) == wanted for i in (finding.id, *finding.aliases))


class ScanPolicy(_Frozen):
    """What blocks a delivery."""

    fail_on: tuple[str, ...] = Field(DEFAULT_FAIL_ON, description="Severities that block.")
    ignore_unfixed: bool = Field(False, description="Vulnerabilities without a fix never block.")
    ignore: tuple[IgnoreRule, ...] = Field((), description="Accepted findings (.trivyignore).")
    waive_missing_vulnerability_data: bool = Field(
        False,
        description="Let a change through although trivy scanned no vulnerabilities (no "
        "vulnerability DB): the verdict then says 'vulnerabilities NOT scanned (waived)'. "
        "Off by default: without vulnerability data the gate blocks.",
    )

    @field_validator("fail_on", mode="before")
    @classmethod
    def _severities(cls, value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            value = value.split(",")
        return parse_severities(",".join(str(v) for v in value))

    def key(self, today: date) -> str:
        """A digest of the policy as it applies today (expired rules drop out)."""
        body = {
            "fail_on": sorted(self.fail_on),
            "ignore_unfixed": self.ignore_unfixed,
            "ignore": sorted(_norm_id(r.id) for r in self.ignore if r.active(today)),
            "waive_missing_vulnerability_data": self.waive_missing_vulnerability_data,
        }
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


NOT_SCANNED = "vulnerabilities NOT scanned"
NOT_SCANNED_HINT = (
    "no trivy vulnerability DB: give trivy a DB mirror (--db-repository), or waive it "
    "explicitly with the policy's waive_missing_vulnerability_data"
)


class GateResult(_Frozen):
    """The verdict: counts of everything found, what the policy blocks, and whether
    vulnerabilities were scanned at all (no finding is not the same as no scan)."""

    passed: bool
    counts: dict[str, int]
    blocking: tuple[Finding, ...] = ()
    ignored: int = Field(0, description="Findings the ignore file or ignore-unfixed let through.")
    vulnerabilities_scanned: bool = Field(
        True, description="Trivy ran its vulnerability scanner on every scan gated."
    )
    waived: bool = Field(
        False, description="Vulnerabilities were not scanned and the policy waived that."
    )

    def contract(self) -> dict[str, Any]:
        """``scan-gate --json`` output: passed, counts by severity, blocking findings;
        ``vulnerabilities`` only when they were not scanned ("not scanned" or
        "not scanned (waived)")."""
        doc: dict[str, Any] = {
            "passed": self.passed,
            "counts": {s: self.counts.get(s, 0) for s in SEVERITIES},
            "blocking": [f.contract() for f in self.blocking],
        }
        if not self.vulnerabilities_scanned:
            doc["vulnerabilities"] = "not scanned (waived)" if self.waived else "not scanned"
        return doc

    def summary(self) -> str:
        """One line naming what blocked (or that the gate passed, and on what data)."""
        counts = ", ".join(f"{s} {self.counts.get(s, 0)}" for s in SEVERITIES)
        if self.passed:
            waived = f"; {NOT_SCANNED} (waived)" if not self.vulnerabilities_scanned else ""
            return f"scan gate passed ({counts}){waived}"
        reasons: list[str] = []
        if not self.vulnerabilities_scanned:
            reasons.append(f"{NOT_SCANNED} ({NOT_SCANNED_HINT})")
        if self.blocking:
            names = ", ".join(
                f"{f.id} ({f.severity} {f.category} in {f.target})" for f in self.blocking[:5]
            )
            more = f" and {len(self.blocking) - 5} more" if len(self.blocking) > 5 else ""
            reasons.append(f"{len(self.blocking)} finding(s): {names}{more}")
        return "scan gate blocked by " + "; and by ".join(reasons)

    def verdict(self) -> str:
        """The short verdict a provenance record shows: ``passed (no findings)``,
        ``passed (HIGH 1)``, ``blocked (...)``, or, when no vulnerability was scanned,
        ``vulnerabilities NOT scanned (waived)`` followed by the other scanners' counts."""
        found = ", ".join(f"{s} {n}" for s in SEVERITIES if (n := self.counts.get(s, 0)))
        found = found or "no findings"
        if self.vulnerabilities_scanned:
            return f"{'passed' if self.passed else 'blocked'} ({found})"
        if self.passed:
            return f"{NOT_SCANNED} (waived); secrets and misconfigurations: {found}"
        return f"blocked: {NOT_SCANNED}; secrets and misconfigurations: {found}"


def _norm_id(value: str) -> str:
    value = value.strip().upper()
    return value.removeprefix("AVD-")


def parse_severities(text: str) -> tuple[str, ...]:
    """``"high,critical"`` -> ``("HIGH", "CRITICAL")``; ConfigError on an unknown name."""
    items = [p.strip().upper() for p in text.split(",") if p.strip()]
    if not items:
        raise ConfigError("no severities given (expected some of " + ",".join(SEVERITIES) + ")")
    unknown = [p for p in items if p not in SEVERITIES]
    if unknown:
        raise ConfigError(
            f"unknown severity {unknown[0]!r} (expected some of {','.join(SEVERITIES)})"
        )
    return tuple(dict.fromkeys(items))


def parse_ignorefile(text: str, source: str = ".trivyignore") -> tuple[IgnoreRule, ...]:
    """Parse trivy's ``.trivyignore``: one ID per line, ``#`` comments, ``exp:YYYY-MM-DD``."""
    rules: list[IgnoreRule] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        expires: date | None = None
        for extra in parts[1:]:
            if extra.startswith("exp:"):
                try:
                    expires = date.fromisoformat(extra.removeprefix("exp:"))
                except ValueError:
                    raise ConfigError(
                        f"{source}:{number}: bad expiry {extra!r} (expected exp:YYYY-MM-DD)"
                    ) from None
        rules.append(IgnoreRule(id=parts[0], expires=expires))
    return tuple(rules)


def _severity(value: Any) -> str:
    text = str(value or "UNKNOWN").upper()
    return text if text in SEVERITIES else "UNKNOWN"


def _str_or_none(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def parse_trivy_report(data: Any, source: str = "report") -> tuple[Finding, ...]:
    """Typed findings of one trivy JSON report (SchemaVersion 2).

    Vulnerabilities, secrets and *failed* misconfigurations become findings; passed
    checks are not findings. Anything that is not a trivy report is a ConfigError.
    """
    if not isinstance(data, Mapping) or "SchemaVersion" not in data:
        raise ConfigError(f"{source}: not a trivy JSON report (no SchemaVersion)")
    if data.get("SchemaVersion") != 2:
        raise ConfigError(
            f"{source}: unsupported trivy report SchemaVersion {data.get('SchemaVersion')!r} "
            "(expected 2)"
        )
    results = data.get("Results") or []
    if not isinstance(results, list):
        raise ConfigError(f"{source}: not a trivy JSON report (Results is not a list)")
    findings: list[Finding] = []
    for result in results:
        if not isinstance(result, Mapping):
            raise ConfigError(f"{source}: not a trivy JSON report (a result is not an object)")
        target = str(result.get("Target", ""))
        findings.extend(_vulnerabilities(result, target))
        findings.extend(_secrets(result, target))
        findings.extend(_misconfigurations(result, target))
    return tuple(findings)


def _items(result: Mapping[str, Any], key: str) -> Iterable[Mapping[str, Any]]:
    for item in result.get(key) or []:
        if isinstance(item, Mapping):
            yield item


def _vulnerabilities(result: Mapping[str, Any], target: str) -> Iterable[Finding]:
    for v in _items(result, "Vulnerabilities"):
        yield Finding(
            category="vulnerability",
            id=str(v.get("VulnerabilityID", "")),
            severity=_severity(v.get("Severity")),
            target=target,
            title=str(v.get("Title") or "")[:200],
            aliases=tuple(str(a) for a in v.get("VendorIDs") or []),
            package=_str_or_none(v.get("PkgName")),
            installed_version=_str_or_none(v.get("InstalledVersion")),
            fixed_version=_str_or_none(v.get("FixedVersion")),
        )


def _secrets(result: Mapping[str, Any], target: str) -> Iterable[Finding]:
    for s in _items(result, "Secrets"):
        line = s.get("StartLine")
        yield Finding(
            category="secret",
            id=str(s.get("RuleID", "")),
            severity=_severity(s.get("Severity")),
            target=target,
            title=str(s.get("Title") or ""),  # never Match or Code: they hold the secret
            line=line if isinstance(line, int) else None,
        )


def _misconfigurations(result: Mapping[str, Any], target: str) -> Iterable[Finding]:
    for m in _items(result, "Misconfigurations"):
        if str(m.get("Status", "FAIL")).upper() != "FAIL":
            continue
        ident = str(m.get("ID") or m.get("AVDID") or "")
        aliases = tuple(str(m[k]) for k in ("AVDID",) if m.get(k))
        yield Finding(
            category="misconfiguration",
            id=ident,
            severity=_severity(m.get("Severity")),
            target=target,
            title=str(m.get("Title") or ""),
            aliases=aliases,
        )


def count_by_severity(findings: Iterable[Finding]) -> dict[str, int]:
    """Counts of findings per severity, every severity present (zero when none)."""
    counts = dict.fromkeys(SEVERITIES, 0)
    for f in findings:
        counts[f.severity] = counts.get(f.severity, 0) + 1
    return counts


def evaluate_gate(
    findings: Sequence[Finding],
    policy: ScanPolicy,
    today: date,
    *,
    vulnerabilities_scanned: bool = True,
) -> GateResult:
    """Apply ``policy`` to ``findings``: counts cover all, ``blocking`` what the policy blocks.

    When ``vulnerabilities_scanned`` is False (trivy had no vulnerability DB) the gate
    blocks, whatever the findings, unless the policy waives missing vulnerability data.
    """
    rules = [r for r in policy.ignore if r.active(today)]
    blocking: list[Finding] = []
    ignored = 0
    seen: set[tuple[str, str, str, str | None]] = set()
    for f in findings:
        if f.severity not in policy.fail_on:
            continue
        if any(r.matches(f) for r in rules) or (policy.ignore_unfixed and not f.fixed):
            ignored += 1
            continue
        key = (f.category, f.id, f.target, f.package)
        if key not in seen:
            seen.add(key)
            blocking.append(f)
    order = {s: i for i, s in enumerate(SEVERITIES)}
    blocking.sort(key=lambda f: (order[f.severity], f.category, f.id, f.target))
    waived = not vulnerabilities_scanned and policy.waive_missing_vulnerability_data
    return GateResult(
        passed=not blocking and (vulnerabilities_scanned or waived),
        counts=count_by_severity(findings),
        blocking=tuple(blocking),
        ignored=ignored,
        vulnerabilities_scanned=vulnerabilities_scanned,
        waived=waived,
    )


def render_markdown(gate: GateResult, subject: str, extra: Mapping[str, str] | None = None) -> str:
    """A Prefect markdown artifact body: verdict, counts by severity, blocking findings.

    Only IDs, titles and locations appear; trivy's secret ``Match``/``Code`` never do.
    """
    verdict = "passed" if gate.passed else "**blocked**"
    lines = [f"# Scan of `{subject}`: {verdict}", ""]
    if not gate.vulnerabilities_scanned:
        waived = " (waived by the policy)" if gate.waived else f": {NOT_SCANNED_HINT}"
        lines += [f"**{NOT_SCANNED}**{waived}.", ""]
    for key, value in (extra or {}).items():
        lines.append(f"- {key}: `{value}`")
    lines += ["", "| Severity | Count |", "|---|---|"]
    lines += [f"| {s} | {gate.counts.get(s, 0)} |" for s in SEVERITIES]
    if gate.ignored:
        lines += [
            "",
            f"{gate.ignored} finding(s) let through by the ignore file or ignore-unfixed.",
        ]
    if gate.blocking:
        lines += ["", "## Blocking findings", "", "| ID | Severity | Class | Target | Title |"]
        lines.append("|---|---|---|---|---|")
        for f in gate.blocking:
            where = f"{f.target}:{f.line}" if f.line else f.target
            title = f.title.replace("|", "\\|")
            lines.append(f"| {f.id} | {f.severity} | {f.category} | {where} | {title} |")
    return "\n".join(lines) + "\n"
