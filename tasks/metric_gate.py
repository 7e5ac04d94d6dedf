"""Metric gates: Prometheus queries judged the way Argo Rollouts runs an analysis.

Config is the catalog's :class:`~shipyard.core.catalog.MetricGate`: a PromQL query, a
``max_value``/``min_value`` success condition, ``interval_seconds`` between
``count`` measurements and a ``failure_limit`` of failed measurements tolerated. As in
Argo Rollouts, each measurement is Successful, Failed or Error (query failed, or no
sample); the analysis fails as soon as failures exceed ``failure_limit`` (no need to
wait for the rest) or errors exceed ``error_limit`` in a row, and succeeds after
``count`` measurements otherwise.

Pure core: :func:`parse_query_result`, :func:`judge_value`, :func:`analysis_phase`. I/O:
:func:`run_analysis` over an httpx client (a port); :func:`gate_on_metrics` runs it with
its own client and raises :class:`PolicyError` when the analysis fails. The task
``metric_gate`` is in :mod:`tasks.steps.rollout`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import httpx
from pydantic import BaseModel, Field

from shipyard.core.catalog import MetricGate
from shipyard.core.errors import PolicyError

__all__ = [
    "AnalysisResult",
    "Measurement",
    "analysis_phase",
    "gate_on_metrics",
    "judge_value",
    "parse_query_result",
    "run_analysis",
]

Phase = Literal["Successful", "Failed", "Error"]
ERROR_LIMIT = 4  # Argo Rollouts' default consecutiveErrorLimit


class Measurement(BaseModel):
    """One evaluation of the query."""

    phase: Phase = Field(description="Successful, Failed or Error.")
    value: float | None = Field(None, description="The sample, when there was one.")
    message: str = Field("", description="Why it failed or errored.")


class AnalysisResult(BaseModel):
    """Outcome of a whole analysis."""

    phase: Literal["Successful", "Failed", "Error"] = Field(description="Analysis outcome.")
    query: str = Field(description="The PromQL query.")
    measurements: list[Measurement] = Field(default_factory=list, description="In order.")
    message: str = Field("", description="Summary.")


def parse_query_result(doc: Any) -> float:
    """The single number of a Prometheus ``/api/v1/query`` answer; ValueError otherwise."""
    if not isinstance(doc, dict) or doc.get("status") != "success":
        error = doc.get("error") if isinstance(doc, dict) else None
        raise ValueError(f"query failed: {error or doc!r}"[:200])
    data = doc.get("data") or {}
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar" and isinstance(result, list):
        return float(result[1])
    if kind == "vector" and isinstance(result, list):
        if not result:
            raise ValueError("query returned no samples")
        if len(result) > 1:
            raise ValueError(f"query returned {len(result)} series, expected one")
        return float(result[0]["value"][1])
    raise ValueError(f"unsupported result type {kind!r}")


def judge_value(value: float, gate: MetricGate) -> Measurement:
    """A sample against the gate's bounds (NaN always fails)."""
    if math.isnan(value):
        return Measurement(phase="Failed", value=value, message="value is NaN")
    if gate.max_value is not None and value > gate.max_value:
        return Measurement(phase="Failed", value=value, message=f"{value:g} > {gate.max_value:g}")
    if gate.min_value is not None and value < gate.min_value:
        return Measurement(phase="Failed", value=value, message=f"{value:g} < {gate.min_value:g}")
    return Measurement(phase="Successful", value=value)


def analysis_phase(
    measurements: Sequence[Measurement], gate: MetricGate, error_limit: int = ERROR_LIMIT
) -> Phase | None:
    """The analysis outcome so far, or None while it must keep measuring."""
    failed = sum(1 for m in measurements if m.phase == "Failed")
    if failed > gate.failure_limit:
        return "Failed"
    streak = 0
    for m in reversed(measurements):
        if m.phase != "Error":
            break
        streak += 1
    if streak > error_limit:
        return "Error"
    if len([m for m in measurements if m.phase != "Error"]) >= gate.count:
        return "Successful"
    return None


def run_analysis(
    gate: MetricGate,
    client: httpx.Client,
    *,
    sleep: Callable[[float], None] = time.sleep,
    error_limit: int = ERROR_LIMIT,
) -> AnalysisResult:
    """Measure every ``interval_seconds`` until :func:`analysis_phase` decides."""
    url = gate.prometheus_url.rstrip("/") + "/api/v1/query"
    measurements: list[Measurement] = []
    while True:
        try:
            response = client.get(url, params={"query": gate.query})
            doc = response.json() if response.content else {}
            if response.status_code >= 400 and not isinstance(doc, dict):
                raise ValueError(f"HTTP {response.status_code}")
            measurements.append(judge_value(parse_query_result(doc), gate))
        except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as exc:
            measurements.append(Measurement(phase="Error", message=str(exc)[:200]))
        phase = analysis_phase(measurements, gate, error_limit)
        if phase is not None:
            last = next((m.message for m in reversed(measurements) if m.message), "")
            return AnalysisResult(
                phase=phase,
                query=gate.query,
                measurements=measurements,
                message=f"{phase}: {sum(m.phase == 'Failed' for m in measurements)} failed of "
                f"{len(measurements)} measurements" + (f" (last: {last})" if last else ""),
            )
        sleep(gate.interval_seconds)


def gate_on_metrics(gate: MetricGate) -> AnalysisResult:
    """Run the analysis; PolicyError (a failed gate, not retried) unless it is Successful."""
    with httpx.Client(timeout=10.0) as client:
        result = run_analysis(gate, client)
    if result.phase != "Successful":
        raise PolicyError(f"metric gate {gate.query!r}: {result.message}")
    return result
