"""The anomaly gate: the Mann-Whitney U statistics against known values and properties,
the judgement rules, and the whole gate against a real Prometheus scraping a test
exporter (per-revision request/error counters and latency histograms), down to a
delivery rolled back because its new version is significantly worse."""

from __future__ import annotations

import itertools
import math
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from shipyard.core.catalog import AnomalyGate, AnomalyMetric, Environment
from shipyard.core.errors import PolicyError
from tasks import anomaly_gate as ag
from tasks.anomaly_gate import (
    MetricVerdict,
    bind_revision,
    gate_on_anomaly,
    judge_metric,
    mann_whitney_u,
    overall_outcome,
    parse_range_result,
    render_query,
)
from tests.fixtures.real_prometheus import RealPrometheus, start_prometheus

# -- statistics: known values ------------------------------------------------------------

# R: wilcox.test(x, y, alternative = "greater") on ?wilcox.test's example: W = 35, p = 0.1272.
R_X = [0.80, 0.83, 1.89, 1.04, 1.45, 1.38, 1.91, 1.64, 0.73, 1.46]
R_Y = [1.15, 0.88, 0.90, 0.74, 1.21]
# SciPy's mannwhitneyu example (males vs females): U1 = 17; two-sided asymptotic p =
# 0.11134688653314041 (so one-sided 0.0556734...), exact two-sided 0.1111 (= 14/126).
SCIPY_X = [19, 22, 16, 29, 24]
SCIPY_Y = [20, 11, 17, 12]


def test_known_values_exact() -> None:
    r = mann_whitney_u(R_X, R_Y)
    assert (r.u, r.exact) == (35, True)
    assert round(r.p_value, 4) == 0.1272
    s = mann_whitney_u(SCIPY_X, SCIPY_Y)
    assert (s.u, s.exact) == (17, True)
    assert s.p_value == pytest.approx(7 / 126)


def test_known_values_normal_approximation() -> None:
    s = mann_whitney_u(SCIPY_X, SCIPY_Y, exact_max_product=0)
    assert not s.exact
    assert s.p_value == pytest.approx(0.11134688653314041 / 2, rel=1e-9)
    assert mann_whitney_u(R_X, R_Y, exact_max_product=0).p_value == pytest.approx(0.1223, abs=1e-4)


def test_tie_correction_known_value() -> None:
    # x = [1, 2, 2, 3], y = [2, 3, 3, 4]: midranks x 1, 3, 3, 6 | y 3, 6, 6, 8;
    # R1 = 13, U1 = 3; tie groups (3, 3): variance = 16/12 * (9 - 48/56) = 10.857...;
    # z = (3 - 8 - 0.5) / sqrt(10.857) = -1.66919; p = P(Z >= z) = 0.95246.
    r = mann_whitney_u([1, 2, 2, 3], [2, 3, 3, 4])
    assert (r.u, r.exact) == (3, False)
    assert r.z == pytest.approx(-1.66919, abs=1e-5)
    assert r.p_value == pytest.approx(0.95246, abs=1e-5)


def test_all_equal_is_no_evidence() -> None:
    assert mann_whitney_u([1.0] * 12, [1.0] * 9).p_value == 1.0


def test_empty_sample_is_an_error() -> None:
    with pytest.raises(ValueError):
        mann_whitney_u([], [1.0])


# -- statistics: properties ----------------------------------------------------------------

small = st.lists(st.integers(-20, 20).map(float), min_size=1, max_size=7)
distinct = st.lists(st.integers(-1000, 1000).map(float), min_size=1, max_size=12, unique=True)


def _brute_force_p(x: list[float], y: list[float]) -> float:
    """P(U >= u) over every assignment of the pooled values to x (the definition)."""

    def u_of(xs: list[float], ys: list[float]) -> float:
        return sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in xs for b in ys)

    pooled, n1 = [*x, *y], len(x)
    observed = u_of(x, y)
    hits = total = 0
    for chosen in itertools.combinations(range(len(pooled)), n1):
        rest = [pooled[i] for i in range(len(pooled)) if i not in chosen]
        total += 1
        hits += u_of([pooled[i] for i in chosen], rest) >= observed - 1e-9
    return hits / total


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 1000), min_size=2, max_size=11, unique=True), st.data())
def test_exact_p_matches_enumeration(values: list[int], data: st.DataObject) -> None:
    n1 = data.draw(st.integers(1, len(values) - 1))
    x, y = [float(v) for v in values[:n1]], [float(v) for v in values[n1:]]
    result = mann_whitney_u(x, y)
    assert result.exact
    assert result.p_value == pytest.approx(_brute_force_p(x, y))


