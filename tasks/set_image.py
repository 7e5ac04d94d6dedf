"""Set an image's tag or digest in a GitOps working tree: the pure core of write-back.

Files in, changes out: :func:`plan_set_image` maps file texts to new file texts plus a
list of :class:`Change` (no git, no Prefect, no network), and :func:`set_image` wraps it
with reading and writing files under a working tree. Three layouts are understood:

* kustomization ``images:`` entries (``name``/``newName``/``newTag``/``digest``), matched
  as kustomize means them: the entry whose effective image (``newName``, else ``name``)
  is the image. Next to such an entry only the entry changes, as with ``kustomize edit
  set image``: the manifests that kustomization renders keep what they say;
* Helm values: any mapping whose ``repository`` (optionally ``registry/repository``)
  is the image, with ``tag``/``digest`` siblings; any ``*image`` key holding a whole
  reference ``repo:tag``; and explicit key paths when configured (:class:`ValuesKeys`),
  in values files and in a Flux HelmRelease's ``spec.values``. A chart's ``templates/``
  and ``Chart.yaml`` are not values and are skipped;
* plain manifests, multi-document: containers and initContainers of Deployment,
  StatefulSet, DaemonSet, ReplicaSet, Job, CronJob, Pod and Argo Rollout.

Names match as Docker resolves them (``mongo`` is ``docker.io/library/mongo``), never by
prefix. A tag is always written so that it loads back as the exact string (``tag: "10"``,
not the number 10), also when the text was already equal.

Edits are targeted byte replacements at the spans the YAML parser reports for the
scalars concerned, so comments, quoting, key order, Flux ``# {"$imagepolicy": ...}``
markers and every untouched byte stay as they were: a tag bump is a one-line diff.

The rule for tag vs digest is the same in every layout: a digest-only update sets the
digest and leaves the tag as it is (the digest wins at pull time); a tag update clears
a digest pin that would otherwise keep the old image running.

Everything is validated before anything is written; invalid input is a
:class:`~shipyard.core.errors.ConfigError` a user can act on.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import posixpath
import re
import stat
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from shipyard.core.errors import ConfigError, PermanentError
from shipyard.core.oci import (
    ImageRef,
    parse_reference,
    same_name,
    validate_digest,
    validate_name,
    validate_tag,
)

__all__ = [
    "Change",
    "SetImageConfig",
    "SetImageResult",
    "ValuesKeys",
    "find_images",
    "plan_set_image",
    "set_image",
]

WORKLOAD_KINDS = frozenset(
    {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod", "Rollout"}
)
KUSTOMIZATION_FILES = frozenset({"kustomization.yaml", "kustomization.yml", "Kustomization"})
YAML_SUFFIXES = (".yaml", ".yml")
CHART_FILES = frozenset({"Chart.yaml", "Chart.lock"})
"""A chart's metadata: never a values file (``appVersion`` is not an image tag)."""
HELM_RELEASE_API = "helm.toolkit.fluxcd.io/"
_KUSTOMIZE_LIST_FIELDS = ("resources", "bases", "components", "patchesStrategicMerge")
_KUSTOMIZE_PATH_FIELDS = ("patches", "patchesJson6902")


# --- configuration -------------------------------------------------------------------


