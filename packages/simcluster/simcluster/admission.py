"""Defaulting and validation, the built-in admission a real API server applies.

Only what clients and the simulated controllers rely on: defaults they read back
(replicas, strategy, clusterIP, job selectors, ...) and validation failures a user
would hit (names, labels, selectors, required containers), reported as 422 Invalid.
"""

from __future__ import annotations

import base64
import itertools
import re
from typing import TYPE_CHECKING, Any

from simcluster import errors, gofmt, hpaconvert, probes, shapes, validation
from simcluster.resources import ResourceType, crd_resource_type
from simcluster.selectors import match_label_selector

if TYPE_CHECKING:
    from simcluster.store import Store

JSON = dict[str, Any]
Cause = tuple[str, str, str]

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_ip_counter = itertools.count(10)
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, "
    "'-', '_' or '.', and must start and end with an alphanumeric character"
)
_POD_UPDATE_MSG = (
    "Forbidden: pod updates may not change fields other than `spec.containers[*].image`, "
    "`spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, `spec.tolerations` "
    "(only additions to existing tolerations) or `spec.terminationGracePeriodSeconds` "
    "(allow it to be set to 1 if it was previously negative)"
)

DNS_LABEL_KINDS = {"Namespace", "Service"}


def admit(rt: ResourceType, obj: JSON, old: JSON | None, store: Store) -> None:
    """Default then validate ``obj`` (``old`` set on update); raise 422 Invalid."""
    if rt.key == hpaconvert.KEY:
        hpaconvert.to_storage(obj)  # autoscaling/v1 bodies are stored as v2
    shapes.check_object(rt.group, rt.kind, obj)
    if rt.group in _BUILTIN_GROUPS or rt.group.endswith(".k8s.io"):
        _prune_nulls(obj)
    _default(rt, obj, old, store)
    if rt.key == ("", "pods") and old is None:
        from simcluster import serviceaccounts  # 403 for a missing ServiceAccount

        serviceaccounts.check_pod(store, obj)
    causes = _validate_meta(rt, obj)
    check = _VALIDATORS.get(rt.kind) if rt.group in _BUILTIN_GROUPS else None
    if check is not None:
        causes += check(obj, old)
    if rt.key == ("apiextensions.k8s.io", "customresourcedefinitions"):
        causes += _validate_crd(obj)
    causes += validation.check(rt, obj, old, store)  # enums, annotation size, CR schema
    if causes:
        raise errors.invalid(rt.kind, rt.group, obj["metadata"].get("name", ""), causes)


_BUILTIN_GROUPS = {"", "apps", "batch", "networking.k8s.io", "rbac.authorization.k8s.io"}


def _prune_nulls(node: Any) -> None:
    """Drop null fields, as decoding into typed (omitempty) structs does on real servers."""
    if isinstance(node, dict):
        for key in [k for k, v in node.items() if v is None]:
            del node[key]
        for v in node.values():
            _prune_nulls(v)
    elif isinstance(node, list):
        for v in node:
            _prune_nulls(v)


def _validate_meta(rt: ResourceType, obj: JSON) -> list[Cause]:
    causes: list[Cause] = []
    meta = obj["metadata"]
    name = meta.get("name", "")
    pattern = _LABEL if rt.kind in DNS_LABEL_KINDS else _SUBDOMAIN
    limit = 63 if rt.kind in DNS_LABEL_KINDS else 253
    if rt.group in _BUILTIN_GROUPS | {"apps"} and (not pattern.match(name) or len(name) > limit):
        causes.append(
            (
                "FieldValueInvalid",
                "metadata.name",
                f'Invalid value: "{name}": a lowercase RFC 1123 '
                f"{'label' if limit == 63 else 'subdomain'} must consist of lower case "
                "alphanumeric characters, '-' or '.', and must start and end with an "
                "alphanumeric character",
            )
        )
    labels = meta.get("labels") or {}
    if not isinstance(labels, dict):
        return [*causes, ("FieldValueInvalid", "metadata.labels", "Invalid value: must be a map")]
    for key, value in labels.items():
        base = key.rsplit("/", 1)[-1]
        if not _LABEL_NAME.match(base) or len(base) > 63:
            causes.append(
                (
                    "FieldValueInvalid",
                    "metadata.labels",
                    f'Invalid value: "{key}": name part must consist of alphanumeric characters',
                )
            )
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            causes.append(
                (
                    "FieldValueInvalid",
                    "metadata.labels",
                    f'Invalid value: "{value}": {_LABEL_VALUE_MSG}',
                )
            )
    annotations = meta.get("annotations") or {}
    if not isinstance(annotations, dict) or not all(
        isinstance(v, str) for v in annotations.values()
    ):
        causes.append(
            (
                "FieldValueInvalid",
                "metadata.annotations",
                "Invalid value: annotation values must be strings",
            )
        )
    return causes


