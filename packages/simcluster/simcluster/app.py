"""The HTTP face of the simulator: an ASGI app speaking the Kubernetes REST API.

Routes ``/api`` and ``/apis`` paths to store operations, decodes bodies and patches,
streams watches and logs, applies injected faults, and turns every failure into a
``Status`` object. Anything unexpected is a Status 500 with a one-line message, never
a traceback.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import orjson
import yaml

from simcluster import (
    discovery,
    errors,
    hpaconvert,
    managed,
    openapi,
    patch,
    protobuf,
    shapes,
    streaming,
    tables,
)
from simcluster.clock import now_iso
from simcluster.config import SimConfig
from simcluster.errors import ApiError
from simcluster.faults import FaultInjector, FaultRule
from simcluster.logs import LogStore
from simcluster.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from simcluster.metrics import ClusterMetrics
from simcluster.resources import ResourceType
from simcluster.selectors import parse_field_selector, parse_label_selector, selector_to_string
from simcluster.store import Store, WatchEvent, clone
from simcluster.validation import fields as field_validation

JSON = dict[str, Any]
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger("simcluster")

TRUE = ("1", "true", "True")


@dataclass
class Request:
    """What a handler needs from one HTTP request."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def flag(self, name: str) -> bool:
        return self.query.get(name, "") in TRUE


@dataclass
class Response:
    """A complete response, or a streaming one when ``stream`` is set."""

    status: int = 200
    body: Any = None
    raw: bytes | None = None
    content_type: str = "application/json"
    stream: AsyncIterator[bytes] | None = None
    headers: dict[str, str] | None = None


@dataclass
class Target:
    """A parsed resource URL."""

    rt: ResourceType
    version: str
    namespace: str | None
    name: str | None
    sub: str
    watch_path: bool


