"""The metric names Shipyard's rules and dashboards may use (metrics_contract, issue 15).

Exporter and bridge names come from Shipyard; the simulator's are the real exporters'
(kube-state-metrics, Argo CD), so the same queries work against a real cluster.
Histograms are listed by their base name; ``_bucket``, ``_sum`` and ``_count`` follow.
"""

from __future__ import annotations

HISTOGRAMS = frozenset({"shipyard_delivery_duration_seconds", "shipyard_lead_time_seconds"})

EXPORTER = frozenset(
    {
        "shipyard_deliveries_total",
        "shipyard_rollbacks_total",
        "shipyard_backup_last_success_timestamp_seconds",
        "shipyard_drill_last_success_timestamp_seconds",
        "shipyard_drill_last_run_timestamp_seconds",
        "shipyard_drill_rto_seconds",
        "shipyard_drill_rpo_seconds",
        "shipyard_change_pending_since_timestamp_seconds",
        "shipyard_drift_detected",
        "shipyard_work_pool_workers_online",
        "shipyard_dora_deployment_frequency_per_day",
        "shipyard_dora_lead_time_hours_median",
        "shipyard_dora_change_failure_rate",
        "shipyard_dora_time_to_restore_minutes_mean",
        "shipyard_dora_availability_percent",
        "shipyard_dora_platform_score",
        "shipyard_exporter_last_refresh_timestamp_seconds",
    }
    | HISTOGRAMS
)

BRIDGE = frozenset(
    {
        "shipyard_bridge_received_total",
        "shipyard_bridge_rejected_total",
        "shipyard_bridge_ignored_total",
        "shipyard_bridge_deduplicated_total",
        "shipyard_bridge_spooled_total",
        "shipyard_bridge_emitted_total",
        "shipyard_bridge_dead_lettered_total",
        "shipyard_bridge_spool_depth",
        "shipyard_bridge_prefect_up",
    }
)

SIMULATOR = frozenset(
    {
        "kube_node_status_allocatable",
        "kube_node_status_capacity",
        "kube_pod_container_resource_limits",
        "kube_pod_container_resource_requests",
        "kube_deployment_status_replicas_available",
        "kube_deployment_spec_replicas",
        "kube_pod_status_phase",
        "argocd_app_info",
        "argocd_app_sync_total",
    }
)

CONTRACT_METRICS = EXPORTER | BRIDGE | SIMULATOR


def base_name(metric: str) -> str:
    """``metric`` without a histogram series suffix (``_bucket``, ``_sum``, ``_count``)."""
    for suffix in ("_bucket", "_sum", "_count"):
        if metric.endswith(suffix) and metric[: -len(suffix)] in HISTOGRAMS:
            return metric[: -len(suffix)]
    return metric
