"""Read what the ledger and the exporter need from Prefect's REST API (the I/O edge).

* events: ``POST /events/filter`` (time window, name prefixes, oldest first), then the
  ``next_page`` links (``GET /events/filter/next?page-token=...``) until none is left;
* task runs and flow runs: ``POST /task_runs/filter`` and ``/flow_runs/filter`` (offset
  pages), for step durations and backups;
* workers: ``POST /work_pools/filter`` and ``/work_pools/{name}/workers/filter``.

Every failure to reach or read the API is a :class:`PrefectUnavailable` naming the URL
and saying how to start a server, so a CLI prints one line and the exporter keeps its
last values.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from shipyard.core.errors import TransientError
from shipyard.core.ledger_events import iso_z

__all__ = [
    "PAGE_SIZE",
    "PrefectReader",
    "PrefectUnavailable",
    "auth_headers",
    "default_api_url",
]

PAGE_SIZE = 50  # the events API's largest page (INTERACTIVE_PAGE_SIZE)
RUN_PAGE = 200


class PrefectUnavailable(TransientError):
    """The Prefect API did not answer (or answered with an error)."""


def default_api_url() -> str:
    """``PREFECT_API_URL`` of the active Prefect profile or environment ('' if unset)."""
    from prefect.settings import PREFECT_API_URL

    return str(PREFECT_API_URL.value() or "")


def auth_headers() -> dict[str, str]:
    """The Authorization header of the active profile: PREFECT_API_KEY (Bearer) or
    PREFECT_API_AUTH_STRING (Basic); none when neither is set. Never printed."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_KEY

    if key := PREFECT_API_KEY.value():
        return {"Authorization": f"Bearer {key.get_secret_value()}"}
    if auth := PREFECT_API_AUTH_STRING.value():
        token = base64.b64encode(auth.get_secret_value().encode()).decode()
        return {"Authorization": f"Basic {token}"}
    return {}


class PrefectReader:
    """A small read-only client of the Prefect server's API."""

    def __init__(
        self,
        api_url: str | None = None,
        *,
        timeout: float = 10.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.api_url = (api_url if api_url is not None else default_api_url()).rstrip("/")
        self._client = httpx.Client(
            timeout=timeout, headers=headers if headers is not None else auth_headers()
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def __enter__(self) -> PrefectReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _unavailable(self, what: str) -> PrefectUnavailable:
        where = self.api_url or "(PREFECT_API_URL is not set)"
        return PrefectUnavailable(
            f"Prefect API at {where} is not reachable ({what}): start it with "
            "'shipyard stack up' (or 'prefect server start') and set PREFECT_API_URL"
        )

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        if not self.api_url:
            raise self._unavailable("no URL")
        url = path if path.startswith("http") else f"{self.api_url}{path}"
        try:
            response = self._client.request(method, url, json=body)
        except httpx.HTTPError as exc:
            raise self._unavailable(type(exc).__name__) from None
        if response.status_code >= 400:
            raise self._unavailable(f"HTTP {response.status_code} on {path.split('?')[0]}")
        return response.json()

    def _next_page(self, link: str) -> str:
        """The next-page link re-rooted on our API URL (the server builds it from the
        Host it saw, which behind a proxy or port-forward is not ours)."""
        parts = urlsplit(link)
        return f"/events/filter/next?{parts.query}"

    def read_events(
        self,
        since: datetime,
        until: datetime,
        prefixes: Sequence[str] = ("shipyard.", "registry.image.pushed"),
    ) -> Iterator[dict[str, Any]]:
        """Events that occurred in ``[since, until]`` whose names start with one of
        ``prefixes``, oldest first, across every page."""
        body = {
            "filter": {
                "occurred": {"since": iso_z(since), "until": iso_z(until)},
                "event": {"prefix": list(prefixes)},
                "order": "ASC",
            },
            "limit": PAGE_SIZE,
        }
        page = self._call("POST", "/events/filter", body)
        while True:
            yield from page.get("events", [])
            link = page.get("next_page")
            if not link:
                return
            page = self._call("GET", self._next_page(link))

    def _runs(self, path: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        offset = 0
        while True:
            page = self._call("POST", path, {**body, "limit": RUN_PAGE, "offset": offset})
            yield from page
            if len(page) < RUN_PAGE:
                return
            offset += RUN_PAGE

    def read_task_runs(
        self, flows: Sequence[str], ended_after: datetime
    ) -> Iterator[dict[str, Any]]:
        """Finished (completed or failed) task runs of the named flows' runs."""
        return self._runs(
            "/task_runs/filter",
            {
                "flows": {"name": {"any_": list(flows)}},
                "task_runs": {
                    "state": {"type": {"any_": ["COMPLETED", "FAILED"]}},
                    "end_time": {"after_": iso_z(ended_after)},
                },
                "sort": "END_TIME_DESC",
            },
        )

    def read_flow_runs(
        self, flows: Sequence[str], ended_after: datetime, states: Sequence[str]
    ) -> Iterator[dict[str, Any]]:
        """Flow runs of the named flows that ended after ``ended_after`` in ``states``."""
        return self._runs(
            "/flow_runs/filter",
            {
                "flows": {"name": {"any_": list(flows)}},
                "flow_runs": {
                    "state": {"type": {"any_": list(states)}},
                    "end_time": {"after_": iso_z(ended_after)},
                },
                "sort": "END_TIME_DESC",
            },
        )

    def read_workers(self) -> dict[str, list[dict[str, Any]]]:
        """Every work pool's workers (name -> worker objects with last_heartbeat_time)."""
        pools = self._call("POST", "/work_pools/filter", {"limit": RUN_PAGE})
        return {
            pool["name"]: self._call(
                "POST", f"/work_pools/{pool['name']}/workers/filter", {"limit": RUN_PAGE}
            )
            for pool in pools
        }
