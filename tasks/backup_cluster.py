"""Back up selected namespaces of a cluster to S3: one object per resource + a manifest.

Three layers, as every step: :class:`BackupConfig` (validated input), the export and
upload core :func:`run_backup` (which takes its two ports, :class:`KubeApi` and
:class:`S3Store`, ready-made so tests drive it against the simulator and a real S3
server), and the thin :func:`backup_cluster` / :func:`apply_retention` tasks that build
those ports from blocks.

The adapters here translate library errors once: S3 and Kubernetes 5xx, throttling and
timeouts become :class:`~shipyard.core.errors.TransientError` (retried by botocore's
standard mode first, then by the task's ``retry_condition``); a missing bucket or an
unknown namespace is a :class:`~shipyard.core.errors.ConfigError`.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

from prefect import task
from prefect.cache_policies import NONE as NO_CACHE
from pydantic import BaseModel, ConfigDict, Field, field_validator

from blocks.cluster import KubernetesCluster
from blocks.storage import BackupStorage
from shipyard.core.errors import (
    ConfigError,
    PermanentError,
    TransientError,
    classify_http_status,
    is_transient,
    retry_condition,
)
from shipyard.core.redact import register_secret
from tasks.backup_manifest import (
    MANIFEST_NAME,
    BackupEntry,
    BackupManifest,
    backup_root,
    build_manifest,
    encode_object,
    entry_for,
    expired_backups,
    new_backup_id,
    object_key,
    parse_backup_time,
    sha256_b64,
)
from tasks.normalize import ResourceKind, normalize, skip_reason

__all__ = [
    "BackupConfig",
    "BackupResult",
    "KubeApi",
    "KubeConflict",
    "RetentionResult",
    "S3Store",
    "VeleroConfig",
    "VeleroOutcome",
    "apply_retention",
    "backup_cluster",
    "backup_with_velero",
    "export_objects",
    "run_backup",
    "run_retention",
]

log = logging.getLogger(__name__)
JSON = dict[str, Any]
T = TypeVar("T")
R = TypeVar("R")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DEFAULT_WORKERS = 8


# --- configuration --------------------------------------------------------------------


class BackupConfig(BaseModel):
    """What to back up and how long to keep it."""

    model_config = ConfigDict(extra="forbid")

    namespaces: list[str] = Field(description="Namespaces to export (at least one).")
    cluster: str = Field("default", description="Cluster name: the key segment after the prefix.")
    gitops_revision: str | None = Field(
        None, description="GitOps commit deployed when the backup was taken (recorded only)."
    )
    keep_last: int | None = Field(
        None, ge=1, description="Retention: keep at least the N newest backups."
    )
    max_age_days: float | None = Field(
        None, gt=0, description="Retention: delete backups older than this (and beyond keep_last)."
    )
    sse: Literal["AES256", "aws:kms"] = Field(
        "AES256", description="Server-side encryption requested for every object."
    )
    kms_key_id: str | None = Field(None, description="KMS key id when sse is aws:kms.")
    include_crds: bool = Field(
        True, description="Also export the CRDs of custom resources found in the namespaces."
    )
    workers: int = Field(DEFAULT_WORKERS, ge=1, le=64, description="Parallel API/S3 calls.")

    @field_validator("namespaces")
    @classmethod
    def _valid_namespaces(cls, value: list[str]) -> list[str]:
        names = sorted({n.strip() for n in value if n.strip()})
        if not names:
            raise ValueError("give at least one namespace")
        bad = [n for n in names if not _DNS_LABEL.match(n) or len(n) > 63]
        if bad:
            raise ValueError(f"not valid namespace names: {', '.join(bad)}")
        return names

    @field_validator("cluster")
    @classmethod
    def _valid_cluster(cls, value: str) -> str:
        if not value or "/" in value:
            raise ValueError("cluster name must be non-empty and contain no '/'")
        return value


def parse_config(model: type[BaseModel], data: dict[str, Any]) -> Any:
    """Validate ``data`` into ``model``; invalid input is a ConfigError (exit 2, no retry)."""
    from pydantic import ValidationError

    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise ConfigError(f"invalid {model.__name__}: {where}: {first.get('msg')}") from None


class BackupResult(BaseModel):
    """What a backup run wrote."""

    backup_id: str = Field(description="The new backup's id.")
    cluster: str = Field(description="Cluster name.")
    objects: int = Field(description="Objects written.")
    bytes: int = Field(description="Bytes written (objects only).")
    manifest_key: str = Field(description="S3 key of the manifest.")
    counts: dict[str, int] = Field(default_factory=dict, description="Objects per kind.")
    seconds: float = Field(0.0, description="Wall time of export + upload.")


class RetentionResult(BaseModel):
    """Backups deleted by the retention policy."""

    deleted: list[str] = Field(default_factory=list, description="Backup ids removed.")
    kept: int = Field(0, description="Complete backups left.")


# --- helpers --------------------------------------------------------------------------


def parallel_map(fn: Callable[[T], R], items: Sequence[T], workers: int) -> list[R]:
    """``[fn(x) for x in items]`` on a thread pool; the first exception propagates."""
    if len(items) <= 1 or workers <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        return list(pool.map(fn, items))


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


# --- S3 port --------------------------------------------------------------------------


class S3Store:
    """The bucket backups live in, through a boto3 client (errors translated here)."""

    def __init__(self, client: Any, bucket: str) -> None:
        self.client = client
        self.bucket = bucket

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - translated into the error split below
            raise self._translate(what, exc) from None

    def _translate(self, what: str, exc: Exception) -> Exception:
        code = ""
        response = getattr(exc, "response", None)
        if isinstance(response, dict):
            code = str(response.get("Error", {}).get("Code", ""))
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        else:
            status = None
        if code in ("NoSuchBucket",):
            return ConfigError(f"bucket {self.bucket!r} does not exist")
        if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"):
            return PermanentError(f"S3 refused {what} in {self.bucket!r}: {code}")
        if is_transient(exc) or (isinstance(status, int) and status >= 500):
            return TransientError(f"S3 {what} failed: {type(exc).__name__}: {exc}")
        if isinstance(exc, PermanentError | TransientError):
            return exc
        return PermanentError(f"S3 {what} failed: {type(exc).__name__}: {exc}")

    def check_bucket(self) -> None:
        """Fail early and clearly when the bucket is missing or unreachable."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as exc:  # noqa: BLE001 - translated
            response = getattr(exc, "response", None)
            if isinstance(response, dict) and str(response.get("Error", {}).get("Code")) in (
                "404",
                "NoSuchBucket",
            ):
                raise ConfigError(f"bucket {self.bucket!r} does not exist") from None
            raise self._translate("head bucket", exc) from None

    def put(
        self, key: str, data: bytes, *, sse: str = "AES256", kms_key_id: str | None = None
    ) -> None:
        """Write ``data`` with SSE requested and a SHA-256 checksum, then verify it.

        S3 rejects a body whose checksum differs; servers that merely echo the checksum
        (moto) are covered by also comparing the ETag with the MD5 (single-part SSE-S3).
        """
        extra: dict[str, Any] = {"ServerSideEncryption": sse}
        if sse == "aws:kms" and kms_key_id:
            extra["SSEKMSKeyId"] = kms_key_id
        checksum = sha256_b64(data)

        def call() -> Any:
            return self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=data,
                ContentType="application/json",
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=checksum,
                **extra,
            )

        response = self._call(f"put {key}", call)
        echoed = response.get("ChecksumSHA256")
        if echoed is not None and echoed != checksum:
            raise TransientError(f"S3 stored {key} with a different checksum; retrying")
        etag = str(response.get("ETag", "")).strip('"')
        md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
        if sse != "aws:kms" and etag and "-" not in etag and etag != md5:
            raise TransientError(f"S3 ETag of {key} does not match its content; retrying")

    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None when it does not exist."""
        try:
            return bytes(self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read())
        except Exception as exc:  # noqa: BLE001 - translated
            response = getattr(exc, "response", None)
            if isinstance(response, dict) and str(response.get("Error", {}).get("Code")) in (
                "NoSuchKey",
                "404",
            ):
                return None
            raise self._translate(f"get {key}", exc) from None

    def list_prefixes(self, prefix: str) -> list[str]:
        """The "directories" directly under ``prefix`` (names only, no slashes)."""
        out: list[str] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "Delimiter": "/"}
            if token:
                kwargs["ContinuationToken"] = token
            page = self._call(
                f"list {prefix}", functools.partial(self.client.list_objects_v2, **kwargs)
            )
            for cp in page.get("CommonPrefixes", []):
                out.append(cp["Prefix"][len(prefix) :].strip("/"))
            if not page.get("IsTruncated"):
                return out
            token = page.get("NextContinuationToken")

    def list_keys(self, prefix: str) -> list[str]:
        """Every key under ``prefix``."""
        out: list[str] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
            if token:
                kwargs["ContinuationToken"] = token
            page = self._call(
                f"list {prefix}", functools.partial(self.client.list_objects_v2, **kwargs)
            )
            out.extend(o["Key"] for o in page.get("Contents", []))
            if not page.get("IsTruncated"):
                return out
            token = page.get("NextContinuationToken")

    def delete_keys(self, keys: Sequence[str]) -> int:
        """Delete ``keys`` in batches of 1,000; returns how many were deleted."""
        deleted = 0
        for batch in _chunks(list(keys), 1000):
            objects = [{"Key": k} for k in batch]
            response = self._call(
                "delete",
                functools.partial(
                    self.client.delete_objects,
                    Bucket=self.bucket,
                    Delete={"Objects": objects, "Quiet": True},
                ),
            )
            errors = response.get("Errors") or []
            if errors:
                raise TransientError(f"S3 could not delete {len(errors)} objects, e.g. {errors[0]}")
            deleted += len(batch)
        return deleted

    def exists(self, key: str) -> bool:
        """True when ``key`` exists."""
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
            return True
        except Exception as exc:  # noqa: BLE001 - translated
            response = getattr(exc, "response", None)
            if isinstance(response, dict) and str(response.get("Error", {}).get("Code")) in (
                "404",
                "NoSuchKey",
                "NotFound",
            ):
                return False
            raise self._translate(f"head {key}", exc) from None

    def complete_backups(
        self, prefix: str, cluster: str, workers: int = DEFAULT_WORKERS
    ) -> list[str]:
        """Ids of backups of ``cluster`` that have a manifest, oldest first."""
        root = backup_root(prefix, cluster)
        ids = [i for i in self.list_prefixes(root) if parse_backup_time(i) is not None]
        present = parallel_map(
            lambda i: self.exists(object_key(backup_root(prefix, cluster, i), MANIFEST_NAME)),
            ids,
            workers,
        )
        return sorted(i for i, ok in zip(ids, present, strict=True) if ok)

    def read_manifest(self, prefix: str, cluster: str, backup_id: str) -> BackupManifest:
        """The manifest of ``backup_id``; a missing one is a ConfigError (unknown id)."""
        key = object_key(backup_root(prefix, cluster, backup_id), MANIFEST_NAME)
        data = self.get(key)
        if data is None:
            raise ConfigError(f"no backup {backup_id!r} in s3://{self.bucket}/{key}")
        try:
            return BackupManifest.model_validate_json(data)
        except ValueError as exc:
            raise PermanentError(f"manifest {key} is corrupt: {exc}") from None


# --- Kubernetes port -------------------------------------------------------------------


class KubeApi:
    """Raw JSON access to a Kubernetes API through the official client's ApiClient.

    Raw paths rather than typed models: backup needs every kind, custom resources
    included, as plain JSON, and decoding into typed models would both lose unknown
    fields and cost time at thousands of objects.
    """

    def __init__(self, api_client: Any, *, attempts: int = 4, backoff: float = 0.2) -> None:
        self.api = api_client
        self.attempts = max(1, attempts)
        self.backoff = backoff

    def request(
        self,
        method: str,
        path: str,
        body: JSON | None = None,
        query: dict[str, str] | None = None,
        *,
        content_type: str = "application/json",
    ) -> JSON | None:
        """Send one request, retrying transient failures (5xx, 429, resets) briefly.

        Returns None on 404; other errors are translated to the error split.
        """
        for attempt in range(self.attempts):
            try:
                return self._request_once(method, path, body, query, content_type)
            except TransientError as exc:
                if attempt + 1 >= self.attempts:
                    raise
                delay = exc.retry_after or self.backoff * (2**attempt)
                time.sleep(min(delay, 5.0))
        raise AssertionError("unreachable")

    def _request_once(
        self,
        method: str,
        path: str,
        body: JSON | None,
        query: dict[str, str] | None,
        content_type: str,
    ) -> JSON | None:
        from kubernetes.client.exceptions import ApiException

        try:
            verb, url, headers, payload, _post = self.api.param_serialize(
                method,
                path,
                query_params=list((query or {}).items()),
                header_params={"Accept": "application/json", "Content-Type": content_type},
                body=body,
                auth_settings=["BearerToken"],
            )
            response = self.api.call_api(
                verb, url, header_params=headers, body=payload, _request_timeout=(5, 60)
            )
            data = response.read()
        except ApiException as exc:
            raise _kube_error(method, path, exc.status or 0, exc.reason, exc.body) from None
        except Exception as exc:
            if is_transient(exc):
                raise TransientError(f"Kubernetes {method} {path}: {type(exc).__name__}") from None
            raise
        if response.status == 404:
            return None
        if not 200 <= response.status < 300:
            raise _kube_error(method, path, response.status, response.reason, data)
        return json.loads(data) if data else {}

    def get(self, path: str) -> JSON | None:
        """GET ``path`` (None when 404)."""
        return self.request("GET", path)

    def version(self) -> str:
        """The server's gitVersion ("" if not reported)."""
        doc = self.get("/version") or {}
        return str(doc.get("gitVersion", ""))

    def discover(self, workers: int = DEFAULT_WORKERS) -> list[ResourceKind]:
        """Every listable resource the server serves, at each group's preferred version."""
        lists: list[tuple[str, str]] = [("", "v1")]
        groups = (self.get("/apis") or {}).get("groups") or []
        for g in groups:
            preferred = g.get("preferredVersion") or (g.get("versions") or [{}])[0]
            if preferred.get("version"):
                lists.append((g["name"], preferred["version"]))

        def fetch(gv: tuple[str, str]) -> list[ResourceKind]:
            group, version = gv
            path = f"/apis/{group}/{version}" if group else f"/api/{version}"
            doc = self.get(path) or {}
            return [
                ResourceKind(group, version, r["name"], r["kind"], bool(r.get("namespaced")))
                for r in doc.get("resources") or []
                if "/" not in r["name"] and "list" in (r.get("verbs") or [])
            ]

        kinds: list[ResourceKind] = []
        for found in parallel_map(fetch, lists, workers):
            kinds.extend(found)
        return kinds

    def list(self, kind: ResourceKind, namespace: str | None = None) -> list[JSON]:
        """All objects of ``kind`` (in ``namespace``), paging, with apiVersion/kind set."""
        items: list[JSON] = []
        query = {"limit": "500"}
        while True:
            doc = self.request("GET", kind.collection_path(namespace), query=query)
            if doc is None:
                return items
            for item in doc.get("items") or []:
                item.setdefault("apiVersion", kind.api_version)
                item.setdefault("kind", kind.kind)
                items.append(item)
            token = (doc.get("metadata") or {}).get("continue")
            if not token:
                return items
            query = {"limit": "500", "continue": token}


