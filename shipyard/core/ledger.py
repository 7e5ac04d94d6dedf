"""The delivery ledger's record: one delivery attempt to one environment (and cluster).

This is the contract of ``shipyard deliveries export`` (JSON Lines, one record per
line), of ``shipyard dora --records FILE`` and of the exporter's delivery metrics. The
records are derived from Shipyard's Prefect events (see ``docs/events.md``); this module
holds only the record and its (de)serialisation, so every reader parses a line the same
way and a malformed line is reported with its line number.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shipyard.core.errors import ConfigError

Outcome = Literal["succeeded", "failed"]
Cause = Literal["build", "scan", "push", "gitops", "sync", "verify", "config", "infrastructure"]
CAUSES: tuple[str, ...] = (
    "build",
    "scan",
    "push",
    "gitops",
    "sync",
    "verify",
    "config",
    "infrastructure",
)


class DeliveryRecord(BaseModel):
    """One delivery attempt, as exported (keys and meaning are a stable contract).

    ``outcome`` is ``failed`` only for a deployment that changed the environment and then
    failed verification, was rolled back or failed its rollback. ``change_time`` is the
    source commit's committer time, or the push time of a pushed image. ``restored_at`` is
    when the environment was next verified healthy after a failed record (a verified
    rollback, or the next successful delivery); ``cause`` is the failed step.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    app: str
    environment: str
    cluster: str | None = None
    outcome: Outcome
    change_time: datetime | None = None
    deployed_at: datetime
    restored_at: datetime | None = None
    digest: str | None = None
    source_commit: str | None = None
    cause: Cause | None = None
    flow_run: str | None = Field(None, description="The Prefect flow run id of the attempt.")

    @field_validator("change_time", "deployed_at", "restored_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        """Naive timestamps are read as UTC, so comparisons never mix the two kinds."""
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    def to_json(self) -> str:
        """One JSON Lines line (no newline), timestamps as ISO 8601 with a ``Z``."""
        data = self.model_dump(mode="json")
        for key in ("change_time", "deployed_at", "restored_at"):
            if isinstance(data[key], str):
                data[key] = data[key].replace("+00:00", "Z")
        return json.dumps(data, separators=(", ", ": "))


def parse_records(lines: Iterable[str], source: str = "records") -> Iterator[DeliveryRecord]:
    """Parse JSON Lines into records; blank lines are skipped.

    Raises ConfigError ``<source> line N: <what is wrong>`` on the first malformed line.
    """
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield DeliveryRecord.model_validate(json.loads(line))
        except (ValueError, ValidationError) as exc:
            first = exc.errors()[0] if isinstance(exc, ValidationError) else None
            what = (
                f"{'.'.join(str(p) for p in first['loc']) or 'record'}: {first['msg']}"
                if first
                else f"not JSON ({exc})"
            )
            raise ConfigError(f"{source} line {number}: {what}") from None
