"""Minimal CRDs of the resources the simulated operators serve.

Schemas are open (``x-kubernetes-preserve-unknown-fields``) like the real ones are for
most of their status; group, versions, kinds, plurals, scope and the status subresource
match the real Argo CD and Flux CRDs (Argo CD's Application has none: its controller
patches the whole object, and clients set ``operation`` on the main resource).
"""

from __future__ import annotations

from typing import Any

from shipyard.core.kube import KubeClient

JSON = dict[str, Any]
_OPEN = {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}


def _crd(
    group: str, kind: str, plural: str, versions: list[str], short: list[str], status: bool
) -> JSON:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "plural": plural,
                "singular": kind.lower(),
                "listKind": f"{kind}List",
                "shortNames": short,
            },
            "versions": [
                {
                    "name": v,
                    "served": True,
                    "storage": i == 0,
                    "schema": _OPEN,
                    **({"subresources": {"status": {}}} if status else {}),
                }
                for i, v in enumerate(versions)
            ],
        },
    }


CRDS: list[JSON] = [
    _crd("argoproj.io", "Application", "applications", ["v1alpha1"], ["app", "apps"], False),
    _crd("kustomize.toolkit.fluxcd.io", "Kustomization", "kustomizations", ["v1"], ["ks"], True),
    _crd("source.toolkit.fluxcd.io", "GitRepository", "gitrepositories", ["v1"], ["gitrepo"], True),
]


def install_crds(kube: KubeClient) -> None:
    """Server-side apply the three CRDs (idempotent)."""
    resource = kube.resource("apiextensions.k8s.io/v1", "CustomResourceDefinition")
    for crd in CRDS:
        kube.apply(resource, crd, "simcluster-operators")
