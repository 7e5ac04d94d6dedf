"""How a CLI command runs its work: as a Prefect flow run when a Prefect API answers,
directly through the same step code otherwise.

A flow run makes a scripted step visible in the Prefect UI next to scheduled and
triggered runs. Without a reachable API the command still works, calling the steps'
code directly; it never starts a temporary Prefect server (that would cost seconds and
leave runs nobody can see), so the direct path switches Prefect's ephemeral mode off.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import httpx

__all__ = [
    "HEALTH_TIMEOUT_SECONDS",
    "prefect_api_reachable",
    "quiet_prefect_console",
    "run_step",
]

R = TypeVar("R")

HEALTH_TIMEOUT_SECONDS = 1.0
_reachable: dict[str, bool] = {}


def prefect_api_reachable(timeout: float = HEALTH_TIMEOUT_SECONDS) -> bool:
    """True when ``PREFECT_API_URL`` is set and its ``/health`` answers within ``timeout``.

    Read from the environment (which the stack's env file fills in), so deciding costs
    no Prefect import; the answer is remembered per URL for the life of the process.
    """
    url = os.environ.get("PREFECT_API_URL", "").strip().rstrip("/")
    if not url:
        return False
    if url not in _reachable:
        try:
            response = httpx.get(f"{url}/health", timeout=timeout)
            _reachable[url] = response.status_code == 200
        except httpx.HTTPError:
            _reachable[url] = False
    return _reachable[url]


@contextmanager
def quiet_prefect_console() -> Iterator[None]:
    """Keep Prefect's run logs off the terminal while a command's flow runs.

    The logs still reach the Prefect API (the UI shows them); the terminal keeps the
    CLI's contract: results on stdout, a user error as one line on stderr.
    """
    from prefect.logging.configuration import ensure_logging_setup
    from prefect.logging.handlers import PrefectConsoleHandler

    ensure_logging_setup()  # Prefect adds its handlers on first use; find them now
    loggers = [
        logging.getLogger(),
        *(logging.getLogger(n) for n in logging.root.manager.loggerDict),
    ]
    handlers = {
        h
        for lg in loggers
        for h in getattr(lg, "handlers", [])
        if isinstance(h, PrefectConsoleHandler)
    }
    levels = {h: h.level for h in handlers}
    for handler in handlers:
        handler.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for handler, level in levels.items():
            handler.setLevel(level)


def run_step(as_flow: Callable[[], R], directly: Callable[[], R]) -> R:
    """Call ``as_flow`` (a flow call) when a Prefect API answers, else ``directly``.

    ``directly`` must run the same steps without Prefect's API (a task's ``.fn``, or the
    core it wraps); ephemeral mode is switched off first so nothing can start a server.
    """
    if prefect_api_reachable():
        with quiet_prefect_console():
            return as_flow()
    os.environ["PREFECT_SERVER_ALLOW_EPHEMERAL_MODE"] = "false"
    return directly()
