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
from typing import Any, TypeVar

import httpx

__all__ = [
    "HEALTH_TIMEOUT_SECONDS",
    "outcome",
    "prefect_api_reachable",
    "quiet_prefect_console",
    "run_flow",
    "run_step",
]

R = TypeVar("R")

HEALTH_TIMEOUT_SECONDS = 1.0
_EPHEMERAL = "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE"
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
    core it wraps); ephemeral mode is off while it runs so nothing can start a server
    (and back as it was afterwards, for callers that run several commands in-process).
    """
    if prefect_api_reachable():
        with quiet_prefect_console():
            return as_flow()
    previous = os.environ.get(_EPHEMERAL)
    os.environ[_EPHEMERAL] = "false"
    try:
        return directly()
    finally:
        if previous is None:
            os.environ.pop(_EPHEMERAL, None)
        else:
            os.environ[_EPHEMERAL] = previous


def outcome(state: Any) -> Any:
    """What a flow run that may end Failed with its result attached returned.

    The step flows end Failed when a check fails (an unhealthy rollout, a blocked gate,
    a failed drill) but attach their result, which the command still prints; a run that
    failed with an exception re-raises it here.
    """
    result = state.result(raise_on_failure=False)
    if isinstance(result, BaseException):
        raise result
    return result


def run_flow(
    flow: Callable[..., Any], directly: Callable[..., Any], *args: Any, **kwargs: Any
) -> Any:
    """:func:`run_step` for a flow and its direct twin taking the same arguments.

    ``flow(*args, **kwargs)`` runs as a flow run when an API answers (its result read
    with :func:`outcome`, so a check that failed still comes back), else
    ``directly(*args, **kwargs)`` runs the same steps in this process.
    """
    return run_step(
        lambda: outcome(flow(*args, return_state=True, **kwargs)),
        lambda: directly(*args, **kwargs),
    )