@settings(max_examples=80, deadline=None)
@given(small, small)
def test_u_statistics_complement_and_p_in_range(x: list[float], y: list[float]) -> None:
    a, b = mann_whitney_u(x, y), mann_whitney_u(y, x)
    assert a.u + b.u == len(x) * len(y)
    assert a.u == sum(1.0 if p > q else 0.5 if p == q else 0.0 for p in x for q in y)
    assert 0.0 <= a.p_value <= 1.0 and 0.0 <= b.p_value <= 1.0


@settings(max_examples=60, deadline=None)
@given(small, small)
def test_tie_corrected_variance_is_the_permutation_variance(x: list[float], y: list[float]) -> None:
    """With midranks, the normal approximation's variance is exactly U's variance over
    all assignments; checked through z (continuity correction undone)."""
    if len(x) * len(y) <= ag.EXACT_MAX_PRODUCT and len(set(x + y)) == len(x + y):
        return  # exact branch, no z
    r = mann_whitney_u(x, y)
    pooled, n1, n2 = [*x, *y], len(x), len(y)
    us = []
    for chosen in itertools.combinations(range(len(pooled)), n1):
        xs = [pooled[i] for i in chosen]
        ys = [pooled[i] for i in range(len(pooled)) if i not in chosen]
        us.append(sum(1.0 if p > q else 0.5 if p == q else 0.0 for p in xs for q in ys))
    variance = statistics.pvariance(us)
    if variance == 0:
        assert r.p_value == 1.0
        return
    assert r.z == pytest.approx((r.u - n1 * n2 / 2 - 0.5) / math.sqrt(variance))


@settings(max_examples=60, deadline=None)
@given(distinct, distinct)
def test_rank_test_ignores_monotone_transforms(x: list[float], y: list[float]) -> None:
    if set(x) & set(y):
        return
    a = mann_whitney_u(x, y)

    def grow(v: float) -> float:  # strictly increasing, exact on these integers
        return 2 * v**3 + v + 5

    b = mann_whitney_u([grow(v) for v in x], [grow(v) for v in y])
    assert a.u == b.u and a.p_value == pytest.approx(b.p_value)


def test_normal_approximation_is_close_to_exact() -> None:
    x = [float(v) for v in range(0, 40, 2)]  # 20 values
    y = [float(v) + 3.5 for v in range(0, 30, 2)]  # 15 values
    exact = mann_whitney_u(x, y)
    approx = mann_whitney_u(x, y, exact_max_product=0)
    assert exact.exact and not approx.exact
    assert abs(exact.p_value - approx.p_value) < 0.01


def test_a_clear_shift_is_significant_and_the_reverse_is_not() -> None:
    base = [float(v % 7) for v in range(30)]
    worse = [v + 10 for v in base]
    assert mann_whitney_u(worse, base).p_value < 1e-6
    assert mann_whitney_u(base, worse).p_value > 0.99


# -- judgement (pure) ------------------------------------------------------------------------


def _gate(url: str = "http://127.0.0.1:9", **kw: Any) -> AnomalyGate:
    metrics = kw.pop(
        "metrics",
        [
            AnomalyMetric(name="error-ratio", query=ERROR_RATIO),
            AnomalyMetric(name="latency-p90", query=LATENCY_P90),
        ],
    )
    defaults: dict[str, Any] = {
        "prometheus_url": url,
        "metrics": metrics,
        "baseline": "v1",
        "window_seconds": 15,
        "step_seconds": 1,
        "min_samples": 10,
        "allowed_increase": 0.1,
    }
    return AnomalyGate(**{**defaults, **kw})


def test_judge_metric_rules() -> None:
    metric = AnomalyMetric(name="errors", query="q")
    base = [0.01 * (i % 5) for i in range(20)]
    gate = _gate(revision="v2")
    assert judge_metric(metric, base, base, gate).outcome == "passed"
    worse = [v + 0.2 for v in base]
    failed = judge_metric(metric, worse, base, gate)
    assert failed.outcome == "failed" and failed.p_value is not None and failed.p_value < 0.05
    assert "significantly higher" in failed.message
    # Better is never a failure; "lower is worse" flips the direction.
    assert judge_metric(metric, base, worse, gate).outcome == "passed"
    throughput = AnomalyMetric(name="rps", query="q", higher_is_worse=False)
    assert judge_metric(throughput, base, worse, gate).outcome == "failed"
    # Significant but within the tolerated relative increase of the median: passed.
    slightly = [v + 1.03 for v in base]
    tolerant = _gate(revision="v2", allowed_increase=0.5)
    assert judge_metric(metric, slightly, [v + 1 for v in base], tolerant).outcome == "passed"
    assert (
        judge_metric(
            metric, slightly, [v + 1 for v in base], _gate(revision="v2", allowed_increase=0)
        ).outcome
        == "failed"
    )
    nodata = judge_metric(metric, base[:3], base, gate)
    assert nodata.outcome == "not-checked" and "no data: 3 new / 20 baseline" in nodata.message


