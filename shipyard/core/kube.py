"""Shipyard's one Kubernetes client: raw JSON calls, discovery, paging, server-side apply
and watches, for every step that talks to a cluster (sync, verify, drift, backup, drills).

Built on the official client's ``ApiClient`` (``param_serialize``/``call_api``), so the
same kubeconfig, auth and TLS handling apply as everywhere else. Raw paths rather than
typed models: backups need every kind, custom resources included, as plain JSON, and
decoding into typed models would lose unknown fields and cost time at thousands of
objects.

Errors are translated here, once, into the error split: 429/5xx, dropped connections and
timeouts become :class:`TransientError` (with the server's Retry-After), and each call
is retried within a small budget (:class:`Retry`) honouring that hint, so a throttled or
flapping API server slows a step down instead of failing it; 409 is
:class:`KubeConflict`, 400/422 a :class:`ConfigError`, everything else permanent.

Build a client from a kubeconfig (:meth:`KubeClient.from_kubeconfig`, :func:`api_client`)
or hand it a ready ``ApiClient`` (a cluster block's ``get_kube_client`` does that).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from shipyard.core.errors import (
    ConfigError,
    PermanentError,
    TransientError,
    classify_http_status,
    is_transient,
)
from shipyard.core.parallel import DEFAULT_WORKERS, parallel_map

__all__ = ["KubeClient", "KubeConflict", "Resource", "Retry", "api_client"]

JSON = dict[str, Any]
_Objects = list[JSON]  # aliases: inside KubeClient, ``list`` names its method
_Served = list[tuple["Resource", list[str]]]
APPLY_PATCH = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"


class KubeConflict(PermanentError):
    """HTTP 409: the object already exists, or a write raced another one."""


@dataclass(frozen=True)
class Resource:
    """One REST resource (kind) as discovery describes it (e.g. apps/v1 deployments)."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        """``apiVersion`` of objects of this kind."""
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        """REST path of the collection or of one object."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base = f"{base}/namespaces/{namespace}"
        base = f"{base}/{self.plural}"
        return f"{base}/{name}" if name else base


@dataclass(frozen=True)
class Retry:
    """Per-call retry budget for transient API failures."""

    attempts: int = 6
    backoff: float = 0.2
    backoff_max: float = 3.0


def api_client(
    kubeconfig_path: str | None = None, context: str | None = None, *, in_cluster: bool = False
) -> Any:
    """A ``kubernetes.client.ApiClient`` from a kubeconfig file or the pod's service account.

    The path defaults to ``$KUBECONFIG``, then ``~/.kube/config``; a missing or unusable
    kubeconfig is a ConfigError saying what to do.
    """
    from kubernetes import client, config

    configuration = client.Configuration()
    if in_cluster:
        config.load_incluster_config(client_configuration=configuration)
        return client.ApiClient(configuration)
    path = kubeconfig_path or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    if not os.path.exists(path):
        raise ConfigError(
            f"no kubeconfig at {path}: pass --kubeconfig, set KUBECONFIG, "
            "or run 'shipyard stack up'"
        )
    try:
        config.load_kube_config(
            config_file=path, context=context, client_configuration=configuration
        )
    except (config.ConfigException, ValueError, KeyError) as exc:
        raise ConfigError(f"kubeconfig {path} is unusable: {exc}") from None
    return client.ApiClient(configuration)


_Resources = list[Resource]


