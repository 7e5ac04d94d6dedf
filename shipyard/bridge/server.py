"""The bridge's HTTP app: authenticate, parse, dedupe, spool, answer.

Contract: ``POST /hooks/{source}`` answers 202 with the accepted events, 200 with
``{"events": []}`` for notifications that carry no push or repeat one already accepted,
401 without valid credentials, 400 for a body that is not JSON or not the source's
shape, 413 over 1 MiB, 404 for an unknown source, 503 when the spool cannot be
written. A 202 means the events are fsynced to the spool; a background forwarder
delivers them to Prefect, so a Prefect outage never turns into a registry retry storm.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import uvicorn
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shipyard.bridge import alertmanager, distribution, dockerhub, ecr, ghcr, harbor
from shipyard.bridge.alertmanager import FiredAlert
from shipyard.bridge.auth import authenticate
from shipyard.bridge.dedupe import RecentSet
from shipyard.bridge.emit import Forwarder, PrefectEvents, prefect_event, utcnow
from shipyard.bridge.metrics import Metrics
from shipyard.bridge.model import ImagePushed, PayloadError
from shipyard.bridge.spool import Spool
from shipyard.core.catalog import Catalog
from shipyard.core.redact import register_secret

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024
# Registry sources give image pushes; Alertmanager gives alerts (shipyard.bridge.alertmanager).
Parser = Callable[[object, Mapping[str, str]], Sequence[ImagePushed | FiredAlert]]
PARSERS: dict[str, Parser] = {
    "distribution": distribution.parse,
    "harbor": harbor.parse,
    "dockerhub": dockerhub.parse,
    "ghcr": ghcr.parse,
    "ecr": ecr.parse,
    alertmanager.SOURCE: alertmanager.parse,
}


class BridgeConfig(BaseModel):
    """How one bridge process runs."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    secret: SecretStr | None = Field(
        None, description="Shared webhook secret; None only with insecure_no_auth."
    )
    insecure_no_auth: bool = Field(False, description="Accept unauthenticated webhooks.")
    spool_dir: Path | None = Field(None, description="Spool directory; required unless dry_run.")
    prefect_api_url: str | None = Field(
        None, description="Prefect API base URL (…/api); None leaves events in the spool."
    )
    prefect_api_key: SecretStr | None = Field(None, description="Prefect Cloud API key.")
    prefect_auth_string: SecretStr | None = Field(
        None, description="user:password for a Prefect server with basic auth."
    )
    catalog: Catalog | None = Field(None, description="App catalog for the `app` field.")
    dry_run: bool = Field(False, description="Answer as usual but spool and emit nothing.")
    dedupe_capacity: int = Field(100_000, ge=1, description="Recent deliveries remembered.")
    dedupe_ttl: float = Field(3600.0, gt=0, description="Seconds a delivery is remembered.")
    digest_window: float = Field(
        600.0,
        ge=0,
        description="Seconds in which further tags of an already emitted digest of the same "
        "repository are dropped (one push under two tags is one change); 0 turns it off.",
    )
    max_body: int = Field(MAX_BODY, ge=1, description="Largest accepted body in bytes.")


@dataclass
class BridgeState:
    """Everything a running app shares between requests."""

    config: BridgeConfig
    metrics: Metrics = field(default_factory=Metrics)
    recent: RecentSet = field(default_factory=RecentSet)
    digests: RecentSet = field(default_factory=RecentSet)
    spool: Spool | None = None
    forwarder: Forwarder | None = None
    committer: GroupCommitter | None = None

    @property
    def secret(self) -> bytes | None:
        if self.config.insecure_no_auth or self.config.secret is None:
            return None
        return self.config.secret.get_secret_value().encode()

    def app_for(self, pushed: ImagePushed) -> str:
        """The catalog app delivering this repository, or "" (no catalog or no match)."""
        catalog = self.config.catalog
        if catalog is None:
            return ""
        app = catalog.app_for_image(
            f"{pushed.registry}/{pushed.repository}"
        ) or catalog.app_for_image(pushed.repository)
        return app.name if app else ""

    def event_for(self, item: ImagePushed | FiredAlert, at: datetime) -> dict[str, Any]:
        """The Prefect event of one accepted push or alert."""
        if isinstance(item, FiredAlert):
            target = alertmanager.resolve_target(item.labels, self.config.catalog)
            return alertmanager.prefect_event(item, at, target)
        return prefect_event(item, self.app_for(item), at)