def test_overall_outcome_never_passes_silently() -> None:
    ok = MetricVerdict(name="a", outcome="passed")
    none = MetricVerdict(name="b", outcome="not-checked")
    bad = MetricVerdict(name="c", outcome="failed")
    assert overall_outcome([ok, ok], _gate(revision="v2")) == "passed"
    assert overall_outcome([ok, none], _gate(revision="v2")) == "not-checked"
    assert overall_outcome([ok, none], _gate(revision="v2", on_no_data="fail")) == "failed"
    assert overall_outcome([none, bad], _gate(revision="v2")) == "failed"


def test_templating_and_parsing() -> None:
    assert render_query('x{revision="{{revision}}"} + y{r="{{ revision }}"}', "v9") == (
        'x{revision="v9"} + y{r="v9"}'
    )
    bound = bind_revision(_gate(), "sha256:abc")
    assert (bound.revision, bound.baseline) == ("sha256:abc", "v1")
    doc = {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [
                {"metric": {"pod": "a"}, "values": [[1, "0.5"], [2, "NaN"]]},
                {"metric": {"pod": "b"}, "values": [[1, "+Inf"], [2, "2"]]},
            ],
        },
    }
    assert parse_range_result(doc) == [0.5, 2.0]
    with pytest.raises(ValueError, match="bad_data"):
        parse_range_result({"status": "error", "error": "bad_data: parse error"})


def test_catalog_section() -> None:
    env = Environment.model_validate(
        {
            "name": "prod",
            "path": "envs/prod",
            "namespace": "shop",
            "verify": {
                "anomaly": {
                    "prometheus_url": "http://prom:9090",
                    "baseline": "stable",
                    "revision": "canary",
                    "metrics": [{"name": "errors", "query": ERROR_RATIO}],
                }
            },
        }
    )
    assert env.verify.anomaly is not None and env.verify.anomaly.alpha == 0.05
    assert env.verify.anomaly.on_no_data == "not-checked"
    with pytest.raises(ValueError):
        AnomalyGate(prometheus_url="http://p", baseline="v1", metrics=[])


# -- a real Prometheus fed by a test exporter ---------------------------------------------

ERROR_RATIO = (
    'sum(rate(app_requests_total{revision="{{revision}}",code="500"}[5s]))'
    ' / sum(rate(app_requests_total{revision="{{revision}}"}[5s]))'
)
LATENCY_P90 = (
    "histogram_quantile(0.9, sum by (le) "
    '(rate(app_request_duration_seconds_bucket{revision="{{revision}}"}[5s])))'
)
LATENCIES = (0.05, 0.08, 0.1, 0.12, 0.2)
# revision -> (one error every N requests, latency factor)
REVISIONS = {"v1": (50, 1.0), "good": (50, 1.0), "bad": (4, 4.0)}


