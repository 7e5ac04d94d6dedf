"""Restore drill: prove a backup can rebuild the namespaces it holds, and how fast.

:func:`run_drill` picks a backup, verifies every object's sha256 *before* touching a
cluster (a tampered or missing object fails the drill naming it, and leaves nothing
behind), restores into ``<ns>-drill-<id>`` namespaces, checks parity and workload
availability, measures RTO (drill start to verified ready) and RPO (backup age), and
always deletes the drill namespaces, also when a step raised.

Drill history is kept as JSON objects next to the backups (``<prefix>/<cluster>/_drills/``),
so the trend survives Prefect database resets and is readable with any S3 tool.
:func:`render_report` and :func:`trend_rows` are pure; the ``@task`` wrappers at the end
publish artifacts and events.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE as NO_CACHE
from prefect.events import emit_event
from pydantic import BaseModel, ConfigDict, Field

from blocks.cluster import KubernetesCluster
from blocks.storage import BackupStorage
from shipyard.core.errors import ConfigError, PermanentError, TransientError, retry_condition
from shipyard.core.redact import redact
from tasks.backup_cluster import (
    DEFAULT_WORKERS,
    VELERO_API,
    KubeApi,
    S3Store,
    VeleroConfig,
    export_objects,
    parallel_map,
    register_secret_values,
    run_velero,
    velero_restore_object,
)
from tasks.backup_manifest import (
    DRILLS_DIR,
    BackupManifest,
    IntegrityError,
    backup_root,
    choose_backup,
    integrity_error,
    object_key,
    verify_contents,
)
from tasks.normalize import (
    diff_objects,
    drill_namespace,
    group_of,
    map_namespace,
    restore_rank,
    significant,
)
from tasks.restore_objects import (
    DRILL_LABEL,
    ExistingPolicy,
    PlannedObject,
    RestoreOutcome,
    cleanup_drill,
    measure_parity,
    plan_restore,
    restore_plan,
    wait_workloads,
)

__all__ = [
    "DrillConfig",
    "DrillResult",
    "GitDrillResult",
    "compare_environments",
    "drill_history",
    "publish_drill",
    "render_env",
    "render_report",
    "restore_drill_task",
    "restore_from_git_task",
    "run_drill",
    "run_git_drill",
    "run_velero_drill",
    "trend_rows",
    "velero_drill_task",
]

log = logging.getLogger(__name__)
JSON = dict[str, Any]


class DrillConfig(BaseModel):
    """How to run one restore drill."""

    model_config = ConfigDict(extra="forbid")

    cluster: str = Field("default", description="Cluster name the backups were taken from.")
    backup: str = Field("latest", description="Backup id, 'latest', or 'random' (see window).")
    window_days: float | None = Field(
        None, gt=0, description="With backup='random': pick among backups this recent."
    )
    existing: ExistingPolicy = Field(
        ExistingPolicy.FAIL, description="Objects already in the drill target: skip, update, fail."
    )
    rto_target_seconds: float | None = Field(
        None, gt=0, description="Fail the drill when restore-to-verified takes longer."
    )
    rpo_target_seconds: float | None = Field(
        None, gt=0, description="Fail the drill when the backup is older than this."
    )
    ready_timeout_seconds: float = Field(
        120.0, gt=0, description="How long to wait for restored workloads to become Available."
    )
    cleanup_timeout_seconds: float = Field(
        120.0, gt=0, description="How long to wait for drill namespaces to disappear."
    )
    check_workloads: bool = Field(True, description="Require restored workloads Available.")
    workers: int = Field(DEFAULT_WORKERS, ge=1, le=64, description="Parallel API/S3 calls.")
    drill_id: str | None = Field(
        None, pattern=r"^[a-z0-9]{1,8}$", description="Fixed drill id (default random)."
    )


class DrillResult(BaseModel):
    """The outcome of a drill: the CLI's JSON and the drill history record."""

    passed: bool = Field(description="Every check passed and targets were met.")
    backup_id: str = Field(description="The backup restored.")
    drill_id: str = Field("", description="Suffix of the drill namespaces.")
    cluster: str = Field("default", description="Cluster name of the backup.")
    started_at: datetime = Field(description="Drill start (UTC).")
    objects: int = Field(0, description="Objects in the backup.")
    restored: int = Field(0, description="Objects created or updated by the drill.")
    parity: float = Field(0.0, description="Share of objects equal to the backup after restore.")
    rto_seconds: float = Field(0.0, description="Drill start to verified ready.")
    rpo_seconds: float = Field(0.0, description="Age of the backup at drill start.")
    rto_target_seconds: float | None = Field(None, description="RTO target, if any.")
    rpo_target_seconds: float | None = Field(None, description="RPO target, if any.")
    mismatches: list[str] = Field(default_factory=list, description="Parity differences.")
    unavailable: list[str] = Field(default_factory=list, description="Workloads not Available.")
    failures: list[str] = Field(default_factory=list, description="Why the drill failed.")
    namespaces: dict[str, str] = Field(default_factory=dict, description="Source -> drill ns.")
    cleanup_left: list[str] = Field(
        default_factory=list, description="Drill objects still present after cleanup."
    )
    timings: dict[str, float] = Field(
        default_factory=dict, description="Seconds per phase (select, verify, restore, ...)."
    )

    def cli_json(self) -> JSON:
        """Exactly the keys of the CLI contract."""
        return {
            "passed": self.passed,
            "backup_id": self.backup_id,
            "objects": self.objects,
            "restored": self.restored,
            "parity": round(self.parity, 6),
            "rto_seconds": round(self.rto_seconds, 3),
            "rpo_seconds": round(self.rpo_seconds, 3),
            "mismatches": self.mismatches,
        }


