"""Render an environment's path of a GitOps repo into Kubernetes objects, with real kustomize.

Input is a directory holding the whole repository at one commit (see
:mod:`tasks.sync.source`) and the path inside it; output the list of objects to apply.
Two layouts, as Argo CD and Flux accept them:

- a directory with ``kustomization.yaml``: built by ``kubectl kustomize`` (kustomize
  v5), so every kustomize feature works as it does for an operator (``../base``,
  ``namePrefix``, ``patches``, ``components``, generators with hash suffixes,
  ``replacements``/``vars``, ``images``, ``labels``/``commonLabels`` on selectors);
- a plain directory (or a single manifest file): every ``*.yaml``/``*.yml``/``*.json``
  below it, in path order, read through kustomize as well, so the YAML is parsed the
  way Kubernetes tooling parses it (Go YAML: ``defaultMode: 0755`` is 493, trailing
  tabs are fine, ``kind: List`` is expanded).

A render that fails is a :class:`ConfigError` naming the path and kustomize's message,
never a partial list. Also the other pure pieces of apply: stamping ownership labels and
the change-cause, and planning the prune. No git and no Kubernetes client here.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from shipyard.core.errors import ConfigError, TransientError
from shipyard.core.selectors import APP_LABEL, MANAGED_BY_LABEL

__all__ = [
    "APP_LABEL",
    "CHANGE_CAUSE_ANNOTATION",
    "KUBECTL_ENV",
    "MANAGED_BY_LABEL",
    "REVISION_ANNOTATION",
    "change_cause",
    "kustomize_build",
    "object_key",
    "object_ref",
    "plan_prune",
    "render",
    "render_tree",
    "stamp",
]

JSON = dict[str, Any]
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
REVISION_ANNOTATION = "app.shipyard.dev/revision"
# What ``kubectl rollout history`` shows per revision (kubectl's own ``--record`` key).
CHANGE_CAUSE_ANNOTATION = "kubernetes.io/change-cause"
# The kinds whose pod template revisions ``kubectl rollout history`` lists.
_ROLLOUT_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet"})
KUBECTL_ENV = "SHIPYARD_KUBECTL"
"""Environment variable naming the kubectl binary (default: ``kubectl`` on PATH)."""
RENDER_TIMEOUT_SECONDS = 120.0
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
_KLOG_ERR = re.compile(r'err="(?P<msg>(?:[^"\\]|\\.)*)"')


def _kubectl() -> str:
    """The kubectl binary to render with; ConfigError when there is none."""
    name = os.environ.get(KUBECTL_ENV) or "kubectl"
    found = shutil.which(name)
    if found is None:
        raise ConfigError(
            f"kubectl not found ({name!r}): rendering needs kubectl >= 1.27 (kustomize v5) "
            f"on PATH or ${KUBECTL_ENV}"
        )
    return found


def _kustomize_message(stderr: str, hide: Iterable[Path]) -> str:
    """kustomize's own words from kubectl's stderr, with scratch paths made relative."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    text = ""
    for i, line in enumerate(lines):
        match = _KLOG_ERR.search(line)
        if match:  # klog form: E1130 ... run.go:72] "command failed" err="..."
            text = match.group("msg").replace('\\"', '"').replace("\\\\", "\\")
            break
        if line.endswith("err=<"):  # klog's multi-line form: err=< ... >
            body = lines[i + 1 :]
            text = " ".join(body[: body.index(">")] if ">" in body else body)
            break
    if not text:
        text = " ".join(lines)
    text = text.removeprefix("error: ").removeprefix("Error: ")
    for base in hide:
        for form in {str(base), str(base.resolve())}:
            text = text.replace(form + os.sep, "").replace(form, ".")
    return " ".join(text.split())[:800] or "kubectl kustomize failed without a message"


def kustomize_build(
    directory: Path,
    *,
    source: str,
    hide: Iterable[Path] = (),
    load_restrictor: str | None = None,
    timeout: float = RENDER_TIMEOUT_SECONDS,
) -> str:
    """The YAML ``kubectl kustomize directory`` prints; ConfigError with kustomize's message.

    ``source`` names the path in messages; ``hide`` are scratch directories stripped from
    kustomize's messages so they name repository paths. Helm charts and exec plugins stay
    off (kustomize's defaults), as on an operator without extra flags.
    """
    args = [_kubectl(), "kustomize", str(directory)]
    if load_restrictor:
        args.append(f"--load-restrictor={load_restrictor}")
    try:
        proc = subprocess.run(
            args,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, "KUBECONFIG": os.devnull},
        )
    except subprocess.TimeoutExpired:
        raise TransientError(
            f"{source}: kubectl kustomize timed out after {timeout:.0f}s"
        ) from None
    if proc.returncode != 0:
        raise ConfigError(f"{source}: kustomize: {_kustomize_message(proc.stderr, hide)}")
    return proc.stdout


