"""The DORA report steps as Prefect tasks: read the ledger, build and store the report.

The ledger comes from a JSON Lines file (``shipyard deliveries export``) or from the
events of the Prefect API this run talks to; the report's charts go to the bucket of a
:class:`~blocks.storage.BackupStorage` (the report bucket of drills and backups). The
cores are in :mod:`tasks.dora_report`; the flow publishes the result's artifacts.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path

from prefect import task
from prefect.cache_policies import NONE as NO_CACHE

from blocks.storage import BackupStorage
from shipyard.core.errors import ConfigError, retry_condition
from shipyard.core.ledger import DeliveryRecord
from tasks.dora_report import (
    DoraReport,
    DoraReportConfig,
    build_report,
    ledger_from_api,
    read_records_file,
)

__all__ = ["api_ledger", "build_dora_report", "load_ledger"]


def api_ledger(since: datetime, until: datetime) -> list[DeliveryRecord]:
    """The ledger around ``[since, until)`` derived from the events of the Prefect API this
    process is configured for (PREFECT_API_URL, with its key or auth string)."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_KEY, PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        raise ConfigError(
            "no Prefect API to read the ledger from: set PREFECT_API_URL (or start the "
            "stack), or pass a records file"
        )
    headers: dict[str, str] = {}
    if key := PREFECT_API_KEY.value():
        headers["Authorization"] = f"Bearer {key.get_secret_value()}"
    elif auth := PREFECT_API_AUTH_STRING.value():
        token = base64.b64encode(auth.get_secret_value().encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    return ledger_from_api(url, since, until, headers=headers)


def _ledger(records_file: str | None, config: DoraReportConfig) -> list[DeliveryRecord]:
    """From the file when given, else from this run's Prefect API."""
    if records_file:
        return read_records_file(Path(records_file), "records_file")
    return api_ledger(*config.window(datetime.now(UTC)))


@task(
    name="load-ledger",
    retries=2,
    retry_delay_seconds=[5, 20],
    retry_condition_fn=retry_condition,
    cache_policy=NO_CACHE,
)
def load_ledger(records_file: str | None, config: DoraReportConfig) -> list[DeliveryRecord]:
    """The delivery ledger: a JSON Lines file, or derived from Prefect's events."""
    return _ledger(records_file, config)


@task(
    name="build-dora-report",
    retries=2,
    retry_delay_seconds=[5, 20],
    retry_condition_fn=retry_condition,
    cache_policy=NO_CACHE,
)
def build_dora_report(
    records: list[DeliveryRecord], config: DoraReportConfig, storage: BackupStorage | None
) -> DoraReport:
    """Figures, charts (uploaded to ``storage``'s bucket) and the report to publish."""
    store = storage.get_store() if storage is not None else None
    return build_report(records, config, store, datetime.now(UTC))