def _fetch_verified(
    store: S3Store, manifest: BackupManifest, root: str, workers: int
) -> dict[str, JSON]:
    """Download every object of the backup and check it against the manifest."""
    import json

    paths = [e.path for e in manifest.objects]
    blobs = parallel_map(lambda p: store.get(object_key(root, p)), paths, workers)
    contents = dict(zip(paths, blobs, strict=True))
    problems = verify_contents(manifest, contents)
    if problems:
        raise integrity_error(manifest.backup_id, problems)
    out: dict[str, JSON] = {}
    for path, data in contents.items():
        assert data is not None
        out[path] = json.loads(data)
        register_secret_values(out[path])
    return out


def run_drill(
    kube: KubeApi,
    store: S3Store,
    config: DrillConfig,
    *,
    prefix: str,
    wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    clock: Callable[[], float] = time.monotonic,
) -> DrillResult:
    """Run one drill end to end and return its result (a failed drill returns, not raises).

    Raises only for unusable input (unknown bucket or backup id: ConfigError) and for
    infrastructure failures that retrying may fix (TransientError).
    """
    t0 = clock()
    started = wall()
    store.check_bucket()
    ids = store.complete_backups(prefix, config.cluster, config.workers)
    window = timedelta(days=config.window_days) if config.window_days else None
    backup_id = choose_backup(ids, config.backup, now=started, window=window)
    manifest = store.read_manifest(prefix, config.cluster, backup_id)
    result = DrillResult(
        passed=False,
        backup_id=backup_id,
        cluster=config.cluster,
        started_at=started,
        objects=len(manifest.objects),
        rpo_seconds=max(0.0, (started - manifest.created_at).total_seconds()),
        rto_target_seconds=config.rto_target_seconds,
        rpo_target_seconds=config.rpo_target_seconds,
    )
    root = backup_root(prefix, config.cluster, backup_id)
    mark = clock()

    def lap(phase: str) -> None:
        nonlocal mark
        now = clock()
        result.timings[phase] = round(now - mark, 3)
        mark = now

    lap("select")
    try:
        objects = _fetch_verified(store, manifest, root, config.workers)
        lap("verify")
    except IntegrityError as exc:
        result.failures.append(exc.message)
        result.mismatches = [exc.message]
        result.rto_seconds = clock() - t0
        return result

    drill_id = config.drill_id or f"{random.SystemRandom().getrandbits(24):06x}"
    mapping = {ns: drill_namespace(ns, drill_id) for ns in manifest.namespaces}
    result.drill_id = drill_id
    result.namespaces = mapping
    plan = plan_restore(manifest, objects, mapping, drill_id)
    outcome = RestoreOutcome()
    try:
        restore_plan(kube, plan, policy=config.existing, workers=config.workers, outcome=outcome)
        result.restored = outcome.restored
        lap("restore")
        parity = measure_parity(kube, plan, workers=config.workers)
        result.parity = parity.parity
        result.mismatches = parity.mismatches
        lap("parity")
        if config.check_workloads:
            result.unavailable = wait_workloads(
                kube, plan, timeout=config.ready_timeout_seconds, workers=config.workers
            )
            lap("ready")
        result.rto_seconds = clock() - t0
    except Exception as exc:  # noqa: BLE001 - recorded as a failed drill, cleanup follows
        result.restored = outcome.restored
        result.rto_seconds = clock() - t0
        result.failures.append(redact(f"restore failed: {exc}"))
    finally:
        result.cleanup_left = cleanup_drill(
            kube,
            list(mapping.values()),
            outcome.created_cluster_scoped,
            timeout=config.cleanup_timeout_seconds,
        )
        lap("cleanup")
    result.failures.extend(evaluate(result))
    result.passed = not result.failures
    return result


