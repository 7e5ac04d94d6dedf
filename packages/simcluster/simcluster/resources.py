"""The resource types the simulator serves: built-ins plus CRD-defined ones.

A :class:`ResourceType` is what discovery advertises and what the HTTP layer routes
to; the registry is mutable because creating a CustomResourceDefinition adds types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]

VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ResourceType:
    """One REST resource (e.g. ``deployments`` in ``apps``), served in ``versions``."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    versions: tuple[str, ...] = ()
    printer_columns: tuple[JSON, ...] = field(default=(), compare=False, hash=False)

    @property
    def key(self) -> tuple[str, str]:
        """Storage identity: group and plural (all versions share storage)."""
        return (self.group, self.plural)

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def served_versions(self) -> tuple[str, ...]:
        return self.versions or (self.version,)

    def api_version(self, version: str | None = None) -> str:
        """``apiVersion`` string for ``version`` (default: the preferred one)."""
        v = version or self.version
        return f"{self.group}/{v}" if self.group else v

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources


def _rt(
    group: str,
    kind: str,
    plural: str,
    namespaced: bool = True,
    short: tuple[str, ...] = (),
    sub: tuple[str, ...] = ("status",),
    version: str = "v1",
    categories: tuple[str, ...] = (),
) -> ResourceType:
    return ResourceType(group, version, kind, plural, namespaced, short, categories, sub)


ALL = ("all",)

BUILTINS: tuple[ResourceType, ...] = (
    _rt("", "Namespace", "namespaces", False, ("ns",)),
    _rt("", "Node", "nodes", False, ("no",)),
    _rt("", "Pod", "pods", True, ("po",), ("status", "log"), categories=ALL),
    _rt("", "Service", "services", True, ("svc",), categories=ALL),
    _rt("", "Endpoints", "endpoints", True, ("ep",), ()),
    _rt("", "ConfigMap", "configmaps", True, ("cm",), ()),
    _rt("", "Secret", "secrets", True, (), ()),
    _rt("", "ServiceAccount", "serviceaccounts", True, ("sa",), ()),
    _rt("", "Event", "events", True, ("ev",), ()),
    _rt("", "PersistentVolumeClaim", "persistentvolumeclaims", True, ("pvc",)),
    _rt("", "PersistentVolume", "persistentvolumes", False, ("pv",)),
    _rt("", "ResourceQuota", "resourcequotas", True, ("quota",)),
    _rt("", "LimitRange", "limitranges", True, ("limits",), ()),
    _rt(
        "apps", "Deployment", "deployments", True, ("deploy",), ("status", "scale"), categories=ALL
    ),
    _rt("apps", "ReplicaSet", "replicasets", True, ("rs",), ("status", "scale"), categories=ALL),
    _rt("apps", "StatefulSet", "statefulsets", True, ("sts",), ("status", "scale"), categories=ALL),
    _rt("apps", "DaemonSet", "daemonsets", True, ("ds",), categories=ALL),
    _rt("apps", "ControllerRevision", "controllerrevisions", True, (), ()),
    _rt("batch", "Job", "jobs", True, (), categories=ALL),
    _rt("batch", "CronJob", "cronjobs", True, ("cj",), categories=ALL),
    ResourceType(
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        True,
        ("hpa",),
        ALL,
        ("status",),
        versions=("v2", "v1"),
    ),
    _rt("discovery.k8s.io", "EndpointSlice", "endpointslices", True, (), ()),
    _rt(
        "admissionregistration.k8s.io",
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
        False,
        (),
        (),
    ),
    _rt(
        "admissionregistration.k8s.io",
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations",
        False,
        (),
        (),
    ),
    _rt(
        "admissionregistration.k8s.io",
        "ValidatingAdmissionPolicy",
        "validatingadmissionpolicies",
        False,
    ),
    _rt(
        "admissionregistration.k8s.io",
        "ValidatingAdmissionPolicyBinding",
        "validatingadmissionpolicybindings",
        False,
        (),
        (),
    ),
    _rt("policy", "PodDisruptionBudget", "poddisruptionbudgets", True, ("pdb",)),
    _rt("rbac.authorization.k8s.io", "Role", "roles", True, (), ()),
    _rt("rbac.authorization.k8s.io", "RoleBinding", "rolebindings", True, (), ()),
    _rt("rbac.authorization.k8s.io", "ClusterRole", "clusterroles", False, (), ()),
    _rt("rbac.authorization.k8s.io", "ClusterRoleBinding", "clusterrolebindings", False, (), ()),
    _rt("networking.k8s.io", "Ingress", "ingresses", True, ("ing",)),
    _rt("networking.k8s.io", "IngressClass", "ingressclasses", False, (), ()),
    _rt("networking.k8s.io", "NetworkPolicy", "networkpolicies", True, ("netpol",), ()),
    _rt("coordination.k8s.io", "Lease", "leases", True, (), ()),
    _rt("storage.k8s.io", "StorageClass", "storageclasses", False, ("sc",), ()),
    _rt(
        "authorization.k8s.io", "SelfSubjectAccessReview", "selfsubjectaccessreviews", False, (), ()
    ),
    _rt("authorization.k8s.io", "SubjectAccessReview", "subjectaccessreviews", False, (), ()),
    _rt(
        "apiextensions.k8s.io",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        False,
        ("crd", "crds"),
    ),
)


