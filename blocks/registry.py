"""Registry blocks: credentials for any OCI registry, AWS ECR settings, and a small
client for the registry HTTP API (v2) that the build and push steps share.

Secrets stay ``SecretStr`` until the moment they are handed to a client, and are
registered with :mod:`shipyard.core.redact` then, so no log line or error shows them. The
registry client speaks the distribution API directly (manifests and config blobs) with
basic auth or the bearer-token handshake, which is all the reuse check needs: it is one
or two round trips, much cheaper than a pull.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from typing import Any

import httpx
from prefect.blocks.core import Block
from prefect_aws.credentials import AwsCredentials
from pydantic import Field, SecretStr

from shipyard.core.errors import ConfigError, PermanentError, TransientError, classify_http_status
from shipyard.core.redact import register_secret

MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
_ACCEPT = ", ".join(MANIFEST_TYPES + INDEX_TYPES)
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


def is_loopback(registry: str) -> bool:
    """True for ``localhost[:port]`` and 127.0.0.0/8 or ::1 hosts."""
    host = registry.rsplit(":", 1)[0] if registry.count(":") == 1 else registry
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
        return cls(
            registry=registry,
            username=username or None,
            password=SecretStr(password) if password else None,
            insecure=is_loopback(registry) if insecure is None else insecure,
        )

    def auth_config(self) -> dict[str, str] | None:
        """The Docker Engine ``X-Registry-Auth`` payload, or None when anonymous."""
        if not self.username:
            return None
        return {
            "username": self.username,
            "password": register_secret(self.password),
            "serveraddress": self.registry,
        }

    def get_client(self, timeout: float = 15.0) -> RegistryClient:
        """A registry API client using these credentials."""
        return RegistryClient(
            self.registry,
            self.username,
            register_secret(self.password) if self.password else None,
            insecure=self.insecure,
            timeout=timeout,
        )


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


class RegistryClient:
    """Just enough of the OCI distribution API: manifests, config blobs, digests.

    401/403 are permanent errors naming the registry; 429, 5xx and connection failures
    are transient. A missing manifest is ``None``, not an error.
    """

    def __init__(
        self,
        registry: str,
        username: str | None = None,
        password: str | None = None,
        *,
        insecure: bool = False,
        timeout: float = 15.0,
    ) -> None:
        self.registry = registry
        self._auth = (username, password or "") if username else None
        self._base = f"{'http' if insecure else 'https'}://{registry}"
        self._http = httpx.Client(verify=not insecure, timeout=timeout)
        self._tokens: dict[str, str] = {}

    def close(self) -> None:
        """Release the connection pool."""
        self._http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, method: str, path: str, scope: str, accept: str) -> httpx.Response:
        headers = {"Accept": accept}
        token = self._tokens.get(scope)
        try:
            if token:
                headers["Authorization"] = f"Bearer {token}"
                response = self._http.request(method, self._base + path, headers=headers)
            else:
                response = self._http.request(
                    method, self._base + path, headers=headers, auth=self._auth
                )
            if response.status_code == 401 and not token:
                challenge = response.headers.get("WWW-Authenticate", "")
                if challenge.lower().startswith("bearer"):
                    self._tokens[scope] = self._fetch_token(challenge, scope)
                    headers["Authorization"] = f"Bearer {self._tokens[scope]}"
                    response = self._http.request(method, self._base + path, headers=headers)
        except httpx.HTTPError as exc:
            raise TransientError(f"registry {self.registry} unreachable: {exc}") from exc
        return response

    def _fetch_token(self, challenge: str, scope: str) -> str:
        params = dict(_CHALLENGE.findall(challenge))
        realm = params.pop("realm", "")
        if not realm:
            raise PermanentError(f"registry {self.registry} sent a bearer challenge without realm")
        query = {"service": params.get("service", ""), "scope": params.get("scope", scope)}
        try:
            response = self._http.get(realm, params=query, auth=self._auth)
        except httpx.HTTPError as exc:
            raise TransientError(f"token service of {self.registry} unreachable: {exc}") from exc
        self._check(response, "token request")
        body = response.json()
        token = body.get("token") or body.get("access_token")
        if not token:
            raise PermanentError(f"registry {self.registry} token service returned no token")
        register_secret(str(token))
        return str(token)

    def _check(self, response: httpx.Response, what: str) -> None:
        status = response.status_code
        if status in (401, 403):
            who = f"as {self._auth[0]!r}" if self._auth else "anonymously"
            raise PermanentError(
                f"registry {self.registry} refused {what} {who} (HTTP {status})",
                hint="check the registry credentials block",
            )
        kind = classify_http_status(status)
        if kind is TransientError:
            retry_after = response.headers.get("Retry-After")
            raise TransientError(
                f"registry {self.registry}: {what} answered HTTP {status}",
                retry_after=float(retry_after) if retry_after and retry_after.isdigit() else None,
            )
        if kind is not None:
            raise PermanentError(f"registry {self.registry}: {what} answered HTTP {status}")

    def ping(self) -> None:
        """Check that the registry answers and accepts the credentials."""
        response = self._send("GET", "/v2/", "", "application/json")
        self._check(response, "/v2/")

    def manifest(self, repository: str, reference: str) -> tuple[str, dict[str, Any]] | None:
        """``(digest, manifest)`` of ``repository:reference``, or None when absent."""
        scope = f"repository:{repository}:pull"
        response = self._send("GET", f"/v2/{repository}/manifests/{reference}", scope, _ACCEPT)
        if response.status_code == 404:
            return None
        self._check(response, f"manifest {repository}:{reference}")
        digest = response.headers.get("Docker-Content-Digest")
        if not digest:
            digest = "sha256:" + hashlib.sha256(response.content).hexdigest()
        return digest, response.json()

    def blob_json(self, repository: str, digest: str) -> dict[str, Any]:
        """A JSON blob (an image config) by digest."""
        scope = f"repository:{repository}:pull"
        response = self._send("GET", f"/v2/{repository}/blobs/{digest}", scope, "*/*")
        self._check(response, f"blob {repository}@{digest}")
        try:
            data = json.loads(response.content)
        except json.JSONDecodeError as exc:
            raise PermanentError(f"registry {self.registry}: blob {digest} is not JSON") from exc
        if not isinstance(data, dict):
            raise PermanentError(f"registry {self.registry}: blob {digest} is not a JSON object")
        return data

    def image_config(
        self, repository: str, reference: str, platform: str | None = None
    ) -> tuple[str, dict[str, Any]] | None:
        """``(manifest digest, image config)`` of a tag, or None when the tag is absent.

        For a multi-platform index the entry matching ``platform`` (or the first) is used;
        the returned digest is always the top-level one that ``repo@digest`` deploys.
        """
        found = self.manifest(repository, reference)
        if found is None:
            return None
        digest, manifest = found
        if manifest.get("mediaType") in INDEX_TYPES or "manifests" in manifest:
            entries = manifest.get("manifests") or []
            if not entries:
                return None
            chosen = entries[0]
            if platform:
                os_, _, arch = platform.partition("/")
                for entry in entries:
                    p = entry.get("platform") or {}
                    if p.get("os") == os_ and p.get("architecture") == arch.split("/")[0]:
                        chosen = entry
                        break
            inner = self.manifest(repository, str(chosen["digest"]))
            if inner is None:
                return None
            manifest = inner[1]
        config = manifest.get("config") or {}
        if "digest" not in config:
            raise ConfigError(f"{repository}:{reference} has no image config (not an image?)")
        return digest, self.blob_json(repository, str(config["digest"]))