class ValuesKeys(BaseModel):
    """Explicit dotted key paths into Helm values files, for charts with unusual layouts.

    Either ``image`` (a key holding a whole ``repo:tag`` reference) or any of
    ``repository`` / ``tag`` / ``digest``. When ``repository`` is given, the value there
    must equal the image for the file to be edited.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    image: str | None = Field(None, description="Key path of a whole reference, e.g. app.image.")
    repository: str | None = Field(
        None, description="Key path of the repository, e.g. app.image.name."
    )
    tag: str | None = Field(None, description="Key path of the tag, e.g. app.image.version.")
    digest: str | None = Field(None, description="Key path of the digest.")

    @model_validator(mode="after")
    def _some_path(self) -> ValuesKeys:
        if self.image and (self.repository or self.tag or self.digest):
            raise ValueError("give either 'image' or repository/tag/digest paths, not both")
        if not (self.image or self.tag or self.digest):
            raise ValueError("give 'image', or a 'tag' and/or 'digest' key path")
        return self


class SetImageConfig(BaseModel):
    """What to set where: an image's new tag and/or digest under a path of the repo."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    path: str = Field(".", description="File or directory, relative to the working tree root.")
    image: str = Field(
        description="Image repository to match exactly, e.g. registry.example/shop/cart."
    )
    tag: str | None = Field(None, description="New tag; clears a digest pin on the same image.")
    digest: str | None = Field(None, description="New digest (sha256:...); leaves the tag as is.")
    values_keys: list[ValuesKeys] = Field(
        default_factory=list, description="Explicit Helm values key paths, besides discovery."
    )

    @field_validator("path")
    @classmethod
    def _relative(cls, value: str) -> str:
        p = PurePosixPath(value.replace(os.sep, "/"))
        if p.is_absolute() or ".." in p.parts:
            raise ValueError(f"path {value!r} must be relative and stay inside the repo")
        return value

    @field_validator("image")
    @classmethod
    def _name(cls, value: str) -> str:
        try:
            return validate_name(value)
        except ConfigError as exc:
            raise ValueError(exc.message) from None

    @field_validator("tag")
    @classmethod
    def _tag(cls, value: str | None) -> str | None:
        try:
            return None if value is None else validate_tag(value)
        except ConfigError as exc:
            raise ValueError(exc.message) from None

    @field_validator("digest")
    @classmethod
    def _digest(cls, value: str | None) -> str | None:
        try:
            return None if value is None else validate_digest(value)
        except ConfigError as exc:
            raise ValueError(exc.message) from None

    @model_validator(mode="after")
    def _tag_or_digest(self) -> SetImageConfig:
        if self.tag is None and self.digest is None:
            raise ValueError("give a tag, a digest, or both")
        return self

    @classmethod
    def parse(cls, **values: Any) -> SetImageConfig:
        """Build a config, turning validation errors into one actionable ConfigError."""
        try:
            return cls(**values)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "config"
            msg = str(first["msg"]).removeprefix("Value error, ")
            raise ConfigError(f"set-image {where}: {msg}") from None

    @property
    def target(self) -> str:
        """The new reference, for messages: ``name[:tag][@digest]``."""
        return str(ImageRef(self.image, self.tag, self.digest))


@dataclass(frozen=True)
class Change:
    """One image location that changed: ``file`` is relative to the working tree root."""

    file: str
    old: str
    new: str
    line: int = 0
    kind: str = ""

    def as_json(self) -> dict[str, str]:
        """The CLI's JSON shape of a change."""
        return {"file": self.file, "old": self.old, "new": self.new}


@dataclass(frozen=True)
class SetImageResult:
    """What :func:`set_image` did; ``changed`` is False when everything was already set."""

    changes: list[Change] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        """True when at least one file's content changed."""
        return bool(self.changes)

    @property
    def changed_files(self) -> list[str]:
        """Relative paths of the files whose content changed, sorted."""
        return sorted(self.files)


# --- the pure core -------------------------------------------------------------------


@dataclass
class _Edit:
    start: int
    end: int
    text: str


@dataclass
class _Location:
    """An image found in a document; ``apply`` returns the edits to set it."""

    old: ImageRef
    line: int
    kind: str
    edits: list[_Edit]


@dataclass
class _FileScan:
    found: set[str] = field(default_factory=set)
    locations: list[_Location] = field(default_factory=list)
    claims: bool = False
    """A kustomization of this file has an ``images:`` entry for the image (by ``name`` or
    by what it becomes): it decides the image of everything it renders."""
    hints: list[str] = field(default_factory=list)
    renders: list[str] = field(default_factory=list)
    """Paths a kustomization of this file renders (resources, components, patches),
    relative to the working tree, not yet resolved to files."""


