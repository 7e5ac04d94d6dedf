"""The stack check as a Prefect task: one probe of one local service, retried twice."""

from __future__ import annotations

from prefect import task

from tasks.check_stack import ServiceCheck, probe_service

__all__ = ["check_service"]


@task(name="check-service", retries=2, retry_delay_seconds=1)
def check_service(service: str, address: str) -> ServiceCheck:
    """Prefect task running the probe for ``service`` at ``address``."""
    return probe_service(service, address)
