"""The S3 port against the stack's real moto S3 server (and a 503-injecting proxy).

moto cannot inject server errors, so a tiny loopback proxy (``faulty_s3``) answers the
first N requests with ``503 SlowDown`` (an S3 error document) and forwards the rest
unchanged; tests count what the client had to retry.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest

from shipyard.core.errors import ConfigError, PermanentError, TransientError
from shipyard.core.s3 import S3Store, s3_client
from tasks.backup_manifest import (
    MANIFEST_NAME,
    backup_key,
    backup_root,
    build_manifest,
    complete_backups,
    new_backup_id,
    read_manifest,
)
from tasks.backup_retention import run_retention
from tests.fixtures.services import Stack

_SLOWDOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)


class FaultyProxy:
    """State shared by the handler threads."""

    def __init__(self, upstream: str, fail_first: int) -> None:
        parts = urlsplit(upstream)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.fail_first = fail_first
        self.failed = 0
        self.forwarded = 0
        self.lock = threading.Lock()
        self.url = ""

    def should_fail(self) -> bool:
        with self.lock:
            if self.failed < self.fail_first:
                self.failed += 1
                return True
            self.forwarded += 1
            return False


def _handler(proxy: FaultyProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _handle(self) -> None:
            body = self._body()
            if proxy.should_fail():
                self.send_response(503)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(_SLOWDOWN)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(_SLOWDOWN)
                return
            conn = http.client.HTTPConnection(proxy.host, proxy.port, timeout=30)
            headers = {k: v for k, v in self.headers.items() if k.lower() != "transfer-encoding"}
            headers["Content-Length"] = str(len(body))
            conn.request(self.command, self.path, body=body, headers=headers)
            upstream = conn.getresponse()
            data = upstream.read()
            self.send_response(upstream.status, upstream.reason)
            for key, value in upstream.getheaders():
                if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            conn.close()

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

    return Handler


@contextmanager
def faulty_s3(upstream: str, fail_first: int) -> Iterator[FaultyProxy]:
    """Run the proxy on a free loopback port for the duration of the block."""
    proxy = FaultyProxy(upstream, fail_first)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(proxy))
    proxy.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()


AWS_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")


@pytest.fixture
def s3_env(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Stack:
    """Credentials of the stack's moto server in the environment (boto3's usual chain)."""
    for key in AWS_ENV:
        monkeypatch.setenv(key, stack.env[key])
    return stack


@pytest.fixture
def bucket(s3_env: Stack) -> Iterator[str]:
    """A fresh bucket per test."""
    name = f"dr-{uuid.uuid4().hex[:12]}"
    client = s3_client(s3_env.s3_endpoint)
    client.create_bucket(Bucket=name)
    yield name


@pytest.fixture
def store(s3_env: Stack, bucket: str) -> S3Store:
    return S3Store(s3_client(s3_env.s3_endpoint), bucket)


def test_put_requests_sse_and_verifies_checksum(store: S3Store) -> None:
    store.put("p/a.json", b'{"a":1}')
    head = store.client.head_object(Bucket=store.bucket, Key="p/a.json", ChecksumMode="ENABLED")
    assert head["ServerSideEncryption"] == "AES256"
    assert head["ChecksumSHA256"]
    assert store.get("p/a.json") == b'{"a":1}'
    assert store.get("p/missing.json") is None
    assert store.exists("p/a.json") and not store.exists("p/b.json")


def test_missing_bucket_is_a_config_error(s3_env: Stack) -> None:
    store = S3Store(s3_client(s3_env.s3_endpoint), f"nope-{uuid.uuid4().hex[:8]}")
    with pytest.raises(ConfigError, match="does not exist"):
        store.check_bucket()
    with pytest.raises(ConfigError, match="does not exist"):
        store.put("k", b"x")


def test_server_errors_are_retried(s3_env: Stack, bucket: str) -> None:
    with faulty_s3(s3_env.s3_endpoint, fail_first=3) as proxy:
        store = S3Store(s3_client(proxy.url), bucket)
        store.put("r/a.json", b"{}")
        assert store.get("r/a.json") == b"{}"
    assert proxy.failed == 3
    assert proxy.forwarded >= 2


@pytest.mark.slow  # botocore backs off between its attempts (about 20 s)
def test_persistent_server_errors_become_transient(s3_env: Stack, bucket: str) -> None:
    with faulty_s3(s3_env.s3_endpoint, fail_first=1000) as proxy:
        store = S3Store(s3_client(proxy.url), bucket)
        with pytest.raises(TransientError):
            store.put("r/a.json", b"{}")
    assert proxy.failed >= 5  # botocore standard mode retried before giving up


def test_access_denied_is_permanent(s3_env: Stack, bucket: str, monkeypatch: Any) -> None:
    # moto accepts any key; a malformed bucket name is the nearest permanent 4xx it has
    store = S3Store(s3_client(s3_env.s3_endpoint), "Invalid_Bucket_Name")
    with pytest.raises(PermanentError):
        store.put("k", b"x")


def _fake_backup(store: S3Store, prefix: str, created: datetime, complete: bool = True) -> str:
    backup_id = new_backup_id(created, random.Random(created.timestamp()))
    root = backup_root(prefix, "prod", backup_id)
    store.put(backup_key(root, "objects/ns/core/ConfigMap/a.json"), b"{}")
    if complete:
        manifest = build_manifest(
            backup_id=backup_id, cluster="prod", created_at=created, entries=[], namespaces=["ns"]
        )
        store.put(backup_key(root, MANIFEST_NAME), manifest.model_dump_json().encode())
    return backup_id


def test_listing_ignores_incomplete_backups_and_retention_deletes(store: S3Store) -> None:
    now = datetime.now(UTC)
    ids = [_fake_backup(store, "bk", now - timedelta(days=d)) for d in (30, 20, 2, 1)]
    partial = _fake_backup(store, "bk", now - timedelta(days=40), complete=False)
    assert complete_backups(store, "bk", "prod") == sorted(ids)
    result = run_retention(
        store, prefix="bk", cluster="prod", keep_last=2, max_age=timedelta(days=7), now=now
    )
    assert result.deleted == sorted(ids[:2])
    assert result.kept == 2
    assert complete_backups(store, "bk", "prod") == sorted(ids[2:])
    for gone in ids[:2]:
        assert store.list_keys(backup_root("bk", "prod", gone)) == []
    # incomplete backups are not "complete", never chosen, and left to the operator
    assert store.list_keys(backup_root("bk", "prod", partial))


def test_read_manifest_unknown_id(store: S3Store) -> None:
    with pytest.raises(ConfigError, match="no backup"):
        read_manifest(store, "bk", "prod", "20200101T000000Z-000000")
    store.put("bk/prod/20200101T000000Z-000001/manifest.json", b"not json")
    with pytest.raises(PermanentError, match="corrupt"):
        read_manifest(store, "bk", "prod", "20200101T000000Z-000001")
    assert json.loads(b"{}") == {}
