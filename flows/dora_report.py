"""`dora-report`: DORA's four keys and the platform score of the last days, published.

Orchestration only: read the ledger (a records file, or Prefect's own events), build the
report (figures, time buckets, failure causes, charts uploaded to the report bucket),
then publish a table artifact (figures per app and environment), a markdown report and
one image artifact per chart. The `dora-report` deployment runs it daily (prefect.yaml).
"""

from __future__ import annotations

from datetime import datetime

from prefect import flow
from prefect.artifacts import (
    create_image_artifact,
    create_markdown_artifact,
    create_table_artifact,
)

from flows.backup import resolve_storage
from shipyard.core.config import parse_config
from tasks.dora_report import DoraReport, DoraReportConfig
from tasks.steps.dora import build_dora_report, load_ledger

REPORT_KEY = "dora-report"
TABLE_KEY = "dora-figures"
CHART_KEY = "dora-{name}"  # dora-deploy-frequency, dora-lead-time, dora-failure-causes


@flow(name="dora-report", log_prints=True)
def dora_report(
    records_file: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    days: float = 30.0,
    app: str | None = None,
    environment: str | None = None,
    bucket_days: float = 1.0,
    bucket: str | None = None,
    prefix: str = "shipyard-reports/dora",
    s3_endpoint: str | None = None,
    storage_block: str | None = None,
) -> DoraReport:
    """DORA figures over [since, until) with charts, as artifacts (see docs/dora.md).

    Args:
        records_file: Ledger as JSON Lines; default: derived from the Prefect API's events.
        since: Window start (default: until - days).
        until: Window end, excluded (default: now).
        days: Window length when since is not given.
        app: Only this app.
        environment: Only this environment.
        bucket_days: Length of one time bucket of the charts, in days.
        bucket: S3 bucket for the charts (ignored when storage_block is given).
        prefix: Key prefix of the charts in the bucket.
        s3_endpoint: S3-compatible endpoint URL; default AWS.
        storage_block: Saved Shipyard Backup Storage block (its bucket holds the reports).
    """
    config = parse_config(
        DoraReportConfig,
        {
            "since": since,
            "until": until,
            "days": days,
            "app": app,
            "environment": environment,
            "bucket_days": bucket_days,
            "prefix": prefix,
        },
    )
    storage = (
        resolve_storage(bucket, prefix, s3_endpoint, storage_block)
        if bucket or storage_block
        else None
    )
    report = build_dora_report(load_ledger(records_file, config), config, storage)
    f = report.figures
    create_table_artifact(
        key=TABLE_KEY,
        table=report.table,
        description=f"DORA figures per app and environment, {f.window_days:g} days",
    )
    create_markdown_artifact(key=REPORT_KEY, markdown=report.markdown, description="DORA report")
    for chart in report.charts:
        create_image_artifact(
            image_url=chart.url,
            key=CHART_KEY.format(name=chart.name),
            description=f"DORA {chart.name.replace('-', ' ')} ({chart.key})",
        )
    print(
        f"DORA over {f.window_days:g} days: {f.deployments} deployments, {f.failures} failed, "
        f"score {'-' if f.platform_score is None else f'{f.platform_score:.1f}'}; "
        f"{len(report.charts)} charts stored"
    )
    return report