def plan_set_image(files: Mapping[str, str], config: SetImageConfig) -> SetImageResult:
    """Compute the new contents of ``files`` (relative path -> text) for ``config``.

    Pure: no file system, no git. Raises ConfigError when a file is not valid YAML
    (``file:line``) or when the image occurs in none of the files (listing the images
    that do occur). Returns only files whose text changes; unchanged -> ``changed=False``.
    """
    changes: list[Change] = []
    new_files: dict[str, str] = {}
    found: set[str] = set()
    hints: list[str] = []
    matched = False
    scans = _scan_tree(files, config)
    for rel in sorted(files):
        text = files[rel]
        scan = scans[rel]
        found |= scan.found
        hints += scan.hints
        if scan.locations:
            matched = True
        edits: list[_Edit] = []
        for loc in scan.locations:
            if not loc.edits:
                continue
            new = _apply_ref(loc.old, config)
            edits.extend(loc.edits)
            changes.append(Change(rel, str(loc.old), str(new), loc.line, loc.kind))
        if edits:
            new_text = _apply_edits(text, edits, rel)
            if new_text != text:
                _check_result(rel, new_text, config)
                new_files[rel] = new_text
    if not matched:
        if hints:
            raise ConfigError(
                f"image {config.image!r} is renamed away under {config.path!r}: " + "; ".join(hints)
            )
        listed = ", ".join(sorted(found)[:20]) or "none"
        more = f" and {len(found) - 20} more" if len(found) > 20 else ""
        raise ConfigError(
            f"image {config.image!r} not found under {config.path!r} (images there: {listed}{more})"
        )
    return SetImageResult(changes=changes, files=new_files)


def _scan_tree(files: Mapping[str, str], config: SetImageConfig) -> dict[str, _FileScan]:
    """Scan every file; then drop the container images a kustomization's ``images:``
    entry overrides.

    ``kustomize edit set image`` changes one line of the kustomization and none of the
    manifests it renders: the entry wins at build time, so editing those too would only
    make an 11-file diff (and change the base for every other overlay). A file is
    rendered by a kustomization when its ``resources``/``bases``/``components``/patches
    reach it, directly or through nested kustomizations, among the files read.
    """
    scans = {rel: _scan_file(rel, files[rel], config) for rel in files}
    covered: set[str] = set()
    pending = [rel for rel, scan in scans.items() if scan.claims]
    seen: set[str] = set(pending)
    while pending:
        rel = pending.pop()
        for target in _rendered_files(scans[rel].renders, files):
            if target in seen:
                continue
            seen.add(target)
            covered.add(target)
            if PurePosixPath(target).name in KUSTOMIZATION_FILES:
                pending.append(target)
    for rel in covered:  # containers only: the entry does not reach a HelmRelease's values
        scan = scans[rel]
        scan.locations = [loc for loc in scan.locations if not _is_container(loc)]
    return scans


def _is_container(location: _Location) -> bool:
    """A workload's container image (``deployment/containers``): what ``images:`` sets."""
    return "/" in location.kind


def _rendered_files(paths: Iterable[str], files: Mapping[str, str]) -> Iterator[str]:
    """The files among ``files`` that kustomization entries ``paths`` name: a file itself,
    or a directory's kustomization file. Remote and missing entries are skipped."""
    for path in paths:
        if path in files:
            yield path
            continue
        for name in sorted(KUSTOMIZATION_FILES):
            candidate = posixpath.join(path, name) if path != "." else name
            if candidate in files:
                yield candidate
                break


def set_image(workdir: str | Path, config: SetImageConfig, *, write: bool = True) -> SetImageResult:
    """Set ``config.image`` under ``workdir/config.path`` and write the changed files.

    Nothing is written unless every file parsed and the image was found; ``write=False``
    only plans. Files are rewritten byte for byte except for the targeted values.
    """
    root = Path(workdir).resolve()
    files = read_tree(root, config.path)
    result = plan_set_image(files, config)
    if write:
        for rel, text in result.files.items():
            _write_atomically((root / rel).resolve(), text)
    return result