class GroupCommitter:
    """Batch concurrent spool appends into one write and one fsync (group commit).

    At hundreds of webhooks a second one fsync per request would be the bottleneck;
    requests arriving while a write is in flight wait together for the next one.
    """

    def __init__(self, spool: Spool, on_written: Callable[[], None]) -> None:
        self.spool = spool
        self._on_written = on_written
        self._pending: list[tuple[list[dict[str, Any]], asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None

    async def append(self, records: list[dict[str, Any]]) -> None:
        """Return once ``records`` are durable; raise OSError if the disk refused."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((records, future))
        if self._task is None:
            self._task = asyncio.create_task(self._drain())
        await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                group, self._pending = self._pending, []
                records = [r for recs, _ in group for r in recs]
                try:
                    await asyncio.to_thread(self.spool.append, records)
                except OSError as exc:
                    for _, fut in group:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                self._on_written()
                for _, fut in group:
                    if not fut.done():
                        fut.set_result(None)
        finally:
            self._task = None


def _is_new(state: BridgeState, pushed: ImagePushed | FiredAlert) -> bool:
    """False for a redelivery, and for another tag of a digest emitted within the window.

    The second check makes one push under two tags one delivery: the first tag's event
    goes out, the others are counted as deduplicated. A digest-less notification (Docker
    Hub) is judged by its delivery identity only, as is an alert.
    """
    if isinstance(pushed, FiredAlert):
        return state.recent.add(pushed.dedupe_key)
    if not state.recent.add(pushed.dedupe_key):
        return False
    if not pushed.digest_key or state.config.digest_window <= 0:
        return True
    if state.digests.add(pushed.digest_key):
        return True
    log.info("bridge: %s already emitted under another tag; dropped", pushed.image)
    return False


def _json(status: int, body: object) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _reject(state: BridgeState, status: int, reason: str, message: str) -> Response:
    state.metrics.rejected[reason] += 1
    return _json(status, {"error": message})


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it is known to exceed ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def build_app(config: BridgeConfig) -> Starlette:
    """The ASGI app; the spool and forwarder live as long as the app's lifespan."""
    if not config.dry_run and config.spool_dir is None:
        raise ValueError("spool_dir is required unless dry_run")
    if config.secret is not None:
        register_secret(config.secret)
    state = BridgeState(
        config=config,
        recent=RecentSet(config.dedupe_capacity, config.dedupe_ttl),
        digests=RecentSet(config.dedupe_capacity, config.digest_window or 1.0),
    )

    async def hook(request: Request) -> Response:
        source = request.path_params["source"]
        parse = PARSERS.get(source)
        if parse is None:
            known = ", ".join(PARSERS)
            return _reject(state, 404, "unknown_source", f"unknown source {source!r} ({known})")
        state.metrics.received[source] += 1
        body = await _read_body(request, config.max_body)
        if body is None:
            return _reject(state, 413, "too_large", f"body exceeds {config.max_body} bytes")
        secret = state.secret
        if secret is not None and not authenticate(
            source, request.headers, request.query_params, body, secret
        ):
            return _reject(state, 401, "unauthorized", _auth_hint(source))
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return _reject(state, 400, "malformed", f"body is not valid JSON: {exc}")
        try:
            pushed = parse(doc, request.headers)
        except PayloadError as exc:
            return _reject(state, 400, "malformed", exc.message)
        if not pushed:
            state.metrics.ignored[source] += 1
            return _json(200, {"events": []})
        fresh = [p for p in pushed if _is_new(state, p)]
        state.metrics.deduplicated[source] += len(pushed) - len(fresh)
        if not fresh:
            return _json(200, {"events": []})
        # Distinct `occurred` per event (a microsecond apart) keeps their order and keeps
        # Prefect's trigger buckets from seeing two pushes as one instant.
        received_at = utcnow()
        records = [
            state.event_for(p, received_at + timedelta(microseconds=i)) for i, p in enumerate(fresh)
        ]
        if state.committer is not None:
            try:
                await state.committer.append(records)
            except OSError as exc:
                for p in fresh:
                    state.recent.discard(p.dedupe_key)
                    state.digests.discard(p.digest_key)
                log.error("bridge: cannot write the spool: %s", exc)
                return _reject(state, 503, "spool_error", f"cannot spool events: {exc}")
            state.metrics.spooled[source] += len(records)
        answer = [{**r["payload"], "event_id": r["id"]} for r in records]
        return _json(202, {"events": answer})

    async def healthz(request: Request) -> Response:
        forwarder = state.forwarder
        return _json(
            200,
            {
                "status": "ok",
                "dry_run": config.dry_run,
                "spool_depth": state.spool.depth if state.spool else 0,
                "prefect": "disabled"
                if forwarder is None
                else ("ok" if forwarder.healthy else forwarder.last_error),
            },
        )

    async def metrics(request: Request) -> Response:
        text = state.metrics.render(
            state.spool.depth if state.spool else 0,
            lambda: state.forwarder is not None and state.forwarder.healthy,
        )
        return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        start(state)
        try:
            yield
        finally:
            stop(state)

    app = Starlette(
        routes=[
            Route("/hooks/{source}", hook, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.bridge = state
    return app


def start(state: BridgeState) -> None:
    """Open the spool and start forwarding (nothing in dry-run mode)."""
    config = state.config
    if config.dry_run or config.spool_dir is None:
        return
    state.spool = Spool(config.spool_dir)
    forwarder: Forwarder | None = None
    if config.prefect_api_url:
        client = PrefectEvents(
            config.prefect_api_url,
            api_key=register_secret(config.prefect_api_key),
            auth_string=register_secret(config.prefect_auth_string),
        )
        forwarder = Forwarder(
            state.spool,
            client,
            on_emitted=state.metrics.add_emitted,
            on_dead=state.metrics.add_dead,
        )
        forwarder.start()
    state.forwarder = forwarder
    state.committer = GroupCommitter(state.spool, forwarder.wake if forwarder else (lambda: None))


def stop(state: BridgeState) -> None:
    """Stop forwarding and close the spool; undelivered events stay on disk."""
    if state.forwarder is not None:
        state.forwarder.stop()
        state.forwarder.client.close()
    if state.spool is not None:
        state.spool.close()


def _auth_hint(source: str) -> str:
    if source == "ghcr":
        return "missing or wrong X-Hub-Signature-256 (HMAC-SHA256 of the body)"
    if source == "dockerhub":
        return "missing or wrong ?token= in the webhook URL"
    return "missing or wrong Authorization header (the secret, or Bearer <secret>)"


def uvicorn_config(app: Starlette, host: str, port: int) -> uvicorn.Config:
    """uvicorn settings for the bridge: no access log (metrics count requests)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        access_log=False,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=5,
    )


def serve(config: BridgeConfig, host: str, port: int) -> None:
    """Run the bridge in the foreground until SIGINT/SIGTERM."""
    uvicorn.Server(uvicorn_config(build_app(config), host, port)).run()


class BackgroundBridge:
    """A bridge on a loopback port in a thread, for tests and the benchmark."""

    def __init__(self, config: BridgeConfig, host: str = "127.0.0.1") -> None:
        self.app = build_app(config)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, 0))
        self.host, self.port = self._sock.getsockname()[:2]
        self.server = uvicorn.Server(uvicorn_config(self.app, host, self.port))
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def state(self) -> BridgeState:
        state: BridgeState = self.app.state.bridge
        return state

    def __enter__(self) -> BackgroundBridge:
        self._thread.start()
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError("bridge server failed to start")
            self._thread.join(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self._thread.join(10)
        self._sock.close()
