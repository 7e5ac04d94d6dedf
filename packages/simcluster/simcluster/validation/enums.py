"""422 Unsupported value for the enumerated built-in fields (the values the API accepts).

The lists and their order follow kube-apiserver's validation (pkg/apis/*/validation):
where it reports a sorted set, the values here are sorted too.
"""

from __future__ import annotations

from typing import Any

JSON = dict[str, Any]
Cause = tuple[str, str, str]

PULL_POLICIES = ("Always", "IfNotPresent", "Never")
RESTART_POLICIES = ("Always", "OnFailure", "Never")
DNS_POLICIES = ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None")
PROTOCOLS = ("SCTP", "TCP", "UDP")
TERMINATION_MESSAGE_POLICIES = ("File", "FallbackToLogsOnError")
SERVICE_TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")
SESSION_AFFINITIES = ("ClientIP", "None")
TRAFFIC_POLICIES = ("Cluster", "Local")
IP_FAMILY_POLICIES = ("PreferDualStack", "RequireDualStack", "SingleStack")
DEPLOYMENT_STRATEGIES = ("Recreate", "RollingUpdate")
STATEFUL_STRATEGIES = ("OnDelete", "RollingUpdate")
POD_MANAGEMENT = ("OrderedReady", "Parallel")
CONCURRENCY = ("Allow", "Forbid", "Replace")
COMPLETION_MODES = ("Indexed", "NonIndexed")


def unsupported(path: str, value: Any, supported: tuple[str, ...]) -> Cause:
    shown = f'"{value}"' if isinstance(value, str) else str(value)
    values = ", ".join(f'"{v}"' for v in supported)
    return (
        "FieldValueNotSupported",
        path,
        f"Unsupported value: {shown}: supported values: {values}",
    )


def _enum(causes: list[Cause], node: Any, key: str, path: str, supported: tuple[str, ...]) -> None:
    if isinstance(node, dict) and key in node and node[key] is not None:
        if node[key] not in supported:
            causes.append(unsupported(f"{path}.{key}" if path else key, node[key], supported))


def _container(causes: list[Cause], c: Any, path: str) -> None:
    if not isinstance(c, dict):
        return
    _enum(causes, c, "imagePullPolicy", path, PULL_POLICIES)
    _enum(causes, c, "terminationMessagePolicy", path, TERMINATION_MESSAGE_POLICIES)
    for i, port in enumerate(c.get("ports") or []):
        _enum(causes, port, "protocol", f"{path}.ports[{i}]", PROTOCOLS)


def pod_spec(causes: list[Cause], spec: Any, path: str, restart: tuple[str, ...] | None) -> None:
    """Enums of a PodSpec at ``path``; ``restart`` overrides the allowed restartPolicy."""
    if not isinstance(spec, dict):
        return
    if restart is not None:
        _enum(causes, spec, "restartPolicy", path, restart)
    _enum(causes, spec, "dnsPolicy", path, DNS_POLICIES)
    for field in ("initContainers", "containers"):
        containers = spec.get(field)
        if isinstance(containers, list):
            for i, c in enumerate(containers):
                _container(causes, c, f"{path}.{field}[{i}]")


def _template_spec(obj: JSON) -> Any:
    return ((obj.get("spec") or {}).get("template") or {}).get("spec")


def check(group: str, kind: str, obj: JSON) -> list[Cause]:
    """Unsupported-value causes for built-in ``kind`` (empty for other kinds)."""
    causes: list[Cause] = []
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return causes
    if group == "" and kind == "Pod":
        pod_spec(causes, spec, "spec", RESTART_POLICIES)
    elif group == "apps" and kind in ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet"):
        # Workload pods must restart: "Always" is the only value a workload accepts.
        pod_spec(causes, _template_spec(obj), "spec.template.spec", ("Always",))
        if kind == "Deployment":
            _enum(causes, spec.get("strategy"), "type", "spec.strategy", DEPLOYMENT_STRATEGIES)
        elif kind == "StatefulSet":
            _enum(causes, spec, "podManagementPolicy", "spec", POD_MANAGEMENT)
            _enum(
                causes,
                spec.get("updateStrategy"),
                "type",
                "spec.updateStrategy",
                STATEFUL_STRATEGIES,
            )
        elif kind == "DaemonSet":
            _enum(
                causes,
                spec.get("updateStrategy"),
                "type",
                "spec.updateStrategy",
                STATEFUL_STRATEGIES,
            )
    elif group == "batch" and kind == "Job":
        # restartPolicy of a Job's pods is checked by admission.py (OnFailure/Never).
        pod_spec(causes, _template_spec(obj), "spec.template.spec", None)
        _enum(causes, spec, "completionMode", "spec", COMPLETION_MODES)
    elif group == "batch" and kind == "CronJob":
        _enum(causes, spec, "concurrencyPolicy", "spec", CONCURRENCY)
        job = (spec.get("jobTemplate") or {}).get("spec")
        if isinstance(job, dict):
            template = (job.get("template") or {}).get("spec")
            pod_spec(
                causes, template, "spec.jobTemplate.spec.template.spec", ("OnFailure", "Never")
            )
            _enum(causes, job, "completionMode", "spec.jobTemplate.spec", COMPLETION_MODES)
    elif group == "" and kind == "Service":
        _enum(causes, spec, "type", "spec", SERVICE_TYPES)
        _enum(causes, spec, "sessionAffinity", "spec", SESSION_AFFINITIES)
        _enum(causes, spec, "externalTrafficPolicy", "spec", TRAFFIC_POLICIES)
        _enum(causes, spec, "internalTrafficPolicy", "spec", TRAFFIC_POLICIES)
        _enum(causes, spec, "ipFamilyPolicy", "spec", IP_FAMILY_POLICIES)
        for i, port in enumerate(spec.get("ports") or []):
            _enum(causes, port, "protocol", f"spec.ports[{i}]", PROTOCOLS)
    return causes