class ResourceRegistry:
    """Lookup of served resource types by group/version/plural, kind, or short name."""

    def __init__(self) -> None:
        self._types: dict[tuple[str, str], ResourceType] = {}
        for rt in BUILTINS:
            self.add(rt)

    def add(self, rt: ResourceType) -> None:
        self._types[rt.key] = rt

    def remove(self, key: tuple[str, str]) -> None:
        self._types.pop(key, None)

    def all(self) -> list[ResourceType]:
        return list(self._types.values())

    def by_key(self, group: str, plural: str) -> ResourceType | None:
        return self._types.get((group, plural))

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        """The type served at ``/<group>/<version>/<plural>``, if any."""
        rt = self._types.get((group, plural))
        if rt is None or version not in rt.served_versions:
            return None
        return rt

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        group, _, version = api_version.rpartition("/")
        for rt in self._types.values():
            if rt.group == group and rt.kind == kind and version in rt.served_versions:
                return rt
        return None

    def groups(self) -> dict[str, list[str]]:
        """Group name -> served versions (preferred first), in a stable order."""
        out: dict[str, list[str]] = {}
        for rt in self._types.values():
            versions = out.setdefault(rt.group, [])
            for v in rt.served_versions:
                if v not in versions:
                    versions.append(v)
        return out

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        return [
            rt for rt in self._types.values() if rt.group == group and version in rt.served_versions
        ]


def crd_resource_type(crd: JSON) -> ResourceType | None:
    """The resource type a CustomResourceDefinition object defines (None if malformed)."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group = spec.get("group")
    plural = names.get("plural")
    kind = names.get("kind")
    versions = [
        v for v in spec.get("versions") or [] if isinstance(v, dict) and v.get("served", True)
    ]
    if not (group and plural and kind and versions):
        return None
    if not all(isinstance(v.get("name"), str) and v["name"] for v in versions):
        return None
    storage = next((v for v in versions if v.get("storage")), versions[0])
    ordered = [storage["name"]] + [v["name"] for v in versions if v["name"] != storage["name"]]
    subresources: list[str] = []
    sub = storage.get("subresources") or {}
    if "status" in sub:
        subresources.append("status")
    if "scale" in sub:
        subresources.append("scale")
    return ResourceType(
        group=group,
        version=storage["name"],
        kind=kind,
        plural=plural,
        namespaced=spec.get("scope", "Namespaced") == "Namespaced",
        short_names=tuple(names.get("shortNames") or ()),
        categories=tuple(names.get("categories") or ()),
        subresources=tuple(subresources),
        versions=tuple(ordered),
        printer_columns=tuple(storage.get("additionalPrinterColumns") or ()),
    )
