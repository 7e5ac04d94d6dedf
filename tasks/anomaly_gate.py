"""The anomaly gate: is the new version's behaviour significantly worse than the old one's?

Config is the catalog's :class:`~shipyard.core.catalog.AnomalyGate` (``verify.anomaly``).
For each :class:`~shipyard.core.catalog.AnomalyMetric` (an error ratio, a latency
quantile, ...) the PromQL ``query`` is run as a range query over the last
``window_seconds`` twice: with ``{{revision}}`` replaced by the new version's label value,
then by the baseline's. Every point of every returned series is one sample (so a query
by pod gives one sample per pod and step); NaN and infinite points (0/0 without traffic)
are dropped. The two samples are compared with a one-sided Mann-Whitney U test, as
Kayenta's judge does, instead of a fixed threshold: the metric fails when the new
version is stochastically greater (or smaller, with ``higher_is_worse: false``) at level
``alpha`` *and* its median moved the wrong way by more than ``allowed_increase``
(relative). Fewer than ``min_samples`` on either side is "no data": reported as
``not-checked`` or, with ``on_no_data: fail``, as a failure; never a silent pass.

Statistics (pure, :func:`mann_whitney_u`): ranks of the pooled samples with ties given
their average rank; ``U1 = R1 - n1(n1+1)/2``. With no ties and ``n1*n2 <= 400`` the
p-value is exact (the U distribution counted by recursion); otherwise the normal
approximation with continuity correction and the tie-corrected variance
``n1*n2/12 * ((n+1) - sum(t^3 - t) / (n(n-1)))``.

I/O: :func:`run_anomaly_gate` over an httpx client (a port); :func:`gate_on_anomaly`
with its own client raises :class:`PolicyError` when the gate fails. The task
``anomaly_gate`` is in :mod:`tasks.steps.rollout`.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any, Literal

import httpx
from pydantic import BaseModel, Field

from shipyard.core.catalog import AnomalyGate, AnomalyMetric
from shipyard.core.errors import PolicyError

__all__ = [
    "EXACT_MAX_PRODUCT",
    "AnomalyResult",
    "MetricVerdict",
    "UTest",
    "bind_revision",
    "gate_on_anomaly",
    "judge_metric",
    "mann_whitney_u",
    "overall_outcome",
    "parse_range_result",
    "render_query",
    "run_anomaly_gate",
]

EXACT_MAX_PRODUCT = 400  # exact p-values when there are no ties and n1*n2 is at most this
Outcome = Literal["passed", "failed", "not-checked"]


class UTest(BaseModel):
    """A one-sided Mann-Whitney U test of ``x`` greater than ``y``."""

    u: float = Field(description="U of x: pairs (xi, yj) with xi > yj, ties counting 1/2.")
    n1: int = Field(description="Size of x.")
    n2: int = Field(description="Size of y.")
    z: float | None = Field(None, description="Normal score (None when exact).")
    p_value: float = Field(description="P(U >= u) under the null hypothesis.")
    exact: bool = Field(description="Exact distribution rather than normal approximation.")


class MetricVerdict(BaseModel):
    """One metric's comparison."""

    name: str = Field(description="The metric's name.")
    outcome: Outcome = Field(description="passed, failed or not-checked (no data).")
    new_samples: int = Field(0, description="Samples of the new version.")
    baseline_samples: int = Field(0, description="Samples of the baseline.")
    new_median: float | None = Field(None, description="Median of the new version.")
    baseline_median: float | None = Field(None, description="Median of the baseline.")
    u: float | None = Field(None, description="Mann-Whitney U of the new version.")
    p_value: float | None = Field(None, description="One-sided p-value.")
    message: str = Field("", description="Why, in one line.")


class AnomalyResult(BaseModel):
    """The whole gate."""

    outcome: Outcome = Field(description="passed, failed or not-checked.")
    revision: str = Field(description="The new version's label value.")
    baseline: str = Field(description="The baseline's label value.")
    metrics: list[MetricVerdict] = Field(default_factory=list, description="Per metric.")
    message: str = Field("", description="Summary.")


# -- statistics (pure) -------------------------------------------------------------------