def evaluate(result: DrillResult) -> list[str]:
    """Reasons a drill misses its bar (pure): parity, availability, RTO, RPO, cleanup."""
    reasons: list[str] = []
    if result.parity < 1.0 and not any(f.startswith("restore failed") for f in result.failures):
        reasons.append(f"parity {result.parity:.4f} < 1.0 ({len(result.mismatches)} differences)")
    if result.unavailable:
        reasons.append(f"workloads not Available: {', '.join(result.unavailable[:5])}")
    if result.rto_target_seconds is not None and result.rto_seconds > result.rto_target_seconds:
        reasons.append(
            f"RTO {result.rto_seconds:.1f}s exceeds target {result.rto_target_seconds:.1f}s"
        )
    if result.rpo_target_seconds is not None and result.rpo_seconds > result.rpo_target_seconds:
        reasons.append(
            f"RPO {result.rpo_seconds:.1f}s exceeds target {result.rpo_target_seconds:.1f}s"
        )
    if result.cleanup_left:
        reasons.append(f"cleanup incomplete: {', '.join(result.cleanup_left[:5])}")
    return reasons


# --- history, report ------------------------------------------------------------------


def history_key(prefix: str, result: DrillResult) -> str:
    """Where a drill record is stored (time-sortable)."""
    stamp = result.started_at.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return (
        f"{backup_root(prefix, result.cluster)}{DRILLS_DIR}/{stamp}-{result.drill_id or 'x'}.json"
    )


def record_drill(store: S3Store, prefix: str, result: DrillResult) -> str:
    """Append ``result`` to the drill history in S3; returns the key."""
    key = history_key(prefix, result)
    store.put(key, result.model_dump_json().encode())
    return key


def drill_history(
    store: S3Store, prefix: str, cluster: str, limit: int = 10, workers: int = DEFAULT_WORKERS
) -> list[DrillResult]:
    """The ``limit`` most recent drill records, oldest first."""
    keys = sorted(store.list_keys(f"{backup_root(prefix, cluster)}{DRILLS_DIR}/"))[-limit:]
    blobs = parallel_map(store.get, keys, workers)
    return [DrillResult.model_validate_json(b) for b in blobs if b is not None]


def trend_rows(history: list[DrillResult]) -> list[JSON]:
    """Table rows for the drill trend artifact (pure)."""
    return [
        {
            "started": r.started_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M"),
            "backup": r.backup_id,
            "passed": r.passed,
            "objects": r.objects,
            "parity": round(r.parity, 4),
            "rto_s": round(r.rto_seconds, 1),
            "rpo_s": round(r.rpo_seconds, 1),
        }
        for r in history
    ]