class KubeClient:
    """Raw JSON access with retries; see the module docstring."""

    def __init__(
        self,
        api_client: Any,
        *,
        retry: Retry | None = None,
        sleep: Callable[[float], None] = time.sleep,
        request_timeout: float = 30.0,
    ) -> None:
        self.api = api_client
        self.retry = retry or Retry()
        self.sleep = sleep
        self.request_timeout = request_timeout
        self.requests = 0
        self._resources: dict[tuple[str, str], Resource] = {}

    @classmethod
    def from_kubeconfig(
        cls,
        kubeconfig_path: str | None = None,
        context: str | None = None,
        *,
        in_cluster: bool = False,
        retry: Retry | None = None,
        request_timeout: float = 30.0,
    ) -> KubeClient:
        """A client for the cluster a kubeconfig (or the pod's service account) points at."""
        return cls(
            api_client(kubeconfig_path, context, in_cluster=in_cluster),
            retry=retry,
            request_timeout=request_timeout,
        )

    # -- single calls ------------------------------------------------------------------

    def _once(
        self,
        method: str,
        path: str,
        body: Any,
        query: dict[str, str] | None,
        content_type: str,
        timeout: float | tuple[float, float] | None,
        stream: bool = False,
    ) -> Any:
        from kubernetes.client.exceptions import ApiException

        self.requests += 1
        try:
            verb, url, headers, payload, _ = self.api.param_serialize(
                method,
                path,
                query_params=list((query or {}).items()),
                header_params={"Accept": "application/json", "Content-Type": content_type},
                body=body,
                auth_settings=["BearerToken"],
            )
            response = self.api.call_api(
                verb, url, header_params=headers, body=payload, _request_timeout=timeout
            )
            if stream and 200 <= response.status < 300:
                return response
            data = response.read()
        except ApiException as exc:
            raise _error(method, path, exc.status or 0, exc.reason, exc.body, exc.headers) from None
        except Exception as exc:
            if is_transient(exc) or type(exc).__module__.startswith(("urllib3", "http.client")):
                raise TransientError(f"Kubernetes {method} {path}: {type(exc).__name__}") from None
            raise
        if response.status == 404:
            return None
        if not 200 <= response.status < 300:
            raise _error(method, path, response.status, response.reason, data, response.headers)
        return json.loads(data) if data else {}

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, str] | None = None,
        *,
        content_type: str = "application/json",
    ) -> JSON | None:
        """One API call (None on 404), retried on transient failures within the budget."""
        result: JSON | None = self._retrying(
            lambda: self._once(method, path, body, query, content_type, (5, self.request_timeout))
        )
        return result

    def _retrying(self, call: Callable[[], Any]) -> Any:
        delay = self.retry.backoff
        for attempt in range(1, self.retry.attempts + 1):
            try:
                return call()
            except TransientError as exc:
                if attempt == self.retry.attempts:
                    raise
                wait = exc.retry_after if exc.retry_after is not None else delay
                self.sleep(min(wait, self.retry.backoff_max * 2))
                delay = min(delay * 2, self.retry.backoff_max)
        raise AssertionError("unreachable")  # pragma: no cover

    def get(self, path: str) -> JSON | None:
        """GET one object or collection (None when 404)."""
        return self.request("GET", path)

    def list(self, path: str, query: dict[str, str] | None = None) -> tuple[list[JSON], str]:
        """All items of a collection and the list's resourceVersion (for a watch)."""
        doc = self.request("GET", path, query=query) or {}
        return list(doc.get("items") or []), str(
            (doc.get("metadata") or {}).get("resourceVersion", "")
        )

    def apply(
        self, resource: Resource, obj: JSON, field_manager: str, *, force: bool = True
    ) -> JSON:
        """Server-side apply ``obj`` (its fields owned by ``field_manager``)."""
        meta = obj.get("metadata") or {}
        path = resource.path(meta.get("namespace"), meta.get("name"))
        query = {"fieldManager": field_manager}
        if force:
            query["force"] = "true"
        out = self.request("PATCH", path, obj, query, content_type=APPLY_PATCH)
        return out or {}

    def merge_patch(self, path: str, patch: JSON) -> JSON | None:
        """JSON merge patch of one object (None when it does not exist)."""
        return self.request("PATCH", path, patch, content_type=MERGE_PATCH)

    def delete(self, path: str) -> bool:
        """Delete one object in the background; False when it was already gone."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        return self.request("DELETE", path, body) is not None

    # -- discovery and reading ---------------------------------------------------------

    def version(self) -> str:
        """The server's gitVersion ("" if not reported)."""
        doc = self.get("/version") or {}
        return str(doc.get("gitVersion", ""))

    def _group_version(self, group: str, version: str) -> _Served:
        """Top-level resources served at ``group/version`` with their verbs."""
        path = f"/apis/{group}/{version}" if group else f"/api/{version}"
        doc = self.get(path) or {}
        return [
            (
                Resource(group, version, r["name"], r["kind"], bool(r.get("namespaced"))),
                list(r.get("verbs") or []),
            )
            for r in doc.get("resources") or []
            if "/" not in r.get("name", "")
        ]

    def resource(self, api_version: str, kind: str) -> Resource:
        """The REST resource serving ``kind`` of ``api_version`` (discovery, cached)."""
        key = (api_version, kind)
        if key not in self._resources:
            group, _, version = api_version.rpartition("/")
            for res, _verbs in self._group_version(group, version):
                self._resources.setdefault((api_version, res.kind), res)
            if key not in self._resources:
                raise ConfigError(f"the cluster serves no {kind} in {api_version}")
        return self._resources[key]

    def discover(self, workers: int = DEFAULT_WORKERS) -> _Resources:
        """Every listable resource the server serves, at each group's preferred version."""
        lists: list[tuple[str, str]] = [("", "v1")]
        for g in (self.get("/apis") or {}).get("groups") or []:
            preferred = g.get("preferredVersion") or (g.get("versions") or [{}])[0]
            if preferred.get("version"):
                lists.append((g["name"], preferred["version"]))
        found = parallel_map(lambda gv: self._group_version(*gv), lists, workers)
        return [res for served in found for res, verbs in served if "list" in verbs]

    def list_objects(self, resource: Resource, namespace: str | None = None) -> _Objects:
        """All objects of ``resource`` (in ``namespace``), paging, with apiVersion/kind set."""
        items: _Objects = []
        query = {"limit": "500"}
        while True:
            doc = self.request("GET", resource.path(namespace), query=query)
            if doc is None:
                return items
            for item in doc.get("items") or []:
                item.setdefault("apiVersion", resource.api_version)
                item.setdefault("kind", resource.kind)
                items.append(item)
            token = (doc.get("metadata") or {}).get("continue")
            if not token:
                return items
            query = {"limit": "500", "continue": token}

    # -- watch -------------------------------------------------------------------------

    def watch(
        self,
        path: str,
        query: dict[str, str],
        resource_version: str,
        timeout: float,
        on_open: Callable[[Any], None] | None = None,
    ) -> Iterator[JSON]:
        """Stream watch events of a collection from ``resource_version`` for ``timeout`` s.

        Yields ``{"type", "object"}`` dicts, bookmarks included. The stream ends when
        the server closes it; a drop mid-stream raises TransientError, a 410 (history
        expired) a PermanentError whose message starts with "410" so the caller relists.
        ``on_open`` gets the raw response so another thread can close it to stop early.
        """
        q = {
            **query,
            "watch": "true",
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(max(1, int(timeout))),
        }
        if resource_version:
            q["resourceVersion"] = resource_version
        response = self._retrying(
            lambda: self._once("GET", path, None, q, "application/json", (5, timeout + 5), True)
        )
        if response is None or isinstance(response, dict):
            return
        raw = response.response
        if on_open is not None:
            on_open(raw)
        buffer = b""
        try:
            for chunk in raw.stream(4096, decode_content=True):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    if event.get("type") == "ERROR":
                        status = event.get("object") or {}
                        code = status.get("code", 0)
                        raise PermanentError(f"{code} watch error: {status.get('message', '')}")
                    yield event
        except (ValueError, OSError) as exc:
            raise TransientError(f"watch {path} dropped: {type(exc).__name__}") from None
        except Exception as exc:
            if type(exc).__module__.startswith(("urllib3", "http.client")) or is_transient(exc):
                raise TransientError(f"watch {path} dropped: {type(exc).__name__}") from None
            raise
        finally:
            raw.release_conn()


def _error(
    method: str, path: str, status: int, reason: Any, body: Any, headers: Any = None
) -> Exception:
    """Translate an HTTP error into the error split (Retry-After kept)."""
    message = reason
    try:
        message = json.loads(body).get("message", reason)
    except (TypeError, ValueError, AttributeError):
        pass
    text = f"Kubernetes {method} {path}: {status} {message}"
    if status == 409:
        return KubeConflict(text)
    cls = classify_http_status(int(status or 0)) or PermanentError
    if status == 0 or cls is TransientError:
        retry_after: float | None = None
        try:
            value = (headers or {}).get("Retry-After") or (headers or {}).get("retry-after")
            retry_after = float(value) if value is not None else None
        except (TypeError, ValueError):
            retry_after = None
        return TransientError(text, retry_after=retry_after)
    if status == 422 or status == 400:
        return ConfigError(text)
    return cls(text)