def _ranks(values: Sequence[float]) -> tuple[list[float], list[int]]:
    """Average ranks (1-based) of ``values`` and the sizes of their tie groups."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    ties: list[int] = []
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        ties.append(j - i + 1)
        i = j + 1
    return ranks, ties


@lru_cache(maxsize=4096)
def _u_counts(m: int, n: int) -> tuple[int, ...]:
    """How many of the C(m+n, m) orderings give each U = 0..m*n (no ties)."""
    if m == 0 or n == 0:
        return (1,)
    # The largest value is from x (adds n to U: it beats all of y) or from y (adds 0).
    from_x, from_y = _u_counts(m - 1, n), _u_counts(m, n - 1)
    out = [0] * (m * n + 1)
    for u, c in enumerate(from_x):
        out[u + n] += c
    for u, c in enumerate(from_y):
        out[u] += c
    return tuple(out)


def _normal_sf(z: float) -> float:
    """P(Z >= z) for a standard normal Z."""
    return 0.5 * math.erfc(z / math.sqrt(2))


def mann_whitney_u(
    x: Sequence[float], y: Sequence[float], *, exact_max_product: int = EXACT_MAX_PRODUCT
) -> UTest:
    """One-sided Mann-Whitney U test that ``x`` tends to be greater than ``y``.

    The p-value is exact when there are no ties and ``len(x) * len(y)`` is at most
    ``exact_max_product`` (0 forces the normal approximation). ValueError when either
    sample is empty.
    """
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        raise ValueError("both samples need at least one value")
    ranks, ties = _ranks([*x, *y])
    u = sum(ranks[:n1]) - n1 * (n1 + 1) / 2
    if all(t == 1 for t in ties) and n1 * n2 <= exact_max_product:
        counts = _u_counts(n1, n2)
        at_least = sum(counts[math.ceil(u - 1e-9) :])
        return UTest(u=u, n1=n1, n2=n2, p_value=at_least / math.comb(n1 + n2, n1), exact=True)
    n = n1 + n2
    tie_term = sum(t**3 - t for t in ties) / (n * (n - 1))
    variance = n1 * n2 / 12 * ((n + 1) - tie_term)
    if variance <= 0:  # every value equal: no evidence either way
        return UTest(u=u, n1=n1, n2=n2, z=0.0, p_value=1.0, exact=False)
    z = (u - n1 * n2 / 2 - 0.5) / math.sqrt(variance)
    return UTest(u=u, n1=n1, n2=n2, z=z, p_value=min(1.0, _normal_sf(z)), exact=False)


def judge_metric(
    metric: AnomalyMetric, new: Sequence[float], baseline: Sequence[float], gate: AnomalyGate
) -> MetricVerdict:
    """The verdict for one metric from its two samples (pure)."""
    base = MetricVerdict(
        name=metric.name,
        outcome="not-checked",
        new_samples=len(new),
        baseline_samples=len(baseline),
    )
    if len(new) < gate.min_samples or len(baseline) < gate.min_samples:
        return base.model_copy(
            update={
                "message": f"{metric.name}: no data: {len(new)} new / {len(baseline)} "
                f"baseline samples, "
                f"{gate.min_samples} needed"
            }
        )
    sign = 1.0 if metric.higher_is_worse else -1.0
    test = mann_whitney_u([sign * v for v in new], [sign * v for v in baseline])
    new_median, base_median = statistics.median(new), statistics.median(baseline)
    limit = base_median + sign * abs(base_median) * gate.allowed_increase
    # With no tolerance the test alone decides (a shift in the tail may leave medians equal).
    worse_enough = gate.allowed_increase == 0 or (new_median - limit) * sign > 0
    direction = "higher" if metric.higher_is_worse else "lower"
    failed = test.p_value < gate.alpha and worse_enough
    verdict = "significantly" if failed else "not significantly"
    message = (
        f"{metric.name}: new median {new_median:.4g} vs baseline {base_median:.4g}, "
        f"{verdict} {direction} (U={test.u:g}, p={test.p_value:.3g}, alpha={gate.alpha:g}"
        f"{', exact' if test.exact else ''})"
    )
    return base.model_copy(
        update={
            "outcome": "failed" if failed else "passed",
            "new_median": new_median,
            "baseline_median": base_median,
            "u": test.u,
            "p_value": test.p_value,
            "message": message,
        }
    )


def overall_outcome(verdicts: Sequence[MetricVerdict], gate: AnomalyGate) -> Outcome:
    """failed if any metric failed (or had no data under ``on_no_data: fail``); passed
    only when every metric passed; not-checked otherwise."""
    if any(v.outcome == "failed" for v in verdicts):
        return "failed"
    if any(v.outcome == "not-checked" for v in verdicts):
        return "failed" if gate.on_no_data == "fail" else "not-checked"
    return "passed"


def render_query(query: str, revision: str) -> str:
    """``query`` with ``{{revision}}`` (spaces allowed inside the braces) replaced."""
    for token in ("{{revision}}", "{{ revision }}"):
        query = query.replace(token, revision)
    return query


def bind_revision(gate: AnomalyGate, digest: str | None) -> AnomalyGate:
    """The gate with ``{{digest}}`` in ``revision``/``baseline`` replaced by ``digest``."""
    if not digest:
        return gate
    return gate.model_copy(
        update={
            "revision": gate.revision.replace("{{digest}}", digest),
            "baseline": gate.baseline.replace("{{digest}}", digest),
        }
    )


def parse_range_result(doc: Any) -> list[float]:
    """Every finite value of a ``/api/v1/query_range`` (or instant vector) answer."""
    if not isinstance(doc, dict) or doc.get("status") != "success":
        error = doc.get("error") if isinstance(doc, dict) else None
        raise ValueError(f"query failed: {error or doc!r}"[:200])
    data = doc.get("data") or {}
    kind, result = data.get("resultType"), data.get("result")
    if not isinstance(result, list):
        raise ValueError(f"unsupported result type {kind!r}")
    points: list[Any] = []
    if kind == "matrix":
        for series in result:
            points += series.get("values") or []
    elif kind == "vector":
        points = [series.get("value") for series in result]
    else:
        raise ValueError(f"unsupported result type {kind!r}")
    values = [float(p[1]) for p in points if p]
    return [v for v in values if math.isfinite(v)]


# -- I/O -----------------------------------------------------------------------------------


def _fetch(client: httpx.Client, gate: AnomalyGate, query: str, end: float) -> list[float]:
    url = gate.prometheus_url.rstrip("/") + "/api/v1/query_range"
    params = {
        "query": query,
        "start": f"{end - gate.window_seconds:.3f}",
        "end": f"{end:.3f}",
        "step": f"{gate.step_seconds:g}",
    }
    response = client.get(url, params=params)
    doc = response.json() if response.content else {}
    if response.status_code >= 400 and not isinstance(doc, dict):
        raise ValueError(f"HTTP {response.status_code}")
    return parse_range_result(doc)


def run_anomaly_gate(
    gate: AnomalyGate,
    client: httpx.Client,
    *,
    now: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> AnomalyResult:
    """Wait ``delay_seconds``, query both versions of every metric, judge them.

    A failed query (unreachable Prometheus, bad PromQL) is a ValueError/HTTPError, not
    "no data": a gate that cannot ask must not look like a quiet version.
    """
    if gate.delay_seconds:
        sleep(gate.delay_seconds)
    end = now()
    verdicts = []
    for metric in gate.metrics:
        new = _fetch(client, gate, render_query(metric.query, gate.revision), end)
        baseline = _fetch(client, gate, render_query(metric.query, gate.baseline), end)
        verdicts.append(judge_metric(metric, new, baseline, gate))
    outcome = overall_outcome(verdicts, gate)
    summary = "; ".join(v.message for v in verdicts)
    return AnomalyResult(
        outcome=outcome,
        revision=gate.revision,
        baseline=gate.baseline,
        metrics=verdicts,
        message=f"{outcome}: {gate.revision} vs {gate.baseline}: {summary}",
    )


def gate_on_anomaly(gate: AnomalyGate) -> AnomalyResult:
    """Run the gate with a client of its own; PolicyError (not retried) when it fails.

    A ``not-checked`` result is returned, not raised: the caller reports it.
    """
    try:
        with httpx.Client(timeout=15.0) as client:
            result = run_anomaly_gate(gate, client)
    except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise PolicyError(f"anomaly gate: cannot query Prometheus: {exc}"[:300]) from exc
    if result.outcome == "failed":
        raise PolicyError(f"anomaly gate {result.message}")
    return result
