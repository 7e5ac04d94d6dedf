"""The @task wrappers: one module per area, each wrapper calls a Prefect-free core."""

from __future__ import annotations

import logging
from typing import Any


def run_logger() -> logging.Logger | logging.LoggerAdapter[Any] | None:
    """Prefect's logger of the current task or flow run, for a core to log into (the lines
    then show in the Prefect UI); None outside a run (``task.fn(...)``), where the core
    keeps logging to its own standard logger."""
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        return get_run_logger()
    except MissingContextError:
        return None