def render_report(result: DrillResult) -> str:
    """Markdown report of one drill (pure; Secret values never appear in results)."""
    verdict = "PASSED" if result.passed else "FAILED"

    def target(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    lines = [
        f"# Restore drill {verdict}",
        "",
        f"Backup `{result.backup_id}` of cluster `{result.cluster}`, drill `{result.drill_id}`.",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        f"| objects in backup | {result.objects} | |",
        f"| restored | {result.restored} | |",
        f"| parity | {result.parity:.4f} | 1.0 |",
        f"| RTO (s) | {result.rto_seconds:.1f} | {target(result.rto_target_seconds)} |",
        f"| RPO (s) | {result.rpo_seconds:.1f} | {target(result.rpo_target_seconds)} |",
        "",
    ]
    if result.namespaces:
        lines += [
            "Namespaces: " + ", ".join(f"`{k}` -> `{v}`" for k, v in result.namespaces.items()),
            "",
        ]
    if result.failures:
        lines += ["## Failures", "", *(f"- {f}" for f in result.failures), ""]
    if result.mismatches:
        lines += ["## Mismatches", "", *(f"- `{m}`" for m in result.mismatches[:50]), ""]
    if result.unavailable:
        lines += ["## Not available", "", *(f"- {u}" for u in result.unavailable), ""]
    cleanup = "complete" if not result.cleanup_left else f"left {result.cleanup_left}"
    lines += [f"Cleanup: {cleanup}."]
    if result.timings:
        lines += ["", "Phases (s): " + ", ".join(f"{k} {v:.1f}" for k, v in result.timings.items())]
    return redact("\n".join(lines))


# --- tasks ----------------------------------------------------------------------------


@task(
    name="restore_drill",
    retries=1,
    retry_delay_seconds=10,
    retry_condition_fn=retry_condition,
    cache_policy=NO_CACHE,
)
def restore_drill_task(
    config: DrillConfig, cluster: KubernetesCluster, storage: BackupStorage
) -> DrillResult:
    """Verify, restore, check and clean up one backup (see :func:`run_drill`)."""
    kube = KubeApi(cluster.get_api_client())
    store = S3Store(storage.get_s3_client(), storage.bucket)
    return run_drill(kube, store, config, prefix=storage.prefix)


@task(
    name="publish_drill",
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=retry_condition,
    cache_policy=NO_CACHE,
)
def publish_drill(result: DrillResult, storage: BackupStorage) -> None:
    """Record the drill in S3, publish report + trend artifacts, emit the drill event."""
    store = S3Store(storage.get_s3_client(), storage.bucket)
    record_drill(store, storage.prefix, result)
    history = drill_history(store, storage.prefix, result.cluster)
    create_markdown_artifact(
        key="restore-drill-report",
        markdown=render_report(result),
        description=f"Restore drill of backup {result.backup_id}",
    )
    create_table_artifact(
        key="restore-drill-trend",
        table=trend_rows(history),
        description="Recent restore drills: parity, RTO and RPO over time.",
    )
    emit_event(
        event="shipyard.drill.passed" if result.passed else "shipyard.drill.failed",
        resource={
            "prefect.resource.id": f"shipyard.cluster.{result.cluster}",
            "prefect.resource.name": result.cluster,
        },
        related=[
            {
                "prefect.resource.id": f"shipyard.backup.{result.backup_id}",
                "prefect.resource.role": "backup",
            }
        ],
        payload={
            "backup_id": result.backup_id,
            "parity": result.parity,
            "rto_seconds": result.rto_seconds,
            "rpo_seconds": result.rpo_seconds,
            "failures": result.failures[:10],
        },
    )


# --- restore from git -------------------------------------------------------------------

KUSTOMIZATION_NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
POD_TEMPLATE_PATHS: dict[str, tuple[str, ...]] = {
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
    "Pod": ("spec",),
}


def render_env(env_dir: Path, root: Path | None = None) -> list[JSON]:
    """The desired state of a GitOps environment directory (pure: files in, objects out).

    Understands plain YAML manifests (multi-document) and the kustomize subset GitOps
    repos use for environments: ``resources`` (files and directories, recursively),
    ``namespace`` and ``images`` overrides (newName / newTag / digest). Anything else
    in a kustomization is a ConfigError rather than a silently wrong render.

    ``root`` bounds where resources may come from (default: the enclosing git work tree,
    else ``env_dir`` itself), so an env cannot pull files from outside its repository.
    """
    if not env_dir.is_dir():
        raise ConfigError(f"environment directory {env_dir} does not exist")
    env = env_dir.resolve()
    if root is None:
        root = next((p for p in (env, *env.parents) if (p / ".git").exists()), env)
    return _render_dir(root.resolve(), env, depth=0)


_SUPPORTED_KUSTOMIZE = frozenset({"apiVersion", "kind", "resources", "namespace", "images"})


def _render_dir(root: Path, directory: Path, depth: int) -> list[JSON]:
    if depth > 10:
        raise ConfigError(f"{directory}: kustomization resources nest too deep")
    kustomization = next(
        (directory / n for n in KUSTOMIZATION_NAMES if (directory / n).is_file()), None
    )
    if kustomization is None:
        objects: list[JSON] = []
        for path in sorted(directory.iterdir()):
            if path.suffix in (".yaml", ".yml") and path.is_file():
                objects.extend(_load_yaml(path))
        return objects
    spec = _load_yaml(kustomization)
    doc = spec[0] if spec else {}
    unknown = set(doc) - _SUPPORTED_KUSTOMIZE
    if unknown:
        raise ConfigError(
            f"{kustomization}: unsupported kustomize fields {', '.join(sorted(unknown))}"
        )
    objects = []
    for entry in doc.get("resources") or []:
        target = (directory / str(entry)).resolve()
        if root not in target.parents and target != root:
            raise ConfigError(f"{kustomization}: resource {entry} is outside the repository")
        if target.is_dir():
            objects.extend(_render_dir(root, target, depth + 1))
        elif target.is_file():
            objects.extend(_load_yaml(target))
        else:
            raise ConfigError(f"{kustomization}: resource {entry} does not exist")
    namespace = doc.get("namespace")
    for obj in objects:
        if namespace and obj.get("kind") != "Namespace":
            obj.setdefault("metadata", {})["namespace"] = namespace
        for image in doc.get("images") or []:
            _override_image(obj, image)
    return objects


def _load_yaml(path: Path) -> list[JSON]:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        docs = list(YAML(typ="safe").load_all(path.read_text(encoding="utf-8")))
    except (OSError, YAMLError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    return [d for d in docs if isinstance(d, dict)]


def _override_image(obj: JSON, image: Any) -> None:
    """Apply one kustomize ``images`` entry to every container of ``obj``."""
    from tasks.set_image import parse_reference

    if not isinstance(image, dict) or not image.get("name"):
        return
    node: Any = obj
    for key in POD_TEMPLATE_PATHS.get(str(obj.get("kind")), ()):
        node = node.get(key) if isinstance(node, dict) else None
    if not isinstance(node, dict):
        return
    for field in ("containers", "initContainers"):
        for container in node.get(field) or []:
            ref = parse_reference(str(container.get("image", "")))
            if ref is None or ref.name != image["name"]:
                continue
            name = image.get("newName") or ref.name
            tag = image.get("newTag", ref.tag)
            digest = image.get("digest", ref.digest)
            text = name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
            container["image"] = text


class GitDrillResult(BaseModel):
    """Outcome of rebuilding an environment from git next to the live one."""

    passed: bool = Field(description="The git-built copy equals the live environment.")
    live_namespace: str = Field(description="The live environment's namespace.")
    drill_namespace: str = Field(description="Where the git copy was built (deleted after).")
    objects: int = Field(0, description="Objects rendered from git.")
    restored: int = Field(0, description="Objects created in the drill namespace.")
    parity: float = Field(0.0, description="Share of live+git objects equal on both sides.")
    only_in_git: list[str] = Field(default_factory=list, description="Rendered, not live.")
    only_in_live: list[str] = Field(default_factory=list, description="Live, not in git.")
    mismatches: list[str] = Field(default_factory=list, description="Field differences.")
    failures: list[str] = Field(default_factory=list, description="Why the drill failed.")
    rto_seconds: float = Field(0.0, description="Render + apply + verify time.")
    cleanup_left: list[str] = Field(default_factory=list, description="Not cleaned up.")


def _identity(obj: JSON) -> tuple[str, str, str]:
    return (
        group_of(str(obj.get("apiVersion", ""))),
        str(obj.get("kind")),
        str((obj.get("metadata") or {}).get("name")),
    )


def compare_environments(
    desired: list[JSON], live: list[JSON], *, secret_kinds: frozenset[str] = frozenset({"Secret"})
) -> tuple[float, list[str], list[str], list[str]]:
    """Parity of two normalized object sets of one namespace (pure).

    Returns (parity, only in desired, only in live, field mismatches); objects are
    matched by group, kind and name, Namespace objects are not compared.
    """
    want = {_identity(o): o for o in desired if o.get("kind") != "Namespace"}
    have = {_identity(o): o for o in live if o.get("kind") != "Namespace"}
    only_desired = sorted("/".join(k[1:]) for k in want.keys() - have.keys())
    only_live = sorted("/".join(k[1:]) for k in have.keys() - want.keys())
    mismatches: list[str] = []
    equal = 0
    for key in sorted(want.keys() & have.keys()):
        diffs = significant(diff_objects(want[key], have[key]))
        diffs = [d for d in diffs if d.path != ".metadata.namespace"]
        if not diffs:
            equal += 1
        for d in diffs[:5]:
            mismatches.append(f"{key[1]}/{key[2]} {d.render(secret=key[1] in secret_kinds)}")
    total = len(want.keys() | have.keys())
    return (1.0 if total == 0 else equal / total), only_desired, only_live, mismatches


def run_git_drill(
    kube: KubeApi,
    env_dir: Path,
    live_namespace: str,
    *,
    drill_id: str | None = None,
    root: Path | None = None,
    check_workloads: bool = True,
    ready_timeout: float = 120.0,
    workers: int = DEFAULT_WORKERS,
    clock: Callable[[], float] = time.monotonic,
) -> GitDrillResult:
    """Build the environment from git alone in a drill namespace and compare it with live.

    Both copies are read back from the cluster and normalized, so server defaulting
    affects them equally: parity 1.0 proves git holds everything the live environment
    needs. The drill namespace is always deleted.
    """
    t0 = clock()
    rendered = render_env(env_dir, root)
    did = drill_id or f"{random.SystemRandom().getrandbits(24):06x}"
    target = drill_namespace(live_namespace, did)
    objects = [o for o in rendered if o.get("kind") != "Namespace"]
    for obj in objects:
        meta = obj.setdefault("metadata", {})
        meta["namespace"] = target
    namespace_obj: JSON = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": target, "labels": {DRILL_LABEL: did}},
    }
    result = GitDrillResult(
        passed=False, live_namespace=live_namespace, drill_namespace=target, objects=len(objects)
    )
    plan = sorted(
        [PlannedObject("namespace", namespace_obj, False)]
        + [PlannedObject(f"git/{i}", o, o.get("kind") == "Secret") for i, o in enumerate(objects)],
        key=lambda p: (restore_rank(p.kind), p.path),
    )
    outcome = RestoreOutcome()
    try:
        restore_plan(kube, plan, policy=ExistingPolicy.FAIL, workers=workers, outcome=outcome)
        result.restored = max(0, outcome.restored - 1)
        if check_workloads:
            slow = wait_workloads(kube, plan, timeout=ready_timeout, workers=workers)
            if slow:
                result.failures.append(f"workloads not Available: {', '.join(slow[:5])}")
        built, _ = export_objects(kube, [target], include_crds=False, workers=workers)
        live, _ = export_objects(kube, [live_namespace], include_crds=False, workers=workers)
        built = [map_namespace(o, {target: live_namespace}) for o in built]
        parity, only_git, only_live, mismatches = compare_environments(built, live)
        result.parity = parity
        result.only_in_git = only_git
        result.only_in_live = only_live
        result.mismatches = mismatches[:50]
        result.rto_seconds = clock() - t0
    except (PermanentError, TransientError) as exc:
        result.rto_seconds = clock() - t0
        result.failures.append(redact(f"rebuild from git failed: {exc}"))
    finally:
        result.cleanup_left = cleanup_drill(kube, [target], outcome.created_cluster_scoped)
    if result.parity < 1.0 and not result.failures:
        result.failures.append(
            f"git and live differ: parity {result.parity:.4f}, {len(result.only_in_git)} only in "
            f"git, {len(result.only_in_live)} only live, {len(result.mismatches)} field diffs"
        )
    if result.cleanup_left:
        result.failures.append(f"cleanup incomplete: {', '.join(result.cleanup_left)}")
    result.passed = not result.failures
    return result


@task(
    name="restore_from_git",
    retries=1,
    retry_delay_seconds=10,
    retry_condition_fn=retry_condition,
    cache_policy=NO_CACHE,
)
def restore_from_git_task(
    cluster: KubernetesCluster, env_dir: str, live_namespace: str, ready_timeout: float = 120.0
) -> GitDrillResult:
    """Rebuild ``env_dir`` into a drill namespace and compare with ``live_namespace``."""
    kube = KubeApi(cluster.get_api_client())
    return run_git_drill(kube, Path(env_dir), live_namespace, ready_timeout=ready_timeout)


@task(name="checkout_env", retries=2, retry_delay_seconds=[2, 10], cache_policy=NO_CACHE)
def checkout_env(repo_url: str, ref: str, env_path: str) -> str:
    """Shallow-clone ``repo_url`` at ``ref`` into a temp dir; return the env directory."""
    import subprocess
    import tempfile

    workdir = Path(tempfile.mkdtemp(prefix="shipyard-git-drill-"))
    proc = subprocess.run(
        ["git", "clone", "--quiet", "--depth", "1", "--branch", ref, repo_url, str(workdir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        message = redact(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "")
        if "not found" in message or "does not exist" in message or "Remote branch" in message:
            raise ConfigError(f"cannot clone {redact(repo_url)} at {ref}: {message}")
        raise TransientError(f"git clone of {redact(repo_url)} failed: {message}")
    env_dir = (workdir / env_path).resolve()
    if workdir.resolve() not in env_dir.parents and env_dir != workdir.resolve():
        raise ConfigError(f"env path {env_path} leaves the repository")
    return str(env_dir)


def render_git_report(result: GitDrillResult) -> str:
    """Markdown report of a restore-from-git drill (pure)."""
    verdict = "PASSED" if result.passed else "FAILED"
    lines = [
        f"# Restore from git {verdict}",
        "",
        f"Live `{result.live_namespace}` vs rebuilt `{result.drill_namespace}`: "
        f"{result.objects} objects rendered, {result.restored} created, parity "
        f"{result.parity:.4f}, {result.rto_seconds:.1f}s.",
        "",
    ]
    for title, items in (
        ("Failures", result.failures),
        ("Only in git", result.only_in_git),
        ("Only live (not in git)", result.only_in_live),
        ("Mismatches", [f"`{m}`" for m in result.mismatches]),
    ):
        if items:
            lines += [f"## {title}", "", *(f"- {i}" for i in items), ""]
    return redact("\n".join(lines))


# --- Velero-driven drill ----------------------------------------------------------------


def latest_velero_backup(kube: KubeApi, config: VeleroConfig, name: str = "latest") -> JSON:
    """A Completed velero.io Backup by name, or the newest Completed one."""
    doc = kube.get(f"{VELERO_API}/namespaces/{config.namespace}/backups")
    if doc is None:
        raise ConfigError("Velero is not installed (no velero.io/v1 API on the cluster)")
    done = [
        b for b in doc.get("items") or [] if (b.get("status") or {}).get("phase") == "Completed"
    ]
    if name != "latest":
        found = [b for b in done if b["metadata"]["name"] == name]
        if not found:
            raise ConfigError(f"no Completed Velero backup {name!r} in {config.namespace}")
        return found[0]
    if not done:
        raise ConfigError("no Completed Velero backups", hint="create one with the backup flow")
    return max(done, key=_velero_time)


def _velero_time(backup: JSON) -> str:
    status = backup.get("status") or {}
    meta = backup.get("metadata") or {}
    return str(status.get("startTimestamp") or meta.get("creationTimestamp") or "")


def run_velero_drill(
    kube: KubeApi,
    config: VeleroConfig,
    *,
    backup: str = "latest",
    drill_id: str | None = None,
    rto_target_seconds: float | None = None,
    ready_timeout: float = 120.0,
    workers: int = DEFAULT_WORKERS,
    wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    clock: Callable[[], float] = time.monotonic,
) -> DrillResult:
    """Drill a Velero backup: a Restore with namespaceMapping into drill namespaces, then
    parity of each drill namespace against its live source, readiness, RTO/RPO, cleanup.

    Velero's backup contents are opaque to Shipyard, so parity is measured against the
    live namespaces (changes made since the backup show up as mismatches).
    """
    t0 = clock()
    started = wall()
    chosen = latest_velero_backup(kube, config, backup)
    name = str(chosen["metadata"]["name"])
    namespaces = [str(n) for n in (chosen.get("spec") or {}).get("includedNamespaces") or []]
    if not namespaces or "*" in namespaces:
        raise ConfigError(f"Velero backup {name} does not list its namespaces explicitly")
    taken = _velero_time(chosen)
    rpo = 0.0
    if taken:
        rpo = max(
            0.0, (started - datetime.fromisoformat(taken.replace("Z", "+00:00"))).total_seconds()
        )
    did = drill_id or f"{random.SystemRandom().getrandbits(24):06x}"
    mapping = {ns: drill_namespace(ns, did) for ns in namespaces}
    result = DrillResult(
        passed=False,
        backup_id=name,
        drill_id=did,
        started_at=started,
        rpo_seconds=rpo,
        rto_target_seconds=rto_target_seconds,
        namespaces=mapping,
    )
    restore = velero_restore_object(f"shipyard-drill-{did}", name, mapping, config)
    restore_url = (
        f"{VELERO_API}/namespaces/{config.namespace}/restores/{restore['metadata']['name']}"
    )
    try:
        outcome = run_velero(kube, restore, config)
        if not outcome.ok:
            result.failures.append(
                f"Velero restore ended {outcome.phase} ({outcome.errors} errors)"
            )
        matched = total = 0
        for source, target in mapping.items():
            live, _ = export_objects(kube, [source], include_crds=False, workers=workers)
            built, _ = export_objects(kube, [target], include_crds=False, workers=workers)
            built = [map_namespace(o, {target: source}) for o in built]
            parity, only_live, only_drill, diffs = compare_environments(live, built)
            pair_total = len({_identity(o) for o in live + built if o.get("kind") != "Namespace"})
            matched += round(parity * pair_total)
            total += pair_total
            result.mismatches += [f"{source}: {d}" for d in diffs]
            result.mismatches += [f"{source}: {o} missing after restore" for o in only_live]
            result.mismatches += [f"{source}: {o} not in the live namespace" for o in only_drill]
            result.objects += len([o for o in live if o.get("kind") != "Namespace"])
            result.restored += len([o for o in built if o.get("kind") != "Namespace"])
            plan = [
                PlannedObject(f"{target}/{i}", map_namespace(o, {source: target}), False)
                for i, o in enumerate(built)
            ]
            result.unavailable += wait_workloads(kube, plan, timeout=ready_timeout, workers=workers)
        result.parity = 1.0 if total == 0 else matched / total
        result.mismatches = result.mismatches[:50]
        result.rto_seconds = clock() - t0
    except (PermanentError, TransientError) as exc:
        result.rto_seconds = clock() - t0
        result.failures.append(redact(f"restore failed: {exc}"))
    finally:
        result.cleanup_left = cleanup_drill(kube, list(mapping.values()))
        kube.request("DELETE", restore_url)
    result.failures.extend(evaluate(result))
    result.passed = not result.failures
    return result


@task(
    name="velero_restore_drill",
    retries=1,
    retry_delay_seconds=30,
    retry_condition_fn=retry_condition,
    cache_policy=NO_CACHE,
)
def velero_drill_task(
    config: DrillConfig, cluster: KubernetesCluster, velero: VeleroConfig
) -> DrillResult:
    """Drill a Velero backup (see :func:`run_velero_drill`)."""
    kube = KubeApi(cluster.get_api_client())
    return run_velero_drill(
        kube,
        velero,
        backup=config.backup,
        drill_id=config.drill_id,
        rto_target_seconds=config.rto_target_seconds,
        ready_timeout=config.ready_timeout_seconds,
        workers=config.workers,
    )
