"""Registry blocks: credentials for any OCI registry, and AWS ECR settings.

Secrets stay ``SecretStr`` until the moment they are handed to a client, and are
registered with :mod:`shipyard.core.redact` then, so no log line or error shows them.
The registry API client itself (basic auth or the bearer-token handshake, manifests,
config blobs, tags) is :class:`shipyard.core.registry.RegistryClient`; a block only
keeps the settings and builds it.
"""

from __future__ import annotations

from typing import Any

from prefect.blocks.core import Block
from prefect_aws.credentials import AwsCredentials
from pydantic import Field, SecretStr

from shipyard.core.registry import RegistryAuth, RegistryClient, engine_auth, open_client


class RegistryCredentials(Block):
    """Credentials for one OCI registry (Harbor, Distribution, GHCR, ECR after login...)."""

    _block_type_name = "Shipyard Registry Credentials"
    _description = "Host, user and password (or token) of an OCI registry."

    registry: str = Field(description="Registry host[:port], e.g. harbor.example.com.")
    username: str | None = Field(None, description="User name; none for anonymous access.")
    password: SecretStr | None = Field(None, description="Password or access token.")
    insecure: bool = Field(
        False, description="Plain HTTP / unverified TLS (loopback and test registries only)."
    )
    trivy_db_repository: str | None = Field(
        None,
        description="Trivy's vulnerability DB mirrored in this registry (OCI artifact), "
        "e.g. harbor.example.com/mirror/trivy-db:2; scans of its images use it.",
    )

    @classmethod
    def for_registry(
        cls,
        registry: str,
        *,
        username: str | None = None,
        password: str | None = None,
        insecure: bool | None = None,
    ) -> RegistryCredentials:
        """Credentials for ``registry``; ``insecure`` defaults to True only on loopback."""
        auth = RegistryAuth.for_registry(
            registry, username=username, password=password, insecure=insecure
        )
        return cls(
            registry=auth.registry,
            username=auth.username,
            password=auth.password,
            insecure=auth.insecure,
        )

    def auth_config(self) -> dict[str, str] | None:
        """The Docker Engine ``X-Registry-Auth`` payload, or None when anonymous."""
        return engine_auth(self)

    def get_client(self, timeout: float = 15.0) -> RegistryClient:
        """A registry API client using these credentials."""
        return open_client(self, timeout)


class EcrRegistry(Block):
    """An AWS ECR registry: region, account, credentials, and repository defaults."""

    _block_type_name = "Shipyard ECR Registry"
    _description = "AWS ECR: login token from get_authorization_token, repositories on demand."

    region: str = Field(description="AWS region, e.g. eu-west-1.")
    registry_id: str | None = Field(None, description="AWS account ID; default the caller's.")
    aws_credentials: AwsCredentials | None = Field(
        None, description="prefect-aws credentials; default the usual AWS credential chain."
    )
    endpoint_url: str | None = Field(
        None, description="ECR API endpoint override (VPC endpoint, or a local moto server)."
    )
    scan_on_push: bool = Field(True, description="Create repositories with scan-on-push.")
    immutable_tags: bool = Field(True, description="Create repositories with IMMUTABLE tags.")
    insecure: bool = Field(False, description="Plain HTTP to the registry (tests only).")

    def get_ecr_client(self) -> Any:
        """A boto3 ECR client for this region (and endpoint, when overridden)."""
        import boto3

        if self.aws_credentials is not None:
            session = self.aws_credentials.get_boto3_session()
        else:
            session = boto3.Session(region_name=self.region)
        return session.client("ecr", region_name=self.region, endpoint_url=self.endpoint_url)
