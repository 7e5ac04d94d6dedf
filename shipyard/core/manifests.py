"""Normalize and diff Kubernetes objects: backup, restore parity and drift checks (pure).

A backup must hold what a user declared, not what the cluster added: ``status``,
server-assigned metadata (uid, resourceVersion, managedFields, creationTimestamp,
generation, selfLink), fields filled by API defaulting, and objects that controllers
recreate (Pods and ReplicaSets owned by a Deployment, Events, Endpoints). The same
normalization runs on the backed-up object and on the restored one, so "equal after
normalization" is a meaningful parity check.

Nothing here does I/O or imports Prefect, boto3 or kubernetes.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from shipyard.core.redact import register_secret

__all__ = [
    "SKIPPED_KINDS",
    "Diff",
    "diff_objects",
    "group_of",
    "normalize",
    "register_secret_values",
    "significant",
    "skip_reason",
]

JSON = dict[str, Any]

# Metadata the API server assigns; never part of the desired state.
SERVER_METADATA = (
    "uid",
    "resourceVersion",
    "managedFields",
    "creationTimestamp",
    "generation",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "ownerReferences",
)
# Annotations and labels written by controllers or clients, not by the user.
GENERATED_ANNOTATIONS = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        "deployment.kubernetes.io/revision",
        "deprecated.daemonset.template.generation",
        "kubernetes.io/service-account.uid",
        "endpoints.kubernetes.io/last-change-trigger-time",
    }
)
GENERATED_LABELS = frozenset(
    {
        "kubernetes.io/metadata.name",
        "controller-uid",
        "batch.kubernetes.io/controller-uid",
        "pod-template-hash",
    }
)

# Kinds never backed up: observations or derived state the cluster rebuilds.
SKIPPED_KINDS = frozenset({"Event", "Endpoints", "EndpointSlice", "Lease", "ControllerRevision"})
# Kinds skipped when a controller owns them (the owner is backed up and recreates them).
CONTROLLED_KINDS = frozenset({"Pod", "ReplicaSet", "Job", "PersistentVolumeClaim"})

# Objects every namespace gets automatically; restoring them would conflict.
AUTO_CREATED = frozenset({("ServiceAccount", "default"), ("ConfigMap", "kube-root-ca.crt")})

# Fields API defaulting fills in, removed only when they hold the default value.
# Paths are relative to the object; "*" walks every element of a list.
_POD_SPEC_DEFAULTS: tuple[tuple[tuple[str, ...], Any], ...] = (
    (("restartPolicy",), "Always"),
    (("dnsPolicy",), "ClusterFirst"),
    (("schedulerName",), "default-scheduler"),
    (("terminationGracePeriodSeconds",), 30),
    (("securityContext",), {}),
    (("enableServiceLinks",), True),
    (("containers", "*", "terminationMessagePath"), "/dev/termination-log"),
    (("containers", "*", "terminationMessagePolicy"), "File"),
    (("containers", "*", "imagePullPolicy"), "IfNotPresent"),
    (("containers", "*", "resources"), {}),
    (("containers", "*", "ports", "*", "protocol"), "TCP"),
    (("initContainers", "*", "terminationMessagePath"), "/dev/termination-log"),
    (("initContainers", "*", "terminationMessagePolicy"), "File"),
    (("initContainers", "*", "imagePullPolicy"), "IfNotPresent"),
    (("initContainers", "*", "resources"), {}),
)


def _template(
    paths: tuple[tuple[tuple[str, ...], Any], ...],
) -> tuple[tuple[tuple[str, ...], Any], ...]:
    return tuple((("spec", "template", "spec", *p), v) for p, v in paths)


_DEFAULTS: dict[str, tuple[tuple[tuple[str, ...], Any], ...]] = {
    "Deployment": (
        (("spec", "progressDeadlineSeconds"), 600),
        (("spec", "revisionHistoryLimit"), 10),
        (
            ("spec", "strategy"),
            {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
            },
        ),
        (("spec", "template", "metadata", "creationTimestamp"), None),
        *_template(_POD_SPEC_DEFAULTS),
    ),
    "StatefulSet": (
        (("spec", "revisionHistoryLimit"), 10),
        (("spec", "podManagementPolicy"), "OrderedReady"),
        (("spec", "updateStrategy"), {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
        (
            ("spec", "persistentVolumeClaimRetentionPolicy"),
            {"whenDeleted": "Retain", "whenScaled": "Retain"},
        ),
        (("spec", "template", "metadata", "creationTimestamp"), None),
        *_template(_POD_SPEC_DEFAULTS),
    ),
    "DaemonSet": (
        (("spec", "revisionHistoryLimit"), 10),
        (
            ("spec", "updateStrategy"),
            {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
        ),
        (("spec", "template", "metadata", "creationTimestamp"), None),
        *_template(_POD_SPEC_DEFAULTS),
    ),
    "Pod": tuple((("spec", *p), v) for p, v in _POD_SPEC_DEFAULTS),
    "Service": (
        (("spec", "sessionAffinity"), "None"),
        (("spec", "type"), "ClusterIP"),
        (("spec", "internalTrafficPolicy"), "Cluster"),
        (("spec", "ipFamilyPolicy"), "SingleStack"),
        (("spec", "ports", "*", "protocol"), "TCP"),
    ),
    "Namespace": ((("spec",), {"finalizers": ["kubernetes"]}),),
    "Secret": ((("type",), "Opaque"),),
}
# Fields the server allocates per object; a restore must not carry them over.
_ALLOCATED: dict[str, tuple[tuple[str, ...], ...]] = {
    "Service": (
        ("spec", "clusterIP"),
        ("spec", "clusterIPs"),
        ("spec", "ipFamilies"),
        ("spec", "ports", "*", "nodePort"),
        ("spec", "healthCheckNodePort"),
    ),
    "PersistentVolumeClaim": (("spec", "volumeName"),),
}


def group_of(api_version: str) -> str:
    """The API group of an ``apiVersion`` string ("" for the core group)."""
    return api_version.rpartition("/")[0]


def skip_reason(obj: Mapping[str, Any]) -> str | None:
    """Why ``obj`` is not backed up (derived or controller-owned), or None to keep it."""
    kind = obj.get("kind", "")
    meta = obj.get("metadata") or {}
    if kind in SKIPPED_KINDS:
        return f"{kind} is derived state"
    if (kind, meta.get("name")) in AUTO_CREATED:
        return "created automatically in every namespace"
    if kind == "Secret" and obj.get("type") == "kubernetes.io/service-account-token":
        return "service account token is issued by the cluster"
    if kind in CONTROLLED_KINDS:
        for ref in meta.get("ownerReferences") or []:
            if ref.get("controller"):
                return f"owned by {ref.get('kind')}/{ref.get('name')}; its controller recreates it"
    return None


def register_secret_values(obj: Mapping[str, Any]) -> None:
    """Teach redaction a Secret's values (base64 and decoded), so that no log line,
    error or artifact can show them even by accident."""
    if obj.get("kind") != "Secret":
        return
    for field_name in ("data", "stringData"):
        for value in (obj.get(field_name) or {}).values():
            if not isinstance(value, str):
                continue
            register_secret(value)
            if field_name == "data":
                try:
                    register_secret(base64.b64decode(value, validate=True).decode())
                except (ValueError, UnicodeDecodeError):
                    pass


def normalize(obj: Mapping[str, Any]) -> JSON:
    """A copy of ``obj`` holding only user-declared state.

    Removes ``status``, server metadata, generated labels/annotations, allocated fields
    (cluster IPs, node ports) and fields equal to their API default. Idempotent:
    ``normalize(normalize(x)) == normalize(x)``.
    """
    out: JSON = _clone(obj)
    out.pop("status", None)
    kind = out.get("kind", "")
    meta = out.get("metadata")
    if isinstance(meta, dict):
        for key in SERVER_METADATA:
            meta.pop(key, None)
        if not meta.get("generateName") or meta.get("name"):
            meta.pop("generateName", None)
        for field, generated in (
            ("annotations", GENERATED_ANNOTATIONS),
            ("labels", GENERATED_LABELS),
        ):
            values = meta.get(field)
            if isinstance(values, dict):
                for name in generated:
                    values.pop(name, None)
                if not values:
                    meta.pop(field, None)
        if "finalizers" in meta and not meta["finalizers"]:
            meta.pop("finalizers")
    for path in _ALLOCATED.get(kind, ()):
        _remove(out, path, None, always=True)
    for path, default in _DEFAULTS.get(kind, ()):
        _remove(out, path, default, always=False)
    if kind == "Job":
        _strip_job_selector(out)
    _prune_empty_containers(out)
    return out


def _strip_job_selector(job: JSON) -> None:
    """Jobs get a generated selector and labels; drop both when generated."""
    spec = job.get("spec")
    if not isinstance(spec, dict):
        return
    if not spec.get("manualSelector"):
        spec.pop("selector", None)
    template_meta = (spec.get("template") or {}).get("metadata")
    if isinstance(template_meta, dict):
        labels = template_meta.get("labels")
        if isinstance(labels, dict):
            for name in (
                "controller-uid",
                "batch.kubernetes.io/controller-uid",
                "job-name",
                "batch.kubernetes.io/job-name",
            ):
                labels.pop(name, None)
            if not labels:
                template_meta.pop("labels")
        template_meta.pop("creationTimestamp", None)
        if not template_meta:
            spec["template"].pop("metadata")


def _prune_empty_containers(obj: JSON) -> None:
    """Drop ``metadata.annotations: {}`` style leftovers at the top level of metadata/spec."""
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        for key in ("labels", "annotations"):
            if key in meta and meta[key] in ({}, None):
                meta.pop(key)


def _remove(node: Any, path: tuple[str, ...], default: Any, *, always: bool) -> None:
    """Delete the field at ``path`` (walking lists at "*") if ``always`` or equal to default."""
    if not path:
        return
    head, rest = path[0], path[1:]
    if head == "*":
        if isinstance(node, list):
            for item in node:
                _remove(item, rest, default, always=always)
        return
    if not isinstance(node, dict) or head not in node:
        return
    if rest:
        _remove(node[head], rest, default, always=always)
        return
    if always or node[head] == default:
        del node[head]


def _clone(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clone(v) for v in value]
    return value


@dataclass(frozen=True)
class Diff:
    """One difference between the backed-up and the restored object."""

    path: str
    change: str  # "missing" | "changed" | "unexpected"
    expected: Any = None
    actual: Any = None

    def render(self, *, secret: bool) -> str:
        """One line; values are hidden for Secrets so a diff never leaks them."""
        if secret or self.change == "missing":
            return f"{self.path}: {self.change}"
        return f"{self.path}: {self.change} {_short(self.expected)} -> {_short(self.actual)}"


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def diff_objects(expected: Mapping[str, Any], actual: Mapping[str, Any]) -> list[Diff]:
    """Differences of two normalized objects, by JSON path.

    Every field of ``expected`` must be present and equal in ``actual``; fields only in
    ``actual`` are reported as "unexpected" (see :func:`significant` for which count).
    """
    out: list[Diff] = []
    _diff(expected, actual, "", out)
    return out


def significant(diffs: Iterable[Diff]) -> list[Diff]:
    """The diffs that break parity.

    Missing and changed fields always do; an unexpected field does too, except under
    ``.spec`` where an API server may default fields this module does not know about
    (a newer server version adds some every release).
    """
    return [d for d in diffs if d.change != "unexpected" or not d.path.startswith(".spec.")]


def _diff(expected: Any, actual: Any, path: str, out: list[Diff]) -> None:
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key, value in expected.items():
            sub = f"{path}.{key}"
            if key not in actual:
                out.append(Diff(sub, "missing", value, None))
            else:
                _diff(value, actual[key], sub, out)
        for key in actual.keys() - expected.keys():
            out.append(Diff(f"{path}.{key}", "unexpected", None, actual[key]))
        return
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            _diff(e, a, f"{path}[{i}]", out)
        return
    if expected != actual:
        out.append(Diff(path or ".", "changed", expected, actual))
