"""Render an environment's path of a GitOps repo into Kubernetes objects (pure).

Input is the repo's files at one commit (``{relative path: text}``), output the list of
objects to apply. Two layouts, as Argo CD and Flux accept them:

- a directory with ``kustomization.yaml``: its ``resources`` (files, or directories
  rendered the same way, recursively), then ``namespace``, ``commonLabels`` and the
  ``images`` overrides (``name`` -> ``newName``/``newTag``/``digest``), which is what
  image write-back edits;
- a plain directory: every ``*.yaml``/``*.yml``/``*.json`` below it, multi-document,
  ``kind: List`` expanded, in path order.

Also the other pure pieces of apply: stamping ownership labels and planning the prune.
No git, no network, no Kubernetes client here.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Iterable, Mapping
from pathlib import PurePosixPath
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from shipyard.core.errors import ConfigError
from shipyard.core.oci import split_reference
from shipyard.core.selectors import APP_LABEL, MANAGED_BY_LABEL

__all__ = [
    "APP_LABEL",
    "MANAGED_BY_LABEL",
    "REVISION_ANNOTATION",
    "SUPPORTED_KUSTOMIZE",
    "apply_images",
    "object_key",
    "object_ref",
    "plan_prune",
    "render",
    "stamp",
]

JSON = dict[str, Any]
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
REVISION_ANNOTATION = "app.shipyard.dev/revision"
# Apply order: what others depend on first (as kubectl/Argo CD sync waves do by kind).
_RANK = {
    "CustomResourceDefinition": 0,
    "Namespace": 1,
    "ServiceAccount": 2,
    "Secret": 3,
    "ConfigMap": 3,
    "PersistentVolumeClaim": 4,
    "Role": 5,
    "RoleBinding": 6,
    "Service": 7,
}


def _load_all(text: str, source: str) -> list[JSON]:
    yaml = YAML(typ="safe")
    try:
        docs = list(yaml.load_all(io.StringIO(text)))
    except YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}") from None
    out: list[JSON] = []
    for doc in docs:
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise ConfigError(f"{source}: a document is not a mapping")
        if doc.get("kind") == "List" or (
            str(doc.get("kind", "")).endswith("List") and isinstance(doc.get("items"), list)
        ):
            out.extend(i for i in doc.get("items") or [] if isinstance(i, dict))
        else:
            out.append(doc)
    for obj in out:
        if (
            not obj.get("apiVersion")
            or not obj.get("kind")
            or not (obj.get("metadata") or {}).get("name")
        ):
            raise ConfigError(f"{source}: every object needs apiVersion, kind and metadata.name")
    return out


def _kustomization(files: Mapping[str, str], directory: str) -> str | None:
    for name in KUSTOMIZATION_FILES:
        candidate = str(PurePosixPath(directory) / name) if directory not in ("", ".") else name
        if candidate in files:
            return candidate
    return None


def _under(files: Mapping[str, str], directory: str) -> list[str]:
    prefix = "" if directory in ("", ".") else directory.rstrip("/") + "/"
    return sorted(f for f in files if f.startswith(prefix))


def _norm(path: str) -> str:
    parts: list[str] = []
    for part in PurePosixPath(path).parts:
        if part == "..":
            if not parts:
                raise ConfigError(f"path {path!r} leaves the repository")
            parts.pop()
        elif part != ".":
            parts.append(part)
    return "/".join(parts)


# The kustomization fields :func:`render` understands; ``strict`` refuses any other.
SUPPORTED_KUSTOMIZE = frozenset(
    {"apiVersion", "kind", "resources", "bases", "namespace", "commonLabels", "images"}
)


def render(files: Mapping[str, str], path: str, *, strict: bool = False) -> list[JSON]:
    """The objects ``path`` declares (see module docstring); ConfigError when unusable.

    ``strict`` makes a kustomization field outside :data:`SUPPORTED_KUSTOMIZE` (patches,
    generators, ...) a ConfigError instead of being ignored: for the restore drill, where
    a silently partial render would be reported as drift rather than as what it is.
    """
    directory = _norm(path)
    if directory in files:  # a single manifest file
        return _load_all(files[directory], directory)
    if not _under(files, directory):
        raise ConfigError(f"path {path!r} does not exist at this revision")
    return _render_dir(files, directory, depth=0, strict=strict)


def _render_dir(
    files: Mapping[str, str], directory: str, depth: int, *, strict: bool = False
) -> list[JSON]:
    if depth > 20:
        raise ConfigError(f"{directory}: kustomization resources nest too deep (a cycle?)")
    kfile = _kustomization(files, directory)
    if kfile is None:
        out: list[JSON] = []
        for f in _under(files, directory):
            name = PurePosixPath(f).name
            if name in KUSTOMIZATION_FILES or PurePosixPath(f).suffix not in (
                ".yaml",
                ".yml",
                ".json",
            ):
                continue
            out.extend(_load_all(files[f], f))
        return out
    docs = _load_all_raw(files[kfile], kfile)
    spec = docs[0] if docs else {}
    unknown = set(spec) - SUPPORTED_KUSTOMIZE
    if strict and unknown:
        raise ConfigError(f"{kfile}: unsupported kustomize fields {', '.join(sorted(unknown))}")
    objects: list[JSON] = []
    for entry in spec.get("resources") or spec.get("bases") or []:
        target = _norm(str(PurePosixPath(directory) / str(entry)))
        if target in files:
            objects.extend(_load_all(files[target], target))
        elif _under(files, target):
            objects.extend(_render_dir(files, target, depth + 1, strict=strict))
        else:
            raise ConfigError(f"{kfile}: resource {entry!r} does not exist")
    namespace = spec.get("namespace")
    labels = spec.get("commonLabels") or {}
    for obj in objects:
        if namespace:
            obj.setdefault("metadata", {})["namespace"] = namespace
        if labels:
            obj.setdefault("metadata", {}).setdefault("labels", {}).update(labels)
    images = spec.get("images") or []
    if images:
        objects = [apply_images(obj, images) for obj in objects]
    return objects


def _load_all_raw(text: str, source: str) -> list[JSON]:
    try:
        docs = [d for d in YAML(typ="safe").load_all(io.StringIO(text)) if d is not None]
    except YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}") from None
    if docs and not isinstance(docs[0], dict):
        raise ConfigError(f"{source}: not a mapping")
    return docs


def _override(image: str, entries: Iterable[Mapping[str, Any]]) -> str:
    parts = split_reference(image)
    name, tag, digest = parts.name, parts.tag or "", parts.digest or ""
    for entry in entries:
        if entry.get("name") != name:
            continue
        new_name = str(entry.get("newName") or name)
        if entry.get("digest"):
            return f"{new_name}@{entry['digest']}"
        new_tag = str(entry["newTag"]) if entry.get("newTag") is not None else tag
        ref = f"{new_name}:{new_tag}" if new_tag else new_name
        return f"{ref}@{digest}" if digest and entry.get("newTag") is None else ref
    return image


def _pod_specs(obj: JSON) -> list[JSON]:
    spec = obj.get("spec") or {}
    if obj.get("kind") == "Pod":
        return [spec]
    if obj.get("kind") == "CronJob":
        spec = ((spec.get("jobTemplate") or {}).get("spec")) or {}
    template = (spec.get("template") or {}).get("spec")
    return [template] if isinstance(template, dict) else []


def apply_images(obj: Mapping[str, Any], images: Iterable[Mapping[str, Any]]) -> JSON:
    """A copy of ``obj`` with kustomize ``images`` overrides applied to every container."""
    out: JSON = copy.deepcopy(dict(obj))
    entries = list(images)
    for pod_spec in _pod_specs(out):
        for field in ("initContainers", "containers"):
            for c in pod_spec.get(field) or []:
                if isinstance(c, dict) and c.get("image"):
                    c["image"] = _override(str(c["image"]), entries)
    return out


def stamp(
    obj: Mapping[str, Any],
    *,
    namespace: str | None,
    app: str,
    managed_by: str,
    revision: str | None,
) -> JSON:
    """A copy of ``obj`` carrying the ownership labels (and the revision it came from)."""
    out: JSON = copy.deepcopy(dict(obj))
    meta = out.setdefault("metadata", {})
    if namespace is not None:
        meta["namespace"] = namespace
    labels = meta.setdefault("labels", {})
    labels[MANAGED_BY_LABEL] = managed_by
    labels[APP_LABEL] = app
    if revision:
        meta.setdefault("annotations", {})[REVISION_ANNOTATION] = revision
    return out


def object_key(obj: Mapping[str, Any]) -> tuple[str, str, str, str]:
    """(group, kind, namespace, name): identity of an object across API versions."""
    meta = obj.get("metadata") or {}
    group = str(obj.get("apiVersion", "")).rpartition("/")[0]
    return group, str(obj.get("kind", "")), str(meta.get("namespace") or ""), str(meta.get("name"))


def object_ref(obj: Mapping[str, Any]) -> str:
    """``Kind/name`` for messages and results."""
    return f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"


def apply_order(objects: Iterable[JSON]) -> list[JSON]:
    """Objects sorted so dependencies are applied first (stable within a rank)."""
    return sorted(objects, key=lambda o: _RANK.get(str(o.get("kind")), 10))


def plan_prune(
    live: Iterable[Mapping[str, Any]], desired: Iterable[Mapping[str, Any]]
) -> list[JSON]:
    """Live objects (already filtered by ownership label) that git no longer declares.

    Objects owned by another object (a ReplicaSet of a Deployment) are never pruned:
    their owner's controller manages them.
    """
    wanted = {object_key(o) for o in desired}
    out = []
    for obj in live:
        meta = obj.get("metadata") or {}
        if meta.get("ownerReferences") or meta.get("deletionTimestamp"):
            continue
        if object_key(obj) not in wanted:
            out.append(dict(obj))
    return sorted(out, key=object_ref)