# -- defaults -------------------------------------------------------------------------


def default_pod_spec(spec: JSON) -> None:
    """Pod spec defaults (also applied to workload templates)."""
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("securityContext", {})
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        if not isinstance(c, dict):
            continue
        image = str(c.get("image", ""))
        tagless = ":" not in image.rsplit("/", 1)[-1] and "@" not in image
        c.setdefault(
            "imagePullPolicy", "Always" if tagless or image.endswith(":latest") else "IfNotPresent"
        )
        c.setdefault("terminationMessagePath", "/dev/termination-log")
        c.setdefault("terminationMessagePolicy", "File")
        c.setdefault("resources", {})
        probes.default_probes(c)
        for port in c.get("ports") or []:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")


def _default_template(obj: JSON) -> None:
    template = obj.setdefault("spec", {}).setdefault("template", {})
    if isinstance(template, dict):
        template.setdefault("metadata", {})
        default_pod_spec(template.setdefault("spec", {}))


def _default(rt: ResourceType, obj: JSON, old: JSON | None, store: Store) -> None:
    kind = rt.kind if rt.group in _BUILTIN_GROUPS else ""
    spec = obj.get("spec")
    if kind == "Namespace":
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        if not obj["metadata"].get("deletionTimestamp"):
            obj["status"] = {"phase": "Active"}
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"][
            "name"
        ]
    elif kind == "Pod" and isinstance(spec, dict):
        default_pod_spec(spec)
        spec.setdefault("serviceAccountName", "default")
        spec.setdefault("serviceAccount", spec["serviceAccountName"])
        if old is None:
            from simcluster import scheduler  # binds to a node that fits, or Unschedulable

            scheduler.admit_pod(store, obj)
        else:
            spec["nodeName"] = (old.get("spec") or {}).get("nodeName", spec.get("nodeName"))
    elif kind in ("Deployment", "ReplicaSet", "StatefulSet") and isinstance(spec, dict):
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        if kind == "Deployment":
            strategy = spec.setdefault("strategy", {})
            strategy.setdefault("type", "RollingUpdate")
            if strategy["type"] == "RollingUpdate":
                ru = strategy.setdefault("rollingUpdate", {})
                ru.setdefault("maxSurge", "25%")
                ru.setdefault("maxUnavailable", "25%")
            spec.setdefault("progressDeadlineSeconds", 600)
        if kind == "StatefulSet":
            spec.setdefault("podManagementPolicy", "OrderedReady")
            spec.setdefault(
                "updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
            )
        _default_template(obj)
    elif kind == "DaemonSet" and isinstance(spec, dict):
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault(
            "updateStrategy",
            {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
        )
        _default_template(obj)
    elif kind == "Job" and isinstance(spec, dict):
        spec.setdefault("parallelism", 1)
        spec.setdefault("completions", 1)
        spec.setdefault("backoffLimit", 6)
        spec.setdefault("completionMode", "NonIndexed")
        spec.setdefault("suspend", False)
        if old is None and "selector" not in spec:
            uid = obj["metadata"]["uid"]
            spec["manualSelector"] = False
            spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
            labels = (
                spec.setdefault("template", {}).setdefault("metadata", {}).setdefault("labels", {})
            )
            labels.update(
                {
                    "batch.kubernetes.io/controller-uid": uid,
                    "batch.kubernetes.io/job-name": obj["metadata"]["name"],
                    "controller-uid": uid,
                    "job-name": obj["metadata"]["name"],
                }
            )
        elif old is not None:
            spec["selector"] = (old.get("spec") or {}).get("selector", spec.get("selector"))
        _default_template(obj)
    elif kind == "CronJob" and isinstance(spec, dict):
        spec.setdefault("concurrencyPolicy", "Allow")
        spec.setdefault("suspend", False)
        spec.setdefault("successfulJobsHistoryLimit", 3)
        spec.setdefault("failedJobsHistoryLimit", 1)
    elif kind == "Service" and isinstance(spec, dict):
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        old_ip = (old or {}).get("spec", {}).get("clusterIP")
        if old_ip:
            spec["clusterIP"] = old_ip
        elif spec.get("clusterIP") != "None":
            n = next(_ip_counter)
            spec["clusterIP"] = f"10.96.{(n // 250) % 250}.{n % 250 + 1}"
        spec["clusterIPs"] = [spec["clusterIP"]]
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
        for port in spec.get("ports") or []:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")
                port.setdefault("targetPort", port.get("port"))
        obj.setdefault("status", {"loadBalancer": {}})
    elif kind == "Secret":
        if not obj.get("type"):
            obj["type"] = "Opaque"
        string_data = obj.pop("stringData", None)
        if isinstance(string_data, dict):
            data = obj.setdefault("data", {})
            for k, v in string_data.items():
                data[k] = base64.b64encode(str(v).encode()).decode()
    elif kind == "ServiceAccount":
        pass
    if rt.key == ("apiextensions.k8s.io", "customresourcedefinitions") and isinstance(spec, dict):
        names = spec.get("names") or {}
        if isinstance(names, dict):
            names.setdefault("singular", str(names.get("kind", "")).lower())
            names.setdefault("listKind", f"{names.get('kind', '')}List")
        obj["status"] = {
            "acceptedNames": names,
            "storedVersions": [
                v.get("name")
                for v in spec.get("versions") or []
                if isinstance(v, dict) and v.get("storage")
            ],
            "conditions": [
                {
                    "type": "NamesAccepted",
                    "status": "True",
                    "reason": "NoConflicts",
                    "message": "no conflicts found",
                    "lastTransitionTime": obj["metadata"]["creationTimestamp"],
                },
                {
                    "type": "Established",
                    "status": "True",
                    "reason": "InitialNamesAccepted",
                    "message": "the initial names have been accepted",
                    "lastTransitionTime": obj["metadata"]["creationTimestamp"],
                },
            ],
        }


# -- validation -----------------------------------------------------------------------


def _containers(spec: Any, field: str) -> list[Cause]:
    if not isinstance(spec, dict):
        return [("FieldValueRequired", field, "Required value")]
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        return [("FieldValueRequired", f"{field}.containers", "Required value")]
    causes: list[Cause] = []
    seen: set[str] = set()
    for i, c in enumerate(containers):
        if not isinstance(c, dict):
            causes.append(
                (
                    "FieldValueInvalid",
                    f"{field}.containers[{i}]",
                    "Invalid value: must be an object",
                )
            )
            continue
        if not c.get("name"):
            causes.append(("FieldValueRequired", f"{field}.containers[{i}].name", "Required value"))
        elif c["name"] in seen:
            causes.append(
                (
                    "FieldValueDuplicate",
                    f"{field}.containers[{i}].name",
                    f'Duplicate value: "{c["name"]}"',
                )
            )
        seen.add(str(c.get("name")))
        if not c.get("image"):
            causes.append(
                ("FieldValueRequired", f"{field}.containers[{i}].image", "Required value")
            )
    return causes


def _mutable_stripped(spec: JSON) -> JSON:
    return {
        k: v
        for k, v in spec.items()
        if k not in ("containers", "activeDeadlineSeconds", "tolerations")
    }


def _without_images(spec: JSON) -> list[JSON]:
    return [{k: v for k, v in c.items() if k != "image"} for c in spec.get("containers") or []]


def _validate_pod(obj: JSON, old: JSON | None) -> list[Cause]:
    causes = _containers(obj.get("spec"), "spec")
    if old is not None and not causes:
        new_spec, old_spec = obj.get("spec") or {}, old.get("spec") or {}
        if _mutable_stripped(new_spec) != _mutable_stripped(old_spec) or _without_images(
            new_spec
        ) != _without_images(old_spec):
            causes.append(
                (
                    "FieldValueForbidden",
                    "spec",
                    _POD_UPDATE_MSG,
                )
            )
    return causes


def _validate_workload(obj: JSON, old: JSON | None) -> list[Cause]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [("FieldValueRequired", "spec", "Required value")]
    causes: list[Cause] = []
    selector = spec.get("selector")
    template = spec.get("template") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    if not isinstance(selector, dict) or not (
        selector.get("matchLabels") or selector.get("matchExpressions")
    ):
        causes.append(("FieldValueRequired", "spec.selector", "Required value"))
    elif not match_label_selector(selector, labels):
        causes.append(
            (
                "FieldValueInvalid",
                "spec.template.metadata.labels",
                f"Invalid value: {gofmt.string_map(labels)}: "
                "`selector` does not match template `labels`",
            )
        )
    if (
        old is not None
        and selector != (old.get("spec") or {}).get("selector")
        and obj["kind"] != "Job"
    ):
        causes.append(
            (
                "FieldValueInvalid",
                "spec.selector",
                f"Invalid value: {gofmt.label_selector(selector)}: field is immutable",
            )
        )
    strategy = spec.get("strategy") or {}
    if strategy.get("type") == "Recreate" and strategy.get("rollingUpdate"):
        causes.append(
            (
                "FieldValueForbidden",
                "spec.strategy.rollingUpdate",
                "Forbidden: may not be specified when strategy `type` is 'Recreate'",
            )
        )
    replicas = spec.get("replicas", 1)
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        causes.append(
            (
                "FieldValueInvalid",
                "spec.replicas",
                f"Invalid value: {replicas}: must be greater than or equal to 0",
            )
        )
    causes += _containers(template.get("spec"), "spec.template.spec")
    if obj["kind"] == "Job":
        policy = (template.get("spec") or {}).get("restartPolicy")
        if policy not in ("Never", "OnFailure"):
            causes.append(
                (
                    "FieldValueNotSupported",
                    "spec.template.spec.restartPolicy",
                    f'Unsupported value: "{policy}": supported values: "OnFailure", "Never"',
                )
            )
        if old is not None and template != ((old.get("spec") or {}).get("template") or {}):
            causes.append(
                ("FieldValueInvalid", "spec.template", "Invalid value: field is immutable")
            )
    return causes


def _validate_service(obj: JSON, old: JSON | None) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes: list[Cause] = []
    for i, port in enumerate(spec.get("ports") or []):
        p = port.get("port") if isinstance(port, dict) else None
        if not isinstance(p, int) or not 0 < p < 65536:
            causes.append(
                (
                    "FieldValueInvalid",
                    f"spec.ports[{i}].port",
                    f"Invalid value: {p}: must be between 1 and 65535, inclusive",
                )
            )
    return causes


def _validate_configmap(obj: JSON, old: JSON | None) -> list[Cause]:
    data = obj.get("data")
    if data is not None and (
        not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values())
    ):
        return [("FieldValueInvalid", "data", "Invalid value: values must be strings")]
    return []


def _validate_crd(obj: JSON) -> list[Cause]:
    rt = crd_resource_type(obj)
    if rt is None:
        return [
            (
                "FieldValueRequired",
                "spec",
                "Required value: group, names.plural, names.kind and versions are required",
            )
        ]
    expected = f"{rt.plural}.{rt.group}"
    if obj["metadata"]["name"] != expected:
        return [
            (
                "FieldValueInvalid",
                "metadata.name",
                f'Invalid value: "{obj["metadata"]["name"]}": '
                'must be spec.names.plural+"."+spec.group',
            )
        ]
    return []


_VALIDATORS: dict[str, Any] = {
    "Pod": _validate_pod,
    "Deployment": _validate_workload,
    "ReplicaSet": _validate_workload,
    "StatefulSet": _validate_workload,
    "DaemonSet": _validate_workload,
    "Job": _validate_workload,
    "Service": _validate_service,
    "ConfigMap": _validate_configmap,
}
