"""Shipyard's one S3 store: a bucket through a boto3 client, errors translated once.

Backups write into it and restore drills read from it; the layout of a backup (roots,
manifests, drill history) is the DR steps' business, not this module's. The store
translates botocore errors into the error split: a missing bucket is a
:class:`ConfigError`, access refused is permanent, 5xx, throttling and timeouts are
transient (botocore's standard retry mode has already retried them by then).
"""

from __future__ import annotations

import base64
import functools
import hashlib
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from shipyard.core.errors import ConfigError, PermanentError, TransientError, is_transient
from shipyard.core.parallel import chunks

__all__ = ["S3Store", "s3_client", "sha256_b64"]

T = TypeVar("T")


def s3_client(
    endpoint_url: str | None = None, region: str | None = None, session: Any = None
) -> Any:
    """boto3 S3 client with bounded timeouts; 5xx, throttling and timeouts retried by
    botocore's standard mode. ``session`` is a ``boto3.Session`` (default: boto3's usual
    credential chain: environment, profile, instance role)."""
    import boto3
    from botocore.config import Config

    cfg = Config(
        retries={"max_attempts": 5, "mode": "standard"},
        connect_timeout=5,
        read_timeout=30,
        s3={"addressing_style": "path"},
    )
    chosen = session if session is not None else boto3.session.Session()
    return chosen.client("s3", endpoint_url=endpoint_url, region_name=region, config=cfg)


def sha256_b64(data: bytes) -> str:
    """Base64 sha256 (S3 ``ChecksumSHA256`` form)."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def _error_code(exc: Exception) -> str | None:
    """The S3 error code of a botocore ClientError (None for other exceptions)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code"))
    return None


class S3Store:
    """One bucket, through a boto3 client (errors translated here)."""

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

    def _absent_or_raise(self, what: str, exc: Exception, absent: tuple[str, ...]) -> None:
        """Return when ``exc`` says the object is absent; raise it translated otherwise."""
        if _error_code(exc) in absent:
            return
        raise self._translate(what, exc) from None

    def check_bucket(self) -> None:
        """Fail early and clearly when the bucket is missing or unreachable."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as exc:  # noqa: BLE001 - translated
            if _error_code(exc) in ("404", "NoSuchBucket"):
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
            self._absent_or_raise(f"get {key}", exc, ("NoSuchKey", "404"))
            return None

    def exists(self, key: str) -> bool:
        """True when ``key`` exists."""
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
            return True
        except Exception as exc:  # noqa: BLE001 - translated
            self._absent_or_raise(f"head {key}", exc, ("404", "NoSuchKey", "NotFound"))
            return False

    def _list(self, prefix: str, **extra: Any) -> list[dict[str, Any]]:
        """Every page of ``list_objects_v2`` under ``prefix``."""
        pages: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, **extra}
            if token:
                kwargs["ContinuationToken"] = token
            page = self._call(
                f"list {prefix}", functools.partial(self.client.list_objects_v2, **kwargs)
            )
            pages.append(page)
            if not page.get("IsTruncated"):
                return pages
            token = page.get("NextContinuationToken")

    def list_prefixes(self, prefix: str) -> list[str]:
        """The "directories" directly under ``prefix`` (names only, no slashes)."""
        return [
            cp["Prefix"][len(prefix) :].strip("/")
            for page in self._list(prefix, Delimiter="/")
            for cp in page.get("CommonPrefixes", [])
        ]

    def list_keys(self, prefix: str) -> list[str]:
        """Every key under ``prefix``."""
        return [o["Key"] for page in self._list(prefix) for o in page.get("Contents", [])]

    def delete_keys(self, keys: Sequence[str]) -> int:
        """Delete ``keys`` in batches of 1,000; returns how many were deleted."""
        deleted = 0
        for batch in chunks(list(keys), 1000):
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
