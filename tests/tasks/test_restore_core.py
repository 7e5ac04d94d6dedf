"""Pure parts of the restore drill: plan order, parity report, readiness, verdict, report."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tasks.backup_manifest import build_manifest, encode_object, entry_for
from tasks.drill_report import DrillResult, evaluate, render_report, trend_rows
from tasks.restore_objects import DRILL_LABEL, parity_report, plan_restore, workload_ready

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def _obj(kind: str, name: str, api: str = "v1", ns: str | None = "shop", **extra: Any) -> dict:
    meta: dict[str, Any] = {"name": name}
    if ns:
        meta["namespace"] = ns
    return {"apiVersion": api, "kind": kind, "metadata": meta, **extra}


def _plan() -> Any:
    objects = [
        _obj("Service", "web", spec={"ports": [{"port": 80}]}),
        _obj("Deployment", "web", api="apps/v1", spec={"replicas": 1}),
        _obj("Secret", "db", data={"password": "c2VjcmV0LXZhbHVl"}),
        _obj("Namespace", "shop", ns=None),
        _obj("Application", "shop", api="argoproj.io/v1alpha1", spec={"project": "default"}),
        _obj(
            "CustomResourceDefinition",
            "applications.argoproj.io",
            api="apiextensions.k8s.io/v1",
            ns=None,
        ),
        _obj(
            "RoleBinding",
            "view",
            api="rbac.authorization.k8s.io/v1",
            subjects=[{"kind": "ServiceAccount", "name": "app", "namespace": "shop"}],
        ),
    ]
    entries = [entry_for(o, encode_object(o)) for o in objects]
    manifest = build_manifest(
        backup_id="20261127T120000Z-000001",
        cluster="prod",
        created_at=NOW,
        entries=entries,
        namespaces=["shop"],
    )
    contents = {e.path: o for e, o in zip(entries, objects, strict=True)}
    return plan_restore(manifest, contents, {"shop": "shop-drill-x1"}, "x1")


def test_plan_orders_by_dependency_and_maps_namespaces() -> None:
    plan = _plan()
    assert [p.kind for p in plan] == [
        "CustomResourceDefinition",
        "Namespace",
        "RoleBinding",
        "Secret",
        "Deployment",
        "Application",
        "Service",
    ]
    ns = plan[1].obj
    assert ns["metadata"] == {"name": "shop-drill-x1", "labels": {DRILL_LABEL: "x1"}}
    assert plan[2].obj["subjects"][0]["namespace"] == "shop-drill-x1"
    assert all(p.namespace in (None, "shop-drill-x1") for p in plan)
    assert plan[3].secret and not plan[4].secret


def test_parity_report_counts_and_hides_secret_values() -> None:
    plan = _plan()
    live: dict[str, Any] = {p.path: dict(p.obj) for p in plan}
    service = next(p for p in plan if p.kind == "Service")
    secret = next(p for p in plan if p.kind == "Secret")
    deployment = next(p for p in plan if p.kind == "Deployment")
    live[service.path] = None
    live[secret.path] = {**secret.obj, "data": {"password": "b3RoZXItdmFsdWU="}}
    # server-side defaults and status do not count
    live[deployment.path] = {
        **deployment.obj,
        "spec": {"replicas": 1, "paused": False},
        "status": {"replicas": 1},
    }
    report = parity_report(plan, live)
    assert report.expected == 7 and report.matched == 5
    assert abs(report.parity - 5 / 7) < 1e-9
    assert "Service/shop-drill-x1/web: missing after restore" in report.mismatches
    assert "Secret/shop-drill-x1/db .data.password: changed" in report.mismatches
    assert not any("c2VjcmV0" in m or "b3RoZXI" in m for m in report.mismatches)


def test_workload_ready() -> None:
    available = {"type": "Available", "status": "True"}
    assert workload_ready(
        {"kind": "Deployment", "spec": {"replicas": 2}, "status": {"conditions": [available]}}
    )
    assert not workload_ready({"kind": "Deployment", "spec": {"replicas": 2}, "status": {}})
    assert not workload_ready(
        {
            "kind": "Deployment",
            "metadata": {"generation": 2},
            "status": {"observedGeneration": 1, "conditions": [available]},
        }
    )
    assert workload_ready({"kind": "Deployment", "spec": {"replicas": 0}})
    assert workload_ready(
        {"kind": "StatefulSet", "spec": {"replicas": 2}, "status": {"readyReplicas": 2}}
    )
    assert not workload_ready(
        {"kind": "DaemonSet", "status": {"desiredNumberScheduled": 3, "numberReady": 2}}
    )


def _result(**kw: Any) -> DrillResult:
    base: dict[str, Any] = {
        "passed": False,
        "backup_id": "b1",
        "started_at": NOW,
        "parity": 1.0,
        "rto_seconds": 10.0,
        "rpo_seconds": 100.0,
    }
    return DrillResult(**{**base, **kw})


def test_evaluate_targets_and_cleanup() -> None:
    assert evaluate(_result()) == []
    reasons = evaluate(
        _result(
            parity=0.5,
            mismatches=["x"],
            rto_target_seconds=5.0,
            rpo_target_seconds=50.0,
            unavailable=["Deployment/a/b"],
            cleanup_left=["/api/v1/namespaces/a-drill-1"],
        )
    )
    assert [r.split()[0] for r in reasons] == ["parity", "workloads", "RTO", "RPO", "cleanup"]


def test_report_and_trend() -> None:
    passed = _result(
        passed=True,
        drill_id="d1",
        namespaces={"shop": "shop-drill-d1"},
        timings={"verify": 1.0, "restore": 2.0},
    )
    failed = _result(failures=["RTO 10.0s exceeds target 5.0s"], mismatches=["a: b"])
    text = render_report(passed)
    assert text.startswith("# Restore drill PASSED")
    assert "| parity | 1.0000 | 1.0 |" in text and "`shop` -> `shop-drill-d1`" in text
    assert "Phases (s): verify 1.0, restore 2.0" in text
    assert "## Failures" in render_report(failed)
    rows = trend_rows([passed, failed])
    assert [r["passed"] for r in rows] == [True, False]
    assert rows[0]["started"] == "2026-11-27 12:00"