def _kube_error(method: str, path: str, status: int, reason: Any, body: Any) -> Exception:
    message = reason
    try:
        message = json.loads(body).get("message", reason)
    except (TypeError, ValueError, AttributeError):
        pass
    cls: type[Exception] = classify_http_status(int(status or 0)) or PermanentError
    if status == 0:
        cls = TransientError
    if status == 409:
        cls = KubeConflict
    return cls(f"Kubernetes {method} {path}: {status} {message}")


class KubeConflict(PermanentError):
    """HTTP 409: the object already exists, or a write raced another one."""


# --- core -----------------------------------------------------------------------------

# Kinds handled outside the per-namespace listing.
_CLUSTER_CRD = ResourceKind(
    "apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False
)
_BUILTIN_GROUPS = frozenset(
    {
        "",
        "apps",
        "batch",
        "autoscaling",
        "policy",
        "rbac.authorization.k8s.io",
        "networking.k8s.io",
        "coordination.k8s.io",
        "storage.k8s.io",
        "apiextensions.k8s.io",
        "discovery.k8s.io",
        "events.k8s.io",
        "metrics.k8s.io",
        "authorization.k8s.io",
        "authentication.k8s.io",
        "certificates.k8s.io",
        "scheduling.k8s.io",
        "node.k8s.io",
        "admissionregistration.k8s.io",
        "apiregistration.k8s.io",
        "flowcontrol.apiserver.k8s.io",
        "resource.k8s.io",
    }
)


