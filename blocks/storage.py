"""Backup storage block: the S3 bucket (or S3-compatible endpoint) backups live in.

Credentials reuse prefect-aws' ``AwsCredentials``; when none are given boto3's usual
chain applies (environment variables, profile, instance role). The block holds
settings only: the client and the store come from the foundation
(:mod:`shipyard.core.s3`).
"""

from __future__ import annotations

from typing import Any

from prefect.blocks.core import Block
from prefect_aws import AwsCredentials
from pydantic import Field

from shipyard.core.s3 import S3Store, s3_client


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
        session = self.credentials.get_boto3_session() if self.credentials is not None else None
        return s3_client(self.endpoint_url, self.region, session)

    def get_store(self) -> S3Store:
        """The bucket as Shipyard's S3 store (errors translated into the error split)."""
        return S3Store(self.get_s3_client(), self.bucket)
