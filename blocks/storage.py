"""Backup storage block: the S3 bucket (or S3-compatible endpoint) backups live in.

Credentials reuse prefect-aws' ``AwsCredentials``; when none are given boto3's usual
chain applies (environment variables, profile, instance role).
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config
from prefect.blocks.core import Block
from prefect_aws import AwsCredentials
from pydantic import Field


class BackupStorage(Block):
    """Where Shipyard writes cluster backups."""

    _block_type_name = "Shipyard Backup Storage"
    _description = "An S3 bucket and prefix for cluster backups and drill reports."

    bucket: str = Field(description="Bucket name.")
    prefix: str = Field("shipyard-backups", description="Key prefix for every backup.")
    endpoint_url: str | None = Field(
        None, description="S3-compatible endpoint (MinIO, a local server); default AWS."
    )
    region: str | None = Field(None, description="AWS region; default from credentials/env.")
    credentials: AwsCredentials | None = Field(None, description="prefect-aws credentials.")

    def get_s3_client(self) -> Any:
        """A boto3 S3 client with bounded timeouts and standard retries."""
        return s3_client(self.endpoint_url, self.region, self.credentials)


def s3_client(
    endpoint_url: str | None = None,
    region: str | None = None,
    credentials: AwsCredentials | None = None,
) -> Any:
    """boto3 S3 client; 5xx, throttling and timeouts retried by botocore's standard mode."""
    cfg = Config(
        retries={"max_attempts": 5, "mode": "standard"},
        connect_timeout=5,
        read_timeout=30,
        s3={"addressing_style": "path"},
    )
    session = (
        credentials.get_boto3_session() if credentials is not None else boto3.session.Session()
    )
    return session.client("s3", endpoint_url=endpoint_url, region_name=region, config=cfg)