def register_secret_values(obj: JSON) -> None:
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


def export_objects(
    kube: KubeApi, namespaces: Sequence[str], *, include_crds: bool = True, workers: int = 8
) -> tuple[list[JSON], dict[str, int]]:
    """List and normalize everything in ``namespaces`` (plus their Namespace objects and
    the CRDs their custom resources need); returns (objects, skipped count per kind)."""
    kinds = discover_namespaced(kube, workers)
    ns_objects = parallel_map(
        lambda n: kube.get(f"/api/v1/namespaces/{n}"), list(namespaces), workers
    )
    missing = [n for n, o in zip(namespaces, ns_objects, strict=True) if o is None]
    if missing:
        raise ConfigError(f"namespaces not found: {', '.join(missing)}")
    jobs = [(k, n) for k in kinds for n in namespaces]
    listed = parallel_map(lambda job: kube.list(job[0], job[1]), jobs, workers)
    objects: list[JSON] = []
    skipped: Counter[str] = Counter()
    used_custom: set[tuple[str, str]] = set()
    for (kind, _ns), items in zip(jobs, listed, strict=True):
        for item in items:
            if skip_reason(item) is not None:
                skipped[kind.kind] += 1
                continue
            register_secret_values(item)
            objects.append(normalize(item))
            if kind.group not in _BUILTIN_GROUPS:
                used_custom.add((kind.group, kind.plural))
    for ns_obj in ns_objects:
        assert ns_obj is not None
        ns_obj.setdefault("apiVersion", "v1")
        ns_obj.setdefault("kind", "Namespace")
        objects.append(normalize(ns_obj))
    if include_crds and used_custom:
        for crd in kube.list(_CLUSTER_CRD):
            spec = crd.get("spec") or {}
            if (spec.get("group"), (spec.get("names") or {}).get("plural")) in used_custom:
                objects.append(normalize(crd))
    return objects, dict(skipped)