class TrafficExporter:
    """A prometheus_client HTTP server whose counters and histograms grow in a thread,
    per revision: ``v1`` (the baseline), ``good`` (alike) and ``bad`` (errors, slow)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "app_requests", "Requests served.", ["revision", "code"], registry=self.registry
        )
        self.latency = Histogram(
            "app_request_duration_seconds",
            "Request latency.",
            ["revision"],
            registry=self.registry,
        )
        for revision in REVISIONS:
            for code in ("200", "500"):
                self.requests.labels(revision, code)
        self.server, _ = start_http_server(0, addr="127.0.0.1", registry=self.registry)
        self.port = self.server.server_port
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve_traffic, daemon=True)
        self._thread.start()

    def _serve_traffic(self) -> None:
        served = dict.fromkeys(REVISIONS, 0)
        while not self._stop.wait(0.1):
            for revision, (every, factor) in REVISIONS.items():
                for _ in range(5):
                    served[revision] += 1
                    n = served[revision]
                    self.requests.labels(revision, "500" if n % every == 0 else "200").inc()
                    self.latency.labels(revision).observe(LATENCIES[n % len(LATENCIES)] * factor)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def prom() -> Iterator[RealPrometheus]:
    """Prometheus scraping the exporter every second, with enough history for a gate."""
    exporter = TrafficExporter()
    prometheus = start_prometheus({"app": [f"127.0.0.1:{exporter.port}"]})
    try:
        prometheus.wait_up(1)
        deadline = time.monotonic() + 60
        gate = _gate(prometheus.url, revision="v1")
        while time.monotonic() < deadline:
            with httpx.Client() as client:
                samples = [
                    ag._fetch(client, gate, render_query(m.query, "v1"), time.time())
                    for m in gate.metrics
                ]
            if min(len(s) for s in samples) >= 13:
                break
            time.sleep(1)
        yield prometheus
    finally:
        prometheus.stop()
        exporter.stop()


def test_good_version_passes(prom: RealPrometheus) -> None:
    result = gate_on_anomaly(_gate(prom.url, revision="good"))
    assert result.outcome == "passed", result.message
    assert [m.name for m in result.metrics] == ["error-ratio", "latency-p90"]
    assert all(m.new_samples >= 10 and m.baseline_samples >= 10 for m in result.metrics)


def test_bad_version_fails(prom: RealPrometheus) -> None:
    with pytest.raises(PolicyError) as info:
        gate_on_anomaly(_gate(prom.url, revision="bad"))
    message = str(info.value)
    assert "anomaly gate failed: bad vs v1" in message
    assert "error-ratio: new median 0.25" in message and "significantly higher" in message
    result = ag.run_anomaly_gate(_gate(prom.url, revision="bad"), httpx.Client())
    assert [m.outcome for m in result.metrics] == ["failed", "failed"]
    assert all(m.p_value is not None and m.p_value < 0.05 for m in result.metrics)


def test_no_data_is_not_checked_or_fails_per_config(prom: RealPrometheus) -> None:
    result = gate_on_anomaly(_gate(prom.url, revision="absent"))
    assert result.outcome == "not-checked"
    assert all(m.outcome == "not-checked" and m.new_samples == 0 for m in result.metrics)
    with pytest.raises(PolicyError, match="failed: absent vs v1"):
        gate_on_anomaly(_gate(prom.url, revision="absent", on_no_data="fail"))


def test_unreachable_prometheus_fails_the_gate() -> None:
    with pytest.raises(PolicyError, match="cannot query Prometheus"):
        gate_on_anomaly(_gate("http://127.0.0.1:9", revision="good"))


def test_bad_promql_fails_the_gate(prom: RealPrometheus) -> None:
    gate = _gate(prom.url, revision="good", metrics=[AnomalyMetric(name="x", query="sum(")])
    with pytest.raises(PolicyError, match="cannot query Prometheus"):
        gate_on_anomaly(gate)


# -- the delivery: a significantly worse new version is rolled back -------------------------


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
@pytest.mark.parametrize("revision", ["good", "bad"])
def test_delivery_rolls_back_on_anomaly(
    prom: RealPrometheus,
    sim_cluster: Any,
    sim_namespace: str,
    oci_registry: Any,
    tmp_path: Path,
    revision: str,
) -> None:
    from blocks.cluster import KubernetesCluster
    from blocks.gitops import GitOpsRepository
    from flows.sync_verify import RolledBackError, VerifyPlan, sync_and_verify
    from tasks.sync_app import SyncConfig, sync
    from tasks.verify_rollout import VerifyConfig
    from tests.tasks.k8s_objects import GitOpsRepo, kustomize_env

    gitops = GitOpsRepo(tmp_path)
    image = f"{oci_registry.host}/{sim_namespace}/web"
    oci_registry.push_image(f"{sim_namespace}/web", "1")
    oci_registry.push_image(f"{sim_namespace}/web", "2")
    v1 = gitops.commit(kustomize_env(image, "1"), "web: v1")
    cfg = SyncConfig(
        driver="apply", repo=gitops.url, path="envs/dev", namespace=sim_namespace, app="web"
    )
    sync(cfg.model_copy(update={"revision": v1}), sim_cluster.api_client())
    v2 = gitops.commit(kustomize_env(image, "2"), "web: v2")
    workload = VerifyConfig(namespace=sim_namespace, workload="deployment/web", timeout_seconds=20)
    plan = VerifyPlan(workloads=[workload], anomaly=_gate(prom.url, revision=revision))
    run = lambda: sync_and_verify(  # noqa: E731
        KubernetesCluster(kubeconfig_path=str(sim_cluster.kubeconfig)),
        GitOpsRepository(url=gitops.url),
        v2,
        cfg,
        plan,
        app="web",
        environment="dev",
    )
    if revision == "good":
        assert run().commit == v2
        return
    with pytest.raises(RolledBackError) as info:
        run()
    assert "anomaly gate failed: bad vs v1" in info.value.reason
    assert isinstance(info.value.__cause__, PolicyError)
    assert gitops.subjects()[:2] == ['Revert "web: v2"', "web: v2"]