def _parse(text: str, source: str) -> list[JSON]:
    """Objects of kustomize's output (already normalized YAML: every scalar unambiguous)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        docs = [d for d in yaml.load_all(text, Loader=loader) if d is not None]
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: kustomize printed invalid YAML: {exc}") from None
    for doc in docs:
        if not isinstance(doc, dict):
            raise ConfigError(f"{source}: a rendered document is not a mapping")
        meta = doc.get("metadata")
        if not doc.get("apiVersion") or not doc.get("kind") or not isinstance(meta, dict):
            raise ConfigError(f"{source}: every object needs apiVersion, kind and metadata.name")
        if not meta.get("name"):
            raise ConfigError(f"{source}: every object needs apiVersion, kind and metadata.name")
    return docs


def _kustomization(directory: Path) -> Path | None:
    return next((directory / n for n in KUSTOMIZATION_FILES if (directory / n).is_file()), None)


def _manifests(directory: Path) -> list[Path]:
    """Every manifest file below ``directory`` in path order (hidden directories skipped)."""
    found: list[Path] = []
    for current, dirs, names in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name in KUSTOMIZATION_FILES or not name.endswith(MANIFEST_SUFFIXES):
                continue
            found.append(Path(current) / name)
    return sorted(found, key=lambda p: p.relative_to(directory).as_posix())


def _norm(path: str) -> str:
    parts: list[str] = []
    for part in PurePosixPath(path).parts:
        if part == "..":
            if not parts:
                raise ConfigError(f"path {path!r} leaves the repository")
            parts.pop()
        elif part not in (".", "/"):
            parts.append(part)
    return "/".join(parts)


def render_tree(root: Path, path: str, *, timeout: float = RENDER_TIMEOUT_SECONDS) -> list[JSON]:
    """The objects ``path`` of the repository checked out at ``root`` declares.

    ``root`` holds the whole repository, so a kustomization may reach ``../base``;
    nothing outside ``root`` is read for a plain directory. ConfigError when ``path``
    does not exist or does not render (see module docstring).
    """
    rel = _norm(path)
    source = rel or "."
    target = root / rel if rel else root
    if not target.exists():
        raise ConfigError(f"path {path!r} does not exist at this revision")
    inside = root.resolve()
    if target.resolve() != inside and inside not in target.resolve().parents:
        raise ConfigError(f"path {path!r} leaves the repository")
    kustomization = _kustomization(target) if target.is_dir() else None
    if kustomization is not None:
        out = kustomize_build(target, source=source, hide=[root], timeout=timeout)
        return _parse(out, source)
    files = [target] if target.is_file() else _manifests(target)
    if not files:
        return []  # a directory without manifests declares nothing
    for file in files:
        if inside not in file.resolve().parents:
            raise ConfigError(f"{file.relative_to(root).as_posix()} links outside the repository")
    with tempfile.TemporaryDirectory(prefix="shipyard-render-") as scratch:
        listing = [str(f.resolve()) for f in files]
        (Path(scratch) / "kustomization.yaml").write_text(
            yaml.safe_dump({"resources": listing}, default_flow_style=False)
        )
        out = kustomize_build(
            Path(scratch),
            source=source,
            hide=[root, Path(scratch)],
            load_restrictor="LoadRestrictionsNone",  # lists only files, all inside root
            timeout=timeout,
        )
    return _parse(out, source)


def render(files: Mapping[str, str], path: str) -> list[JSON]:
    """The objects ``path`` declares, given the repository's files (``{path: text}``).

    Writes ``files`` to a scratch directory and renders it with :func:`render_tree`: for
    callers that hold file contents rather than a checkout.
    """
    with tempfile.TemporaryDirectory(prefix="shipyard-tree-") as scratch:
        root = Path(scratch)
        for name, text in files.items():
            target = root / _norm(name)
            if not _norm(name):
                raise ConfigError(f"file name {name!r} is not a path in the repository")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        return render_tree(root, path)


def change_cause(revision: str, subject: str | None = None) -> str:
    """The ``kubernetes.io/change-cause`` of a GitOps commit: ``shipyard: <sha> <subject>``."""
    line = " ".join((subject or "").split())
    return f"shipyard: {revision[:12]} {line}".strip()[:256]


def stamp(
    obj: Mapping[str, Any],
    *,
    namespace: str | None,
    app: str,
    managed_by: str,
    revision: str | None,
    cause: str | None = None,
) -> JSON:
    """A copy of ``obj`` carrying the ownership labels (and the revision it came from).

    ``cause`` becomes the ``kubernetes.io/change-cause`` of a Deployment, StatefulSet or
    DaemonSet (the owners of pod template revisions), so ``kubectl rollout history``
    names the GitOps commit of each revision; a change-cause git declares itself wins.
    """
    out: JSON = copy.deepcopy(dict(obj))
    meta = out.setdefault("metadata", {})
    if namespace is not None:
        meta["namespace"] = namespace
    labels = meta.setdefault("labels", {})
    labels[MANAGED_BY_LABEL] = managed_by
    labels[APP_LABEL] = app
    if revision:
        meta.setdefault("annotations", {})[REVISION_ANNOTATION] = revision
    if cause and out.get("kind") in _ROLLOUT_KINDS:
        meta.setdefault("annotations", {}).setdefault(CHANGE_CAUSE_ANNOTATION, cause)
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