class SimApp:
    """ASGI application over a :class:`Store` (see module docstring)."""

    def __init__(self, store: Store, config: SimConfig, faults: FaultInjector, logs: LogStore):
        self.store = store
        self.config = config
        self.faults = faults
        self.logs = logs
        self.server_address = "127.0.0.1:0"
        self.metrics = ClusterMetrics(store)

    # -- ASGI ------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        from urllib.parse import parse_qsl

        query = dict(
            parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        )
        headers = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])
        }
        req = Request(scope["method"], scope["path"], query, headers, body)
        try:
            fault = self._fault_for(req)
        except Exception:
            log.exception("fault injection failed on %s %s", req.method, req.path)
            fault = None
        if fault is not None:
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.kind == "drop":
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", b"4096"),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": b'{"kind":', "more_body": True})
                # Returning mid-body makes the server close the connection: the client
                # sees a truncated response, like a dropped connection.
                return
            if fault.kind in ("429", "500", "503"):
                await self._send(send, _fault_response(fault))
                return
        try:
            resp = await self.handle(req)
        except ApiError as exc:
            resp = Response(exc.code, exc.status(), headers=exc.headers)
        except Exception as exc:
            log.exception("internal error on %s %s", req.method, req.path)
            resp = Response(
                500,
                ApiError(
                    500, "InternalError", f"Internal error occurred: {type(exc).__name__}: {exc}"
                ).status(),
            )
        await self._send(send, resp, receive)

    async def _send(self, send: Send, resp: Response, receive: Receive | None = None) -> None:
        headers = [
            (b"content-type", resp.content_type.encode()),
            (b"cache-control", b"no-cache, private"),
        ]
        for k, v in (resp.headers or {}).items():
            headers.append((k.lower().encode(), v.encode()))
        if resp.stream is not None:
            await send({"type": "http.response.start", "status": resp.status, "headers": headers})
            stream = resp.stream

            async def pump() -> None:
                async for chunk in stream:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})

            async def disconnected() -> None:
                # The request body is consumed, so the next message is the disconnect:
                # without this, an abandoned watch would linger until its timeout.
                while receive is not None:
                    if (await receive())["type"] == "http.disconnect":
                        return
                await asyncio.Event().wait()

            tasks = [asyncio.create_task(pump()), asyncio.create_task(disconnected())]
            try:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError, OSError):
                        await task
                aclose = getattr(stream, "aclose", None)
                if aclose is not None:
                    await aclose()
            return
        payload = resp.raw if resp.raw is not None else orjson.dumps(resp.body)
        headers.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": resp.status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    def _fault_for(self, req: Request) -> FaultRule | None:
        if req.path.startswith("/_sim"):
            return None
        try:
            target = self._parse(req.path)
        except ApiError:
            return None
        if target is None:
            return None
        verb = _verb(req, target)
        resource = target.rt.plural + (f"/{target.sub}" if target.sub else "")
        return self.faults.pick(verb, resource, target.namespace or "")

    # -- routing ---------------------------------------------------------------------

    async def handle(self, req: Request) -> Response:
        parts = [p for p in req.path.split("/") if p]
        reg = self.store.registry
        if not parts:
            return Response(body=discovery.root_paths(reg))
        head = parts[0]
        if head == "version" and len(parts) == 1:
            return Response(body=discovery.version())
        if head in ("healthz", "livez", "readyz"):
            return Response(raw=b"ok", content_type="text/plain")
        if head == "metrics" and len(parts) == 1 and req.method == "GET":
            # Unauthenticated, like /version: what kube-state-metrics and Argo CD export.
            return Response(raw=self.metrics.render().encode(), content_type=METRICS_CONTENT_TYPE)
        if head == "_sim":
            return self._sim_control(req, parts[1:])
        if head == "openapi":
            return self._openapi(parts[1:], req)
        if head == "api" and len(parts) == 1:
            return Response(body=discovery.api_versions(self.server_address))
        if head == "api" and len(parts) == 2:
            doc = discovery.resource_list(reg, "", parts[1])
            if doc is None:
                raise errors.endpoint_not_found()
            return Response(body=doc)
        if head == "apis" and len(parts) == 1:
            return Response(body=discovery.api_group_list(reg))
        if head == "apis" and len(parts) == 2:
            doc = discovery.api_group(reg, parts[1])
            if doc is None:
                raise errors.endpoint_not_found()
            return Response(body=doc)
        if head == "apis" and len(parts) == 3:
            doc = discovery.resource_list(reg, parts[1], parts[2])
            if doc is None:
                raise errors.endpoint_not_found()
            return Response(body=doc)
        streaming.check(self.store, parts)
        target = self._parse(req.path)
        if target is None:
            raise errors.endpoint_not_found()
        return await self._dispatch(req, target)

    def _parse(self, path: str) -> Target | None:
        parts = [p for p in path.split("/") if p]
        if len(parts) >= 3 and parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        elif len(parts) >= 4 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        watch_path = False
        if rest and rest[0] == "watch":
            watch_path, rest = True, rest[1:]
        namespace = None
        if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in ("status", "finalize"):
            namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            return None
        rt = self.store.registry.lookup(group, version, rest[0])
        if rt is None:
            return None
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else ""
        if (
            sub
            and sub not in rt.subresources
            and not (rt.key == ("", "namespaces") and sub == "finalize")
        ):
            return None
        if namespace is not None and not rt.namespaced:
            return None
        if rt.namespaced and namespace is None and name is not None:
            return None
        return Target(rt, version, namespace, name, sub, watch_path)

    async def _dispatch(self, req: Request, t: Target) -> Response:
        m = req.method
        if t.name is None:
            if m == "GET":
                if req.flag("watch") or t.watch_path:
                    return self._watch(req, t)
                return self._list(req, t)
            if m == "POST":
                return self._create(req, t)
            if m == "DELETE":
                return self._delete_collection(req, t)
            raise errors.method_not_allowed()
        if t.watch_path and m == "GET":
            req.query["fieldSelector"] = f"metadata.name={t.name}"
            return self._watch(req, Target(t.rt, t.version, t.namespace, None, "", True))
        if t.sub == "log":
            if m != "GET":
                raise errors.method_not_allowed()
            return self._log(req, t)
        if t.sub == "scale":
            return self._scale(req, t)
        if m == "GET":
            obj = self._out(self.store.get(t.rt, t.namespace or "", t.name), t)
            if tables.wants_table(req.headers.get("accept", "")):
                meta = {"resourceVersion": obj["metadata"].get("resourceVersion", "")}
                return Response(body=tables.to_table(t.rt, [obj], meta))
            return Response(body=obj)
        if m == "PUT":
            return self._update(req, t)
        if m == "PATCH":
            return self._patch(req, t)
        if m == "DELETE":
            if t.sub:
                raise errors.method_not_allowed()
            return self._delete(req, t)
        raise errors.method_not_allowed()

    # -- helpers ---------------------------------------------------------------------

    def _out(self, obj: JSON, t: Target) -> JSON:
        """The object as served at ``t.version`` (custom resources share storage)."""
        api_version = t.rt.api_version(t.version)
        if t.rt.key == hpaconvert.KEY and t.version == "v1":
            return hpaconvert.to_v1(obj)
        if obj.get("apiVersion") != api_version:
            obj = {**obj, "apiVersion": api_version}
        return obj

    def _body(self, req: Request) -> Any:
        if not req.body:
            raise errors.bad_request("the body of the request was empty")
        ctype = req.headers.get("content-type", "application/json").split(";")[0].strip()
        if ctype == "application/vnd.kubernetes.protobuf":
            try:
                return protobuf.decode(req.body)
            except (protobuf.ProtobufError, UnicodeDecodeError) as exc:
                raise errors.ApiError(
                    415, "UnsupportedMediaType", f"{exc}; send JSON instead (simcluster)"
                ) from None
        if "protobuf" in ctype or "cbor" in ctype:
            raise errors.unsupported_media_type(ctype)
        try:
            if ctype.endswith("yaml"):
                return yaml.safe_load(req.body)
            return json.loads(req.body)
        except (ValueError, yaml.YAMLError) as exc:
            raise errors.bad_request(
                f"couldn't get version/kind; json parse error: {exc}"
            ) from None

    def _object_body(self, req: Request, t: Target) -> JSON:
        body = self._body(req)
        if not isinstance(body, dict):
            raise errors.bad_request("the body of the request must be a JSON object")
        kind = body.get("kind")
        if kind and kind != t.rt.kind and t.sub != "scale":
            raise errors.bad_request(
                f"the API version in the data ({body.get('apiVersion')}) does not match "
                "the expected "
                f"API version ({t.rt.api_version(t.version)}) or kind {kind} is not {t.rt.kind}"
            )
        meta = body.get("metadata")
        if meta is not None and not isinstance(meta, dict):
            raise errors.bad_request("metadata must be an object")
        return body

    def _manager(self, req: Request) -> str:
        return req.query.get("fieldManager") or managed.manager_from_user_agent(
            req.headers.get("user-agent", "")
        )

    def _dry_run(self, req: Request) -> bool:
        return req.query.get("dryRun") == "All"

    def _selectors(self, req: Request) -> tuple[Any, Any]:
        return (
            parse_label_selector(req.query.get("labelSelector")),
            parse_field_selector(req.query.get("fieldSelector")),
        )

    # -- verbs -----------------------------------------------------------------------

    def _list(self, req: Request, t: Target) -> Response:
        labels, fields = self._selectors(req)
        items = self.store.select(t.rt, t.namespace, labels, fields)
        rv = str(self.store.resource_version)
        meta: JSON = {"resourceVersion": rv}
        start = req.query.get("continue")
        if start:
            try:
                token = json.loads(base64.urlsafe_b64decode(start.encode()))
                after = tuple(token["start"])
            except (ValueError, KeyError, TypeError, binascii.Error):
                raise errors.bad_request("invalid continue token") from None
            items = [
                o
                for o in items
                if (o["metadata"].get("namespace", ""), o["metadata"]["name"]) > after
            ]
        limit_text = req.query.get("limit")
        if limit_text:
            try:
                limit = int(limit_text)
            except ValueError:
                raise errors.bad_request(f"invalid limit: {limit_text!r}") from None
            if 0 < limit < len(items):
                last = items[limit - 1]["metadata"]
                meta["continue"] = base64.urlsafe_b64encode(
                    json.dumps(
                        {"rv": rv, "start": [last.get("namespace", ""), last["name"]]}
                    ).encode()
                ).decode()
                meta["remainingItemCount"] = len(items) - limit
                items = items[:limit]
        items = [self._out(o, t) for o in items]
        if tables.wants_table(req.headers.get("accept", "")):
            return Response(body=tables.to_table(t.rt, items, meta))
        return Response(
            body={
                "kind": t.rt.list_kind,
                "apiVersion": t.rt.api_version(t.version),
                "metadata": meta,
                "items": items,
            }
        )

    def _create(self, req: Request, t: Target) -> Response:
        if t.rt.namespaced and t.namespace is None:
            raise errors.method_not_allowed()
        if t.rt.group == "authorization.k8s.io":
            # No authorization is simulated: every access review is allowed, unstored.
            # (kubectl sends these as protobuf; the answer needs nothing from the body.)
            review: JSON = {"apiVersion": t.rt.api_version(t.version), "kind": t.rt.kind}
            status = {"allowed": True, "reason": "simcluster allows every request"}
            return Response(201, {**review, "metadata": {}, "spec": {}, "status": status})
        body = self._object_body(req, t)
        warn = field_validation.decode(t.rt, t.version, body, req.query, self.store)
        obj = self.store.create(
            t.rt, body, t.namespace or "", manager=self._manager(req), dry_run=self._dry_run(req)
        )
        return Response(201, self._out(obj, t), headers=warn)

    def _update(self, req: Request, t: Target) -> Response:
        body = self._object_body(req, t)
        warn = field_validation.decode(t.rt, t.version, body, req.query, self.store)
        obj = self.store.update(
            t.rt,
            body,
            t.namespace or "",
            t.name,
            subresource=t.sub,
            manager=self._manager(req),
            dry_run=self._dry_run(req),
        )
        return Response(body=self._out(obj, t), headers=warn)

    def _patch(self, req: Request, t: Target) -> Response:
        ctype = req.headers.get("content-type", "").split(";")[0].strip()
        ns = t.namespace or ""
        assert t.name is not None
        manager = self._manager(req)
        if ctype in (patch.APPLY, patch.APPLY_CBOR):
            return self._apply(req, t, manager)
        if ctype not in (patch.MERGE_PATCH, patch.JSON_PATCH, patch.STRATEGIC):
            raise errors.unsupported_media_type(ctype)
        if ctype == patch.STRATEGIC and t.rt.group not in (
            "",
            "apps",
            "batch",
            "networking.k8s.io",
            "rbac.authorization.k8s.io",
            "policy",
            "coordination.k8s.io",
            "autoscaling",
            "storage.k8s.io",
            "discovery.k8s.io",
            "admissionregistration.k8s.io",
        ):
            raise errors.unsupported_media_type(ctype)
        body = self._body(req)
        live = clone(self.store.get(t.rt, ns, t.name))
        if ctype == patch.JSON_PATCH:
            new = patch.json_patch(live, body)
        else:
            if not isinstance(body, dict):
                raise errors.bad_request("the patch must be a JSON object")
            new = (
                patch.merge_patch(live, body)
                if ctype == patch.MERGE_PATCH
                else patch.strategic_merge_patch(live, body)
            )
        if not isinstance(new, dict):
            raise errors.bad_request("the patch did not produce an object")
        warn = field_validation.decode_patched(
            t.rt, t.version, new, body, ctype == patch.STRATEGIC, req.query, self.store
        )
        meta = new.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise errors.bad_request("metadata must be an object")
        requested_rv = (
            (body.get("metadata") or {}).get("resourceVersion") if isinstance(body, dict) else None
        )
        if not requested_rv and ctype != patch.JSON_PATCH:
            meta["resourceVersion"] = live["metadata"]["resourceVersion"]
        elif (
            ctype == patch.JSON_PATCH
            and meta.get("resourceVersion") == live["metadata"]["resourceVersion"]
        ):
            pass
        meta.setdefault("resourceVersion", live["metadata"]["resourceVersion"])
        obj = self.store.update(
            t.rt, new, ns, t.name, subresource=t.sub, manager=manager, dry_run=self._dry_run(req)
        )
        return Response(body=self._out(obj, t), headers=warn)

    def _apply(self, req: Request, t: Target, manager: str) -> Response:
        if not req.query.get("fieldManager"):
            raise errors.bad_request("PATCH /apply requires fieldManager to be set")
        applied = self._body(req)
        if not isinstance(applied, dict):
            raise errors.bad_request("the apply configuration must be an object")
        if applied.get("kind") and applied["kind"] != t.rt.kind:
            raise errors.bad_request(f"kind {applied['kind']} does not match {t.rt.kind}")
        meta = applied.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise errors.bad_request("metadata must be an object")
        if meta.get("name") and meta["name"] != t.name:
            raise errors.bad_request("the name of the object does not match the name on the URL")
        meta["name"] = t.name
        ns = t.namespace or ""
        applied.setdefault("apiVersion", t.rt.api_version(t.version))
        applied.setdefault("kind", t.rt.kind)
        field_validation.check_apply(t.rt, t.version, applied, ns, t.name or "", self.store)
        live = self.store.try_get(t.rt, ns, t.name or "")
        force = req.flag("force")
        api_version = t.rt.api_version(t.version)
        if t.sub == "status":
            if live is None:
                raise errors.not_found(t.rt.plural, t.rt.group, t.name or "")
            new = clone(live)
            new["status"] = patch.merge_patch(live.get("status") or {}, applied.get("status") or {})
            obj = self.store.update(t.rt, new, ns, t.name, subresource="status", manager=manager)
            return Response(body=self._out(obj, t))
        new = managed.apply(
            clone(live) if live else None, applied, manager, api_version, now_iso(), force
        )
        if live is None:
            obj = self.store.create(
                t.rt, new, ns, manager=manager, dry_run=self._dry_run(req), fields_set=True
            )
            return Response(201, self._out(obj, t))
        if not meta.get("resourceVersion"):
            new["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
        obj = self.store.update(
            t.rt, new, ns, t.name, manager=manager, dry_run=self._dry_run(req), fields_set=True
        )
        return Response(body=self._out(obj, t))

    def _delete_options(self, req: Request) -> JSON:
        opts: JSON = {}
        if req.body:
            try:
                parsed = json.loads(req.body)
            except ValueError as exc:
                raise errors.bad_request(f"invalid DeleteOptions: {exc}") from None
            if isinstance(parsed, dict):
                opts = parsed
        if req.query.get("propagationPolicy"):
            opts["propagationPolicy"] = req.query["propagationPolicy"]
        if req.query.get("orphanDependents") in TRUE:
            opts["propagationPolicy"] = "Orphan"
        if opts.get("orphanDependents") is True:
            opts["propagationPolicy"] = "Orphan"
        shapes.check_delete_options(opts)
        policy = opts.get("propagationPolicy")
        if policy not in (None, "Background", "Foreground", "Orphan"):
            raise errors.bad_request(
                f'unsupported propagationPolicy "{policy}": '
                "must be one of Orphan, Foreground, Background"
            )
        if req.query.get("dryRun") == "All" or opts.get("dryRun") == ["All"]:
            opts["dryRun"] = True
        return opts

    def _delete(self, req: Request, t: Target) -> Response:
        opts = self._delete_options(req)
        assert t.name is not None
        obj = self.store.delete(
            t.rt,
            t.namespace or "",
            t.name,
            propagation=opts.get("propagationPolicy"),
            preconditions=opts.get("preconditions"),
            dry_run=bool(opts.get("dryRun")),
        )
        pending = self.store.try_get(t.rt, t.namespace or "", t.name) is not None and not opts.get(
            "dryRun"
        )
        return Response(202 if pending else 200, self._out(obj, t))

    def _delete_collection(self, req: Request, t: Target) -> Response:
        opts = self._delete_options(req)
        labels, fields = self._selectors(req)
        deleted = []
        for obj in list(self.store.select(t.rt, t.namespace, labels, fields)):
            meta = obj["metadata"]
            try:
                deleted.append(
                    self.store.delete(
                        t.rt,
                        meta.get("namespace", ""),
                        meta["name"],
                        propagation=opts.get("propagationPolicy"),
                        dry_run=bool(opts.get("dryRun")),
                    )
                )
            except ApiError as exc:
                if exc.code != 404:
                    raise
        meta_out = {"resourceVersion": str(self.store.resource_version)}
        return Response(
            body={
                "kind": t.rt.list_kind,
                "apiVersion": t.rt.api_version(t.version),
                "metadata": meta_out,
                "items": deleted,
            }
        )

    def _scale(self, req: Request, t: Target) -> Response:
        ns, name = t.namespace or "", t.name or ""
        obj = self.store.get(t.rt, ns, name)
        if req.method == "GET":
            return Response(body=_scale_of(obj))
        if req.method not in ("PUT", "PATCH"):
            raise errors.method_not_allowed()
        body = self._body(req)
        current = _scale_of(obj)
        if req.method == "PUT":
            new_scale = body
        else:
            ctype = req.headers.get("content-type", "").split(";")[0].strip()
            new_scale = (
                patch.json_patch(current, body)
                if ctype == patch.JSON_PATCH
                else patch.merge_patch(current, body)
            )
        replicas = (
            ((new_scale or {}).get("spec") or {}).get("replicas")
            if isinstance(new_scale, dict)
            else None
        )
        if not isinstance(replicas, int) or replicas < 0:
            raise errors.invalid(
                "Scale",
                "autoscaling",
                name,
                [
                    (
                        "FieldValueInvalid",
                        "spec.replicas",
                        "Invalid value: must be a non-negative integer",
                    )
                ],
            )
        rv = (
            ((new_scale.get("metadata") or {}).get("resourceVersion"))
            if isinstance(new_scale, dict)
            else None
        )
        new = clone(obj)
        new["spec"]["replicas"] = replicas
        if req.method == "PUT" and rv:
            new["metadata"]["resourceVersion"] = rv
        updated = self.store.update(t.rt, new, ns, name, manager=self._manager(req))
        return Response(body=_scale_of(updated))

    def _log(self, req: Request, t: Target) -> Response:
        ns, name = t.namespace or "", t.name or ""
        pod = self.store.get(t.rt, ns, name)
        containers = [c.get("name", "") for c in (pod.get("spec") or {}).get("containers") or []]
        container = req.query.get("container") or (containers[0] if len(containers) == 1 else "")
        if not container:
            raise errors.bad_request(
                f"a container name must be specified for pod {name}, "
                f"choose one of: [{' '.join(containers)}]"
            )
        if container not in containers + [
            c.get("name", "") for c in (pod.get("spec") or {}).get("initContainers") or []
        ]:
            raise errors.bad_request(f"container {container} is not valid for pod {name}")
        data = self.logs.read(ns, name, container)
        tail = req.query.get("tailLines")
        if tail and tail.isdigit():
            lines = data.splitlines(keepends=True)
            data = b"".join(lines[-int(tail) :]) if int(tail) else b""
        if req.flag("follow"):
            logs = self.logs
            start = len(self.logs.read(ns, name, container))

            async def follow() -> AsyncIterator[bytes]:
                if data:
                    yield data
                async for chunk in logs.follow(ns, name, container, start):
                    yield chunk

            return Response(stream=follow(), content_type="text/plain")
        return Response(raw=data, content_type="text/plain")

    # -- watch -----------------------------------------------------------------------

    def _watch(self, req: Request, t: Target) -> Response:
        labels, fields = self._selectors(req)
        rv_text = req.query.get("resourceVersion", "")
        since: int | None = None
        if rv_text not in ("", "0"):
            try:
                since = int(rv_text)
            except ValueError:
                raise errors.bad_request(f"invalid resourceVersion: {rv_text!r}") from None
        timeout = self.config.watch_timeout
        if req.query.get("timeoutSeconds"):
            try:
                timeout = float(req.query["timeoutSeconds"])
            except ValueError:
                raise errors.bad_request("invalid timeoutSeconds") from None
        bookmarks = req.flag("allowWatchBookmarks")
        initial_end = req.flag("sendInitialEvents")
        as_table = tables.wants_table(req.headers.get("accept", ""))
        if initial_end and since is not None:
            since = None
        initial, watcher = self.store.watch(t.rt, t.namespace, labels, fields, since)
        store = self.store
        rt, version = t.rt, t.version
        interval = self.config.bookmark_interval
        api_version = rt.api_version(version)

        def encode(event_type: str, ev: WatchEvent) -> bytes:
            obj = ev.obj
            if as_table:
                meta = {"resourceVersion": obj["metadata"]["resourceVersion"]}
                table = tables.to_table(rt, [obj], meta)
                return orjson.dumps({"type": event_type, "object": table}) + b"\n"
            if rt.key == hpaconvert.KEY and version == "v1":
                obj = hpaconvert.to_v1(obj)
                return orjson.dumps({"type": event_type, "object": obj}) + b"\n"
            if obj.get("apiVersion") != api_version:
                obj = {**obj, "apiVersion": api_version}
                return orjson.dumps({"type": event_type, "object": obj}) + b"\n"
            return ev.encode(event_type)

        def bookmark(end: bool = False) -> bytes:
            meta: JSON = {"resourceVersion": str(store.resource_version)}
            if end:
                meta["annotations"] = {"k8s.io/initial-events-end": "true"}
            return (
                orjson.dumps(
                    {
                        "type": "BOOKMARK",
                        "object": {"kind": rt.kind, "apiVersion": api_version, "metadata": meta},
                    }
                )
                + b"\n"
            )

        async def stream() -> AsyncIterator[bytes]:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            try:
                chunk = [encode(typ, ev) for typ, ev in initial]
                if initial_end:
                    chunk.append(bookmark(True))
                if chunk:
                    yield b"".join(chunk)
                while True:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        return
                    try:
                        # asyncio.timeout, unlike wait_for, creates no task per wait:
                        # it matters with hundreds of idle watchers.
                        async with asyncio.timeout(min(remaining, interval)):
                            typ, ev = await watcher.queue.get()
                    except TimeoutError:
                        if bookmarks and loop.time() < deadline:
                            yield bookmark()
                        continue
                    if typ == "CLOSE":
                        return
                    out = [encode(typ, ev)]
                    while not watcher.queue.empty():
                        typ, ev = watcher.queue.get_nowait()
                        if typ == "CLOSE":
                            yield b"".join(out)
                            return
                        out.append(encode(typ, ev))
                    yield b"".join(out)
            finally:
                store.unwatch(watcher)

        return Response(stream=stream())

    def _openapi(self, parts: list[str], req: Request) -> Response:
        reg = self.store.registry
        crd_rt = reg.by_key("apiextensions.k8s.io", "customresourcedefinitions")
        crds = self.store.select(crd_rt) if crd_rt is not None else []
        if parts == ["v2"]:
            if "protobuf" in req.headers.get("accept", ""):
                return Response(raw=openapi.v2_protobuf(), content_type=openapi.V2_PROTOBUF_TYPE)
            return Response(body=openapi.v2_json(reg, crds))
        if parts == ["v3"]:
            return Response(body=openapi.root(reg, crds))
        if len(parts) == 3 and parts[:2] == ["v3", "api"]:
            doc = openapi.group_version(reg, "", parts[2], crds)
        elif len(parts) == 4 and parts[:2] == ["v3", "apis"]:
            doc = openapi.group_version(reg, parts[2], parts[3], crds)
        else:
            doc = None
        if doc is None:
            raise errors.endpoint_not_found()
        return Response(body=doc)

    # -- simulator control -----------------------------------------------------------

    def _sim_control(self, req: Request, parts: list[str]) -> Response:
        if parts == ["faults"]:
            if req.method == "GET":
                return Response(
                    body={"rules": self.faults.rules(), "injected": self.faults.injected}
                )
            if req.method == "DELETE":
                self.faults.clear()
                return Response(body={"rules": []})
            if req.method in ("POST", "PUT"):
                body = self._body(req)
                raw_rules = body.get("rules") if isinstance(body, dict) else body
                if not isinstance(raw_rules, list):
                    raise errors.bad_request('expected {"rules": [...]}')
                try:
                    rules = [FaultRule.from_json(r) for r in raw_rules]
                except (TypeError, ValueError) as exc:
                    raise errors.bad_request(str(exc)) from None
                if req.method == "PUT" or (isinstance(body, dict) and body.get("replace", True)):
                    self.faults.set(rules)
                else:
                    for r in rules:
                        self.faults.add(r)
                return Response(body={"rules": self.faults.rules()})
            raise errors.method_not_allowed()
        if parts == ["stats"]:
            return Response(
                body={
                    "objects": self.store.count(),
                    "watchers": self.store.watcher_count(),
                    "resourceVersion": self.store.resource_version,
                }
            )
        raise errors.endpoint_not_found()


def _verb(req: Request, t: Target) -> str:
    m = req.method
    if m == "GET":
        if t.name is None:
            return "watch" if req.flag("watch") or t.watch_path else "list"
        return "get"
    return {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(
        m, "deletecollection" if t.name is None else "delete"
    )


def _fault_response(rule: FaultRule) -> Response:
    if rule.kind == "429":
        err = ApiError(
            429,
            "TooManyRequests",
            "the server has received too many requests and has asked us to try again later"
            " (simulated)",
            {"retryAfterSeconds": rule.retry_after},
            {"Retry-After": str(rule.retry_after)},
        )
    elif rule.kind == "503":
        err = ApiError(
            503,
            "ServiceUnavailable",
            "the server is currently unable to handle the request (simulated)",
            None,
            {"Retry-After": str(rule.retry_after)},
        )
    else:
        err = ApiError(500, "InternalError", "Internal error occurred: simulated fault")
    return Response(err.code, err.status(), headers=err.headers)


def _scale_of(obj: JSON) -> JSON:
    meta = obj["metadata"]
    spec = obj.get("spec") or {}
    selector = spec.get("selector")
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: meta[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if k in meta
        },
        "spec": {"replicas": spec.get("replicas", 0)},
        "status": {
            "replicas": (obj.get("status") or {}).get("replicas", 0),
            "selector": selector_to_string(selector) if isinstance(selector, dict) else "",
        },
    }