def _write_atomically(target: Path, text: str) -> None:
    """Replace ``target``'s content in one rename, keeping its mode: no half-written file."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.chmod(tmp, stat.S_IMODE(target.stat().st_mode))
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def find_images(workdir: str | Path, path: str, image: str) -> list[tuple[str, ImageRef]]:
    """Every reference of ``image`` under ``workdir/path`` as ``(file, ref)`` pairs.

    Used by promotion to read what an environment currently runs. Read-only.
    """
    validate_name(image)
    root = Path(workdir).resolve()
    probe = SetImageConfig(path=path, image=image, tag="probe", digest=None)
    out: list[tuple[str, ImageRef]] = []
    scans = _scan_tree(read_tree(root, path), probe)
    for rel in sorted(scans):
        for loc in scans[rel].locations:
            out.append((rel, loc.old))
    return out


def read_tree(root: Path, path: str) -> dict[str, str]:
    """Read every YAML file under ``root/path`` (a file or a directory) as text.

    Refuses paths that escape ``root`` (also through symlinks) or do not exist. Hidden
    directories (``.git``) are skipped, and so are a Helm chart's ``templates/`` (Go
    templates, not YAML) and its ``Chart.yaml``/``Chart.lock``: a chart directory is
    edited through its values files. Line endings are kept as they are.
    """
    base = (root / path).resolve()
    if base != root and root not in base.parents:
        raise ConfigError(f"path {path!r} escapes the repository {str(root)!r}")
    if not base.exists():
        raise ConfigError(f"path {path!r} does not exist in {str(root)!r}")
    candidates: Iterable[Path]
    if base.is_file():
        candidates = [base]
    else:
        candidates = _walk_yaml(base)
    files: dict[str, str] = {}
    for file in candidates:
        real = file.resolve()
        if real != root and root not in real.parents:
            raise ConfigError(f"{file.relative_to(root)} links outside the repository")
        rel = file.relative_to(root).as_posix()
        try:
            with open(file, encoding="utf-8", newline="") as handle:
                files[rel] = handle.read()
        except UnicodeDecodeError:
            raise ConfigError(f"{rel}: not UTF-8 text") from None
    return files


def _walk_yaml(base: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(base):
        chart = "Chart.yaml" in filenames
        dirnames[:] = sorted(
            d for d in dirnames if not d.startswith(".") and not (chart and d == "templates")
        )
        for name in sorted(filenames):
            if chart and name in CHART_FILES:
                continue
            if name.endswith(YAML_SUFFIXES) or name == "Kustomization":
                yield Path(dirpath) / name


# --- scanning ------------------------------------------------------------------------


def _compose(rel: str, text: str) -> list[Node]:
    yaml = YAML(typ="rt")
    try:
        return [doc for doc in yaml.compose_all(text) if doc is not None]
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = exc.problem or exc.context or "syntax error"
        raise ConfigError(f"{rel}{line}: invalid YAML: {problem}") from None
    except YAMLError as exc:
        raise ConfigError(f"{rel}: invalid YAML: {exc}") from None


def _scan_file(rel: str, text: str, config: SetImageConfig) -> _FileScan:
    scan = _FileScan()
    name = PurePosixPath(rel).name
    for doc in _compose(rel, text):
        if not isinstance(doc, MappingNode):
            continue
        kind = _scalar(_get(doc, "kind"))
        api_version = _scalar(_get(doc, "apiVersion"))
        if name in KUSTOMIZATION_FILES or (
            kind in {"Kustomization", "Component"}
            and (api_version or "").startswith("kustomize.config.k8s.io")
        ):
            _scan_kustomization(doc, rel, text, config, scan)
        elif kind == "HelmRelease" and (api_version or "").startswith(HELM_RELEASE_API):
            values = _path(doc, ("spec", "values"))
            if isinstance(values, MappingNode):
                _scan_values(values, text, config, scan)
        elif kind is not None and api_version is not None:
            _scan_manifest(doc, kind, text, config, scan)
        elif kind is None:
            _scan_values(doc, text, config, scan)
    return scan


def _kustomize_renders(doc: MappingNode, rel: str) -> list[str]:
    """What a kustomization renders from its own tree, as paths relative to the root."""
    here = posixpath.dirname(rel)
    out: list[str] = []

    def add(value: str | None) -> None:
        if value and "://" not in value and not value.startswith(("github.com/", "git@")):
            out.append(posixpath.normpath(posixpath.join(here, value)))

    for key in _KUSTOMIZE_LIST_FIELDS:
        items = _get(doc, key)
        if isinstance(items, SequenceNode):
            for item in items.value:
                add(_scalar(item))
    for key in _KUSTOMIZE_PATH_FIELDS:
        items = _get(doc, key)
        if isinstance(items, SequenceNode):
            for item in items.value:
                add(_scalar(_get(item, "path")))
    return out


def _scan_kustomization(
    doc: MappingNode, rel: str, text: str, config: SetImageConfig, scan: _FileScan
) -> None:
    """``images:`` entries: kustomize matches ``name`` against the manifests' images, and
    ``newName`` (when given) is what the image becomes. So the entry to edit is the one
    whose *effective* image (``newName``, else ``name``) is the image being set; an entry
    whose ``name`` is that image but renames it to another one pins nothing (its tag and
    digest belong to the other image) and only tells the user where the image went."""
    scan.renders += _kustomize_renders(doc, rel)
    images = _get(doc, "images")
    if not isinstance(images, SequenceNode):
        return
    for entry in images.value:
        if not isinstance(entry, MappingNode):
            continue
        name = _scalar(_get(entry, "name"))
        new_name = _scalar(_get(entry, "newName"))
        effective = new_name or name
        if effective is None:
            continue
        scan.found.add(effective)
        if not same_name(effective, config.image):
            if name is not None and same_name(name, config.image):
                scan.claims = True
                line = entry.start_mark.line + 1
                scan.hints.append(f"{rel}:{line} renames it to {effective!r} (newName)")
            continue
        scan.claims = True
        tag_node = _get(entry, "newTag")
        digest_node = _get(entry, "digest")
        old = ImageRef(effective, _scalar(tag_node), _scalar(digest_node))
        anchor = _get(entry, "newName") or _get(entry, "name")
        assert anchor is not None
        edits: list[_Edit] = []
        if config.tag is not None and not _holds_string(tag_node, config.tag):
            edits.append(_set_or_insert(text, entry, anchor, tag_node, "newTag", config.tag))
        if config.digest is not None and old.digest != config.digest:
            edits.append(_set_or_insert(text, entry, anchor, digest_node, "digest", config.digest))
        if config.digest is None and digest_node is not None:
            edits.append(_remove_pair(text, entry, digest_node, "digest"))
        scan.locations.append(_Location(old, anchor.start_mark.line + 1, "kustomization", edits))


def _scan_manifest(
    doc: MappingNode, kind: str, text: str, config: SetImageConfig, scan: _FileScan
) -> None:
    if kind == "List":
        items = _get(doc, "items")
        if isinstance(items, SequenceNode):
            for item in items.value:
                if isinstance(item, MappingNode):
                    sub_kind = _scalar(_get(item, "kind"))
                    if sub_kind:
                        _scan_manifest(item, sub_kind, text, config, scan)
        return
    if kind not in WORKLOAD_KINDS:
        return
    if kind == "Pod":
        pod_spec = _get(doc, "spec")
    elif kind == "CronJob":
        pod_spec = _path(doc, ("spec", "jobTemplate", "spec", "template", "spec"))
    else:
        pod_spec = _path(doc, ("spec", "template", "spec"))
    if not isinstance(pod_spec, MappingNode):
        return
    for list_key in ("initContainers", "containers"):
        containers = _get(pod_spec, list_key)
        if not isinstance(containers, SequenceNode):
            continue
        for container in containers.value:
            if isinstance(container, MappingNode):
                node = _get(container, "image")
                if isinstance(node, ScalarNode):
                    _string_ref(node, text, config, scan, f"{kind.lower()}/{list_key}")


def _scan_values(doc: MappingNode, text: str, config: SetImageConfig, scan: _FileScan) -> None:
    seen: set[int] = set()
    for keys in config.values_keys:
        _explicit_keys(doc, keys, text, config, scan, seen)
    _walk_values(doc, text, config, scan, seen)


def _walk_values(
    node: Node, text: str, config: SetImageConfig, scan: _FileScan, seen: set[int]
) -> None:
    if isinstance(node, SequenceNode):
        for item in node.value:
            _walk_values(item, text, config, scan, seen)
        return
    if not isinstance(node, MappingNode):
        return
    repo_node = _get(node, "repository")
    if repo_node is None:  # `image: shop/cart` beside `tag: 1.0`
        image_node = _get(node, "image")
        bare = parse_reference(_scalar(image_node) or "")
        if bare is not None and not (bare.tag or bare.digest):
            repo_node = image_node
    repository = _scalar(repo_node)
    if repo_node is not None and repository and id(repo_node) not in seen:
        registry = _scalar(_get(node, "registry"))
        full = f"{registry}/{repository}" if registry else repository
        if parse_reference(full) is not None and (_get(node, "tag") or _get(node, "digest")):
            scan.found.add(full)
            if same_name(full, config.image) or repository == config.image:
                seen.add(id(repo_node))
                _mapping_ref(node, repo_node, full, text, config, scan)
    for key, value in node.value:
        key_text = _scalar(key)
        if (
            key_text is not None
            and key_text.lower().endswith("image")
            and isinstance(value, ScalarNode)
            and id(value) not in seen
        ):
            ref = parse_reference(value.value) if isinstance(value.value, str) else None
            if ref is not None and (ref.tag or ref.digest):
                seen.add(id(value))
                _string_ref(value, text, config, scan, "values")
        elif isinstance(value, (MappingNode, SequenceNode)):
            _walk_values(value, text, config, scan, seen)


def _explicit_keys(
    doc: MappingNode,
    keys: ValuesKeys,
    text: str,
    config: SetImageConfig,
    scan: _FileScan,
    seen: set[int],
) -> None:
    if keys.image:
        node = _path(doc, tuple(keys.image.split(".")))
        if isinstance(node, ScalarNode):
            seen.add(id(node))
            _string_ref(node, text, config, scan, "values-keys")
        return
    tag_node, tag_key = _path_with_key(doc, keys.tag)
    digest_node, digest_key = _path_with_key(doc, keys.digest)
    if tag_node is None and digest_node is None:
        return
    if keys.repository:
        repo_node = _path(doc, tuple(keys.repository.split(".")))
        repository = _scalar(repo_node)
        if repository is None:
            return
        scan.found.add(repository)
        if not same_name(repository, config.image):
            return
        assert repo_node is not None
        seen.add(id(repo_node))
    old = ImageRef(config.image, _scalar(tag_node), _scalar(digest_node))
    edits: list[_Edit] = []
    if config.tag is not None and keys.tag and not _holds_string(tag_node, config.tag):
        if not isinstance(tag_node, ScalarNode):
            raise ConfigError(f"values key {keys.tag!r} is missing or not a scalar")
        edits.append(_replace_scalar(text, tag_node, config.tag, tag_key))
    if config.digest is not None and old.digest != config.digest:
        if digest_node is None and keys.digest:
            edits.append(_insert_key(text, doc, keys.digest, config.digest, beside=tag_node))
        elif not isinstance(digest_node, ScalarNode):
            raise ConfigError(f"values key {keys.digest!r} is not a scalar; cannot set a digest")
        else:
            edits.append(_replace_scalar(text, digest_node, config.digest, digest_key))
    if config.digest is None and isinstance(digest_node, ScalarNode) and old.digest:
        edits.append(_replace_scalar(text, digest_node, ""))
    first = tag_node or digest_node
    assert first is not None
    scan.locations.append(_Location(old, first.start_mark.line + 1, "values-keys", edits))


def _mapping_ref(
    node: MappingNode,
    repo_node: Node,
    full: str,
    text: str,
    config: SetImageConfig,
    scan: _FileScan,
) -> None:
    tag_node = _get(node, "tag")
    digest_node = _get(node, "digest")
    old = ImageRef(full, _scalar(tag_node) or None, _scalar(digest_node) or None)
    line = repo_node.start_mark.line + 1
    edits: list[_Edit] = []
    if config.tag is not None and not _holds_string(tag_node, config.tag):
        edits.append(_set_or_insert(text, node, repo_node, tag_node, "tag", config.tag))
    if config.digest is not None and old.digest != config.digest:
        if digest_node is None:
            raise ConfigError(
                f"line {line}: values for {full!r} have no 'digest' key to pin a digest; "
                "add one or configure values_keys"
            )
        edits.append(
            _replace_scalar(text, digest_node, config.digest, _key_node(node, digest_node))
        )
    if config.digest is None and old.digest and isinstance(digest_node, ScalarNode):
        edits.append(_replace_scalar(text, digest_node, ""))
    scan.locations.append(_Location(old, line, "values", edits))


def _string_ref(
    node: ScalarNode, text: str, config: SetImageConfig, scan: _FileScan, kind: str
) -> None:
    ref = parse_reference(node.value) if isinstance(node.value, str) else None
    if ref is None:
        return
    scan.found.add(ref.name)
    if not same_name(ref.name, config.image):
        return
    new = _apply_ref(ref, config)
    edits = [] if new == ref else [_replace_scalar(text, node, str(new))]
    scan.locations.append(_Location(ref, node.start_mark.line + 1, kind, edits))


def _apply_ref(old: ImageRef, config: SetImageConfig) -> ImageRef:
    """The reference after the update: same rule for every layout (see module doc)."""
    if config.tag is not None:
        return ImageRef(old.name, config.tag, config.digest)
    return ImageRef(old.name, old.tag, config.digest)


# --- node helpers --------------------------------------------------------------------


def _get(node: Node | None, key: str) -> Node | None:
    if not isinstance(node, MappingNode):
        return None
    for k, v in node.value:
        if isinstance(k, ScalarNode) and k.value == key:
            return v
    return None


def _key_node(node: MappingNode, value: Node) -> Node:
    for k, v in node.value:
        if v is value:
            return k
    raise PermanentError("internal: value not in mapping")


def _path(node: Node | None, keys: tuple[str, ...]) -> Node | None:
    for key in keys:
        node = _get(node, key)
        if node is None:
            return None
    return node


def _path_with_key(doc: Node, dotted: str | None) -> tuple[Node | None, Node | None]:
    """The node at a dotted key path and its key node, or (None, None)."""
    if not dotted:
        return None, None
    *parents, last = dotted.split(".")
    parent = _path(doc, tuple(parents))
    node = _get(parent, last)
    if node is None or not isinstance(parent, MappingNode):
        return None, None
    return node, _key_node(parent, node)


def _holds_string(node: Node | None, value: str) -> bool:
    """True when ``node`` already loads back as exactly the string ``value``.

    ``tag: 10`` holds the text "10" but loads as the number 10 (and ``tag: 1.10`` as
    1.1), which Helm renders as a number: such a scalar needs rewriting (quoted) even
    though its text is equal.
    """
    if _scalar(node) != value:
        return False
    assert isinstance(node, ScalarNode)
    if node.style is not None:
        return True
    return bool(node.tag and node.tag.endswith(":str")) and not _NON_STRING_PLAIN.match(value)


def _scalar(node: Node | None) -> str | None:
    if isinstance(node, ScalarNode) and isinstance(node.value, str):
        if node.tag is not None and node.tag.endswith(":null"):
            return None
        if node.style is None and node.value in {"", "~", "null", "Null", "NULL"}:
            return None
        return str(node.value)
    return None


# --- text edits ----------------------------------------------------------------------

_NON_STRING_PLAIN = re.compile(
    r"""^(?:
        [-+]?(?:[0-9][0-9_]*)?(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)?   # ints, floats
      | 0[xX][0-9a-fA-F_]+ | 0[oO]?[0-7_]+ | 0[bB][01_]+         # hex, octal, binary
      | [-+]?\.(?:inf|Inf|INF) | \.(?:nan|NaN|NAN)
      | [0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?              # sexagesimal (YAML 1.1)
      | [0-9]{4}-[0-9]{1,2}-[0-9]{1,2}(?:[Tt\ ].*)?               # timestamps
      | (?i:y|n|yes|no|on|off|true|false|null|~)
    )$""",
    re.VERBOSE,
)
_PLAIN_SAFE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./@:+-]*$")


def render_scalar(value: str, style: str | None) -> str:
    """Render ``value`` in the quoting style of the scalar it replaces.

    Plain stays plain unless YAML would read the new value as a number, boolean, null or
    date (``tag: 1.10`` would become the float 1.1), in which case it is double-quoted.
    """
    if style == "'":
        return "'" + value.replace("'", "''") + "'"
    if style == '"' or not _PLAIN_SAFE.match(value) or _NON_STRING_PLAIN.match(value):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    return value


def _scalar_span(text: str, node: Node) -> tuple[int, int]:
    start, end = node.start_mark.index, node.end_mark.index
    anchor = getattr(node, "anchor", None)
    if anchor and text.startswith(f"&{anchor}", start):
        start += len(anchor) + 1
        while start < end and text[start] in " \t":
            start += 1
    if start < end and text[start] in "!&*":
        raise PermanentError(
            f"line {node.start_mark.line + 1}: tagged or aliased image values are not supported"
        )
    return start, end


def _replace_scalar(text: str, node: Node, value: str, key: Node | None = None) -> _Edit:
    """Replace a scalar in place; an empty value (``tag:``) needs its ``key`` node."""
    if not isinstance(node, ScalarNode) or node.style in {"|", ">"}:
        raise PermanentError(
            f"line {node.start_mark.line + 1}: only plain or quoted scalars can be edited"
        )
    start, end = _scalar_span(text, node)
    if start == end and node.style is None:  # an empty value: `tag:` -> `tag: x`
        if key is None:
            raise PermanentError(f"line {node.start_mark.line + 1}: cannot fill an empty value")
        colon = text.index(":", key.end_mark.index) + 1
        return _Edit(colon, colon, " " + render_scalar(value, None))
    return _Edit(start, end, render_scalar(value, node.style))


def _line_end(text: str, index: int) -> int:
    """Index just past the newline ending the line that holds ``index`` (or len(text))."""
    nl = text.find("\n", index)
    return len(text) if nl < 0 else nl + 1


def _set_or_insert(
    text: str, mapping: MappingNode, anchor: Node, node: Node | None, key: str, value: str
) -> _Edit:
    if node is not None:
        return _replace_scalar(text, node, value, _key_node(mapping, node))
    if mapping.flow_style:
        raise PermanentError(
            f"line {mapping.start_mark.line + 1}: cannot add {key!r} to a flow-style mapping; "
            "write the entry in block style"
        )
    anchor_key = _key_node(mapping, anchor)
    indent = " " * anchor_key.start_mark.column
    pos = _line_end(text, anchor.end_mark.index)
    newline = "\r\n" if text[:pos].endswith("\r\n") else "\n"
    lead = "" if text[:pos].endswith("\n") else newline
    return _Edit(pos, pos, f"{lead}{indent}{key}: {render_scalar(value, None)}{newline}")


def _insert_key(
    text: str, doc: MappingNode, dotted: str, value: str, *, beside: Node | None = None
) -> _Edit:
    """Add ``dotted``'s last key to its (existing, block-style) parent mapping, right after
    ``beside`` when that is one of its one-line entries (the tag), else after the last
    one: for a chart whose values have no such key yet."""
    *parents, last = dotted.split(".")
    parent = _path(doc, tuple(parents)) if parents else doc
    anchors = [
        v
        for k, v in (parent.value if isinstance(parent, MappingNode) else [])
        if isinstance(v, ScalarNode)
        and v.style not in {"|", ">"}
        and v.start_mark.line == k.start_mark.line == v.end_mark.line
    ]
    if not isinstance(parent, MappingNode) or not anchors:
        where = ".".join(parents) or "the top level"
        raise ConfigError(
            f"values key {dotted!r} is missing and {where} has no one-line entry to add it "
            "after; add the key by hand once"
        )
    anchor = next((a for a in anchors if a is beside), anchors[-1])
    return _set_or_insert(text, parent, anchor, None, last, value)


def _remove_pair(text: str, mapping: MappingNode, value: Node, key: str) -> _Edit:
    key_node = _key_node(mapping, value)
    line_start = text.rfind("\n", 0, key_node.start_mark.index) + 1
    if mapping.flow_style or text[line_start : key_node.start_mark.index].strip():
        raise PermanentError(
            f"line {key_node.start_mark.line + 1}: cannot drop the {key!r} pin here; "
            f"move {key!r} to its own line or set a digest as well"
        )
    return _Edit(line_start, _line_end(text, value.end_mark.index), "")


def _apply_edits(text: str, edits: list[_Edit], rel: str) -> str:
    unique = {(e.start, e.end, e.text): e for e in edits}
    ordered = sorted(unique.values(), key=lambda e: (e.start, e.end))
    for prev, cur in itertools.pairwise(ordered):
        if cur.start < prev.end:
            raise PermanentError(f"{rel}: overlapping edits at offset {cur.start}")
    out: list[str] = []
    pos = 0
    for edit in ordered:
        out.append(text[pos : edit.start])
        out.append(edit.text)
        pos = edit.end
    out.append(text[pos:])
    return "".join(out)


def _check_result(rel: str, new_text: str, config: SetImageConfig) -> None:
    """Re-parse the edited text: it must be valid YAML and show the target everywhere."""
    scan = _FileScan()
    try:
        for loc in _scan_file(rel, new_text, config).locations:
            scan.locations.append(loc)
    except ConfigError as exc:
        raise PermanentError(f"internal: edit produced invalid YAML: {exc.message}") from None
    stale = [loc for loc in scan.locations if loc.edits]
    if stale:
        raise PermanentError(f"internal: {rel}:{stale[0].line} still differs after the edit")
