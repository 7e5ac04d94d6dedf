"""Argo CD driver through its REST API, for setups that expose only the API server.

``POST /api/v1/applications/{name}/sync`` (revision, prune, ``infos`` with our sync id)
with a bearer token, then ``GET /api/v1/applications/{name}`` until
:func:`tasks.sync.argocd.judge_application` decides (the API has no cheap watch that
fits here; one GET per ``poll_seconds``, bounded by the deadline). HTTP 400 "another
operation is already in progress" is transient: retried until the deadline; 401/403 are
permanent; 5xx and connection errors are retried.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx

from shipyard.core.errors import ConfigError, PermanentError, PolicyError, TransientError
from shipyard.core.redact import register_secret
from tasks.sync.argocd import SYNC_ID, judge_application, result_from_application
from tasks.sync.config import SyncConfig, SyncResult

__all__ = ["IN_PROGRESS", "sync_argocd_rest"]

IN_PROGRESS = "another operation is already in progress"


def _error(response: httpx.Response, what: str) -> Exception:
    try:
        message = str(response.json().get("message") or response.json().get("error") or "")
    except ValueError:
        message = response.text[:200]
    text = f"Argo CD {what}: HTTP {response.status_code} {message}".strip()
    if IN_PROGRESS in message:
        return TransientError(text, retry_after=1.0)
    if response.status_code == 404:
        return ConfigError(text)
    if response.status_code in (429, 502, 503, 504) or response.status_code >= 500:
        return TransientError(text)
    return PermanentError(text)


def sync_argocd_rest(
    config: SyncConfig,
    client: httpx.Client | None = None,
    *,
    poll_seconds: float = 0.5,
    sleep: Any = time.sleep,
) -> SyncResult:
    """Sync through the REST API (see module docstring)."""
    started = time.monotonic()
    deadline = started + config.timeout_seconds
    headers = {}
    if config.argocd_token is not None:
        headers["Authorization"] = f"Bearer {register_secret(config.argocd_token)}"
    own = client is None
    client = client or httpx.Client(base_url=str(config.argocd_url), timeout=30.0)
    name = str(config.application)
    params = {"appNamespace": config.application_namespace}
    sync_id = uuid.uuid4().hex
    body: dict[str, Any] = {
        "prune": config.prune,
        "appNamespace": config.application_namespace,
        "infos": [{"name": SYNC_ID, "value": sync_id}],
    }
    if config.revision:
        body["revision"] = config.revision
    try:
        while True:
            try:
                response = client.post(
                    f"/api/v1/applications/{name}/sync", json=body, params=params, headers=headers
                )
                if response.status_code == 200:
                    break
                error = _error(response, f"sync {name}")
            except httpx.HTTPError as exc:
                error = TransientError(f"Argo CD sync {name}: {type(exc).__name__}")
            if not isinstance(error, TransientError) or time.monotonic() > deadline:
                raise error
            sleep(error.retry_after or poll_seconds)
        seen_healthy = False
        while True:
            try:
                response = client.get(
                    f"/api/v1/applications/{name}", params=params, headers=headers
                )
                if response.status_code != 200:
                    raise _error(response, f"get {name}")
                app = response.json()
                health = ((app.get("status") or {}).get("health") or {}).get("status")
                verdict = judge_application(
                    app,
                    config.revision,
                    sync_id,
                    wait_healthy=config.wait_healthy,
                    seen_healthy=seen_healthy,
                )
                seen_healthy = seen_healthy or health == "Healthy"
                if verdict is not None:
                    if not verdict.ok:
                        cls = PolicyError if "Degraded" in verdict.message else PermanentError
                        raise cls(f"Argo CD Application {name}: {verdict.message}")
                    return result_from_application(app, config, time.monotonic() - started)
            except httpx.HTTPError:
                pass  # transient: keep polling until the deadline
            except TransientError:
                pass
            if time.monotonic() > deadline:
                raise PermanentError(f"Argo CD sync of {name} did not finish in time")
            sleep(poll_seconds)
    finally:
        if own:
            client.close()