def discover_namespaced(kube: KubeApi, workers: int = DEFAULT_WORKERS) -> list[ResourceKind]:
    """Namespaced, listable kinds worth exporting (derived kinds filtered at discovery)."""
    from tasks.normalize import SKIPPED_KINDS

    seen: set[tuple[str, str]] = set()
    out: list[ResourceKind] = []
    for k in kube.discover(workers):
        if not k.namespaced or k.kind in SKIPPED_KINDS or (k.group, k.plural) in seen:
            continue
        if k.group in ("metrics.k8s.io", "events.k8s.io", "authorization.k8s.io"):
            continue
        seen.add((k.group, k.plural))
        out.append(k)
    return out


def run_backup(
    kube: KubeApi,
    store: S3Store,
    config: BackupConfig,
    *,
    prefix: str,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> BackupResult:
    """Export, upload every object (SSE, checksums verified), then write the manifest.

    The manifest goes last, so an interrupted backup is never mistaken for a
    complete one; its objects are removed by the next retention run.
    """
    started = now()
    store.check_bucket()
    backup_id = new_backup_id(started)
    root = backup_root(prefix, config.cluster, backup_id)
    version = kube.version()
    objects, skipped = export_objects(
        kube, config.namespaces, include_crds=config.include_crds, workers=config.workers
    )

    def upload(obj: JSON) -> BackupEntry:
        data = encode_object(obj)
        entry = entry_for(obj, data)
        store.put(object_key(root, entry.path), data, sse=config.sse, kms_key_id=config.kms_key_id)
        return entry

    entries = parallel_map(upload, objects, config.workers)
    manifest = build_manifest(
        backup_id=backup_id,
        cluster=config.cluster,
        created_at=started,
        entries=entries,
        namespaces=config.namespaces,
        cluster_version=version,
        gitops_revision=config.gitops_revision,
        skipped=skipped,
    )
    manifest_key = object_key(root, MANIFEST_NAME)
    store.put(
        manifest_key,
        manifest.model_dump_json(indent=1).encode(),
        sse=config.sse,
        kms_key_id=config.kms_key_id,
    )
    log.info(
        "backup %s: %d objects, %d bytes (%s)",
        backup_id,
        len(entries),
        manifest.total_bytes,
        ", ".join(f"{k}={v}" for k, v in manifest.counts.items()),
    )
    return BackupResult(
        backup_id=backup_id,
        cluster=config.cluster,
        objects=len(entries),
        bytes=manifest.total_bytes,
        manifest_key=manifest_key,
        counts=manifest.counts,
        seconds=(now() - started).total_seconds(),
    )


def run_retention(
    store: S3Store,
    *,
    prefix: str,
    cluster: str,
    keep_last: int | None,
    max_age: timedelta | None,
    now: datetime,
    workers: int = DEFAULT_WORKERS,
) -> RetentionResult:
    """Delete backups the policy expires (all their objects, manifest first)."""
    ids = store.complete_backups(prefix, cluster, workers)
    doomed = expired_backups(ids, now, keep_last=keep_last, max_age=max_age)
    for backup_id in doomed:
        root = backup_root(prefix, cluster, backup_id)
        manifest = object_key(root, MANIFEST_NAME)
        store.delete_keys([manifest])  # incomplete first: never half-visible as complete
        store.delete_keys(store.list_keys(root))
    return RetentionResult(deleted=doomed, kept=len(ids) - len(doomed))


# --- tasks ----------------------------------------------------------------------------


@task(
    name="backup_cluster",
    retries=2,
    retry_delay_seconds=[5, 20],
    retry_condition_fn=retry_condition,
    cache_policy=NO_CACHE,
)
def backup_cluster(
    config: BackupConfig, cluster: KubernetesCluster, storage: BackupStorage
) -> BackupResult:
    """Back up ``config.namespaces`` of ``cluster`` into ``storage``."""
    kube = KubeApi(cluster.get_api_client())
    store = S3Store(storage.get_s3_client(), storage.bucket)
    return run_backup(kube, store, config, prefix=storage.prefix)


@task(
    name="apply_retention",
    retries=2,
    retry_delay_seconds=[5, 20],
    retry_condition_fn=retry_condition,
    cache_policy=NO_CACHE,
)
def apply_retention(config: BackupConfig, storage: BackupStorage) -> RetentionResult:
    """Delete backups of ``config.cluster`` beyond keep_last / older than max_age_days."""
    if config.keep_last is None and config.max_age_days is None:
        return RetentionResult()
    store = S3Store(storage.get_s3_client(), storage.bucket)
    max_age = timedelta(days=config.max_age_days) if config.max_age_days else None
    return run_retention(
        store,
        prefix=storage.prefix,
        cluster=config.cluster,
        keep_last=config.keep_last,
        max_age=max_age,
        now=datetime.now(UTC),
        workers=config.workers,
    )


# --- Velero driver --------------------------------------------------------------------
#
# For clusters that already run Velero: Shipyard creates velero.io/v1 Backup and Restore
# objects and waits for their phases instead of exporting objects itself.

VELERO_API = "/apis/velero.io/v1"
VELERO_DONE = frozenset({"Completed", "PartiallyFailed", "Failed", "FailedValidation"})


class VeleroConfig(BaseModel):
    """Where Velero runs and how long to wait for it."""

    model_config = ConfigDict(extra="forbid")

    namespace: str = Field("velero", description="Namespace of the Velero server.")
    storage_location: str | None = Field(None, description="BackupStorageLocation name.")
    ttl: str = Field("720h0m0s", description="Backup TTL (Velero duration).")
    timeout_seconds: float = Field(1800.0, gt=0, description="How long to wait for a phase.")
    poll_seconds: float = Field(2.0, gt=0, description="Polling interval.")


class VeleroOutcome(BaseModel):
    """A Velero Backup or Restore that reached a final phase."""

    name: str = Field(description="Object name.")
    phase: str = Field(description="Final phase.")
    ok: bool = Field(description="Phase is Completed.")
    errors: int = Field(0, description="status.errors.")
    warnings: int = Field(0, description="status.warnings.")
    seconds: float = Field(0.0, description="Time until the final phase.")


def velero_backup_object(name: str, namespaces: Sequence[str], config: VeleroConfig) -> JSON:
    """The velero.io/v1 Backup requesting ``namespaces`` (pure)."""
    spec: JSON = {"includedNamespaces": list(namespaces), "ttl": config.ttl}
    if config.storage_location:
        spec["storageLocation"] = config.storage_location
    return {
        "apiVersion": "velero.io/v1",
        "kind": "Backup",
        "metadata": {
            "name": name,
            "namespace": config.namespace,
            "labels": {"app.kubernetes.io/managed-by": "shipyard"},
        },
        "spec": spec,
    }


def velero_restore_object(
    name: str,
    backup_name: str,
    mapping: dict[str, str],
    config: VeleroConfig,
    *,
    existing: str = "none",
) -> JSON:
    """The velero.io/v1 Restore of ``backup_name`` into mapped namespaces (pure)."""
    return {
        "apiVersion": "velero.io/v1",
        "kind": "Restore",
        "metadata": {
            "name": name,
            "namespace": config.namespace,
            "labels": {"app.kubernetes.io/managed-by": "shipyard"},
        },
        "spec": {
            "backupName": backup_name,
            "includedNamespaces": sorted(mapping),
            "namespaceMapping": dict(mapping),
            "existingResourcePolicy": existing,
        },
    }


def outcome_of(obj: JSON, seconds: float) -> VeleroOutcome | None:
    """The final outcome of a Backup/Restore object, or None while it is still running."""
    status = obj.get("status") or {}
    phase = str(status.get("phase") or "New")
    if phase not in VELERO_DONE:
        return None
    return VeleroOutcome(
        name=str((obj.get("metadata") or {}).get("name")),
        phase=phase,
        ok=phase == "Completed",
        errors=int(status.get("errors") or 0),
        warnings=int(status.get("warnings") or 0),
        seconds=seconds,
    )


def run_velero(
    kube: KubeApi, obj: JSON, config: VeleroConfig, *, clock: Callable[[], float] = time.monotonic
) -> VeleroOutcome:
    """Create a Velero Backup/Restore and wait for its final phase.

    "Still running" is a state inside the deadline, not a failure; running past the
    deadline is a TransientError (the next attempt finds the same object).
    """
    plural = {"Backup": "backups", "Restore": "restores"}[str(obj["kind"])]
    collection = f"{VELERO_API}/namespaces/{config.namespace}/{plural}"
    if kube.get(VELERO_API) is None:
        raise ConfigError("Velero is not installed (no velero.io/v1 API on the cluster)")
    url = f"{collection}/{obj['metadata']['name']}"
    if kube.get(url) is None:
        kube.request("POST", collection, obj)
    start = clock()
    while True:
        current = kube.get(url)
        if current is None:
            raise PermanentError(f"Velero {obj['kind']} {url} disappeared")
        done = outcome_of(current, clock() - start)
        if done is not None:
            return done
        if clock() - start > config.timeout_seconds:
            raise TransientError(
                f"Velero {obj['kind']} {obj['metadata']['name']} still "
                f"{(current.get('status') or {}).get('phase', 'New')} after "
                f"{config.timeout_seconds:.0f}s"
            )
        time.sleep(config.poll_seconds)


@task(
    name="backup_with_velero",
    retries=1,
    retry_delay_seconds=30,
    retry_condition_fn=retry_condition,
    cache_policy=NO_CACHE,
)
def backup_with_velero(
    config: BackupConfig, cluster: KubernetesCluster, velero: VeleroConfig
) -> VeleroOutcome:
    """Create a velero.io Backup of ``config.namespaces`` and wait for its final phase."""
    kube = KubeApi(cluster.get_api_client())
    name = f"shipyard-{new_backup_id(datetime.now(UTC)).lower()}"
    outcome = run_velero(kube, velero_backup_object(name, config.namespaces, velero), velero)
    if not outcome.ok:
        raise PermanentError(
            f"Velero backup {name} ended {outcome.phase} ({outcome.errors} errors)",
            hint=f"velero backup logs {name}",
        )
    return outcome
