"""The one client for the OCI distribution API (v2) that every step shares.

It speaks just enough of the API for Shipyard: manifests and config blobs (the build's
reuse check, the push's digest, resolving a tag) and tag lists with ``Link``
pagination (image polling). Authentication is basic auth, or the bearer-token
handshake most registries use: a 401 with ``WWW-Authenticate: Bearer realm=...`` is
answered by fetching a token for the request's scope from the realm (with the basic
credentials, if any) and repeating the request; tokens are kept per scope.

Credentials come from anything shaped like :class:`RegistryAccess` (the registry
credentials block, or :class:`RegistryAuth` here); the password stays a ``SecretStr``
until :func:`open_client` hands it to the client, and it is registered for redaction
then, as is every token the client receives.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from pydantic import SecretStr

from shipyard.core.errors import ConfigError, PermanentError, TransientError, classify_http_status
from shipyard.core.net import is_loopback
from shipyard.core.redact import register_secret

__all__ = [
    "INDEX_TYPES",
    "MANIFEST_TYPES",
    "RegistryAccess",
    "RegistryAuth",
    "RegistryClient",
    "engine_auth",
    "open_client",
]

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
_NEXT = re.compile(r"<([^>]+)>\s*;\s*rel=\"?next\"?")


class RegistryAccess(Protocol):
    """What a step needs to reach a registry: host, optional login, and the TLS choice."""

    @property
    def registry(self) -> str:
        """Registry host[:port]."""
        ...

    @property
    def username(self) -> str | None:
        """User name; None for anonymous access."""
        ...

    @property
    def password(self) -> SecretStr | None:
        """Password or access token."""
        ...

    @property
    def insecure(self) -> bool:
        """Plain HTTP / unverified TLS."""
        ...


@dataclass(frozen=True)
class RegistryAuth:
    """Plain registry credentials (a login obtained at run time, or the anonymous default)."""

    registry: str
    username: str | None = None
    password: SecretStr | None = None
    insecure: bool = False
    trivy_db_repository: str | None = None

    @classmethod
    def for_registry(
        cls,
        registry: str,
        *,
        username: str | None = None,
        password: str | None = None,
        insecure: bool | None = None,
    ) -> RegistryAuth:
        """Credentials for ``registry``; ``insecure`` defaults to True only on loopback."""
        return cls(
            registry=registry,
            username=username or None,
            password=SecretStr(password) if password else None,
            insecure=is_loopback(registry) if insecure is None else insecure,
        )


def open_client(access: RegistryAccess, timeout: float = 15.0) -> RegistryClient:
    """A registry API client logged in with ``access`` (its password registered secret)."""
    return RegistryClient(
        access.registry,
        access.username,
        register_secret(access.password) if access.password else None,
        insecure=access.insecure,
        timeout=timeout,
    )


def engine_auth(access: RegistryAccess) -> dict[str, str] | None:
    """The Docker Engine ``X-Registry-Auth`` payload for ``access``; None when anonymous."""
    if not access.username:
        return None
    return {
        "username": access.username,
        "password": register_secret(access.password),
        "serveraddress": access.registry,
    }


class RegistryClient:
    """Just enough of the OCI distribution API: manifests, config blobs, digests, tags.

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

    # --- transport and authentication ---------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        scope: str,
        accept: str,
        *,
        content: bytes | None = None,
        content_type: str | None = None,
    ) -> httpx.Response:
        """``path`` (or an absolute URL the registry gave) with the scope's token, if any."""
        if path.startswith(("http://", "https://")):
            url = path
        elif path.startswith("/"):
            url = self._base + path
        else:  # a relative upload location
            url = f"{self._base}/{path}"
        headers = {"Accept": accept}
        if content_type:
            headers["Content-Type"] = content_type
        token = self._tokens.get(scope)
        try:
            if token:
                headers["Authorization"] = f"Bearer {token}"
                response = self._http.request(method, url, headers=headers, content=content)
            else:
                response = self._http.request(
                    method, url, headers=headers, auth=self._auth, content=content
                )
            if response.status_code == 401 and not token:
                challenge = response.headers.get("WWW-Authenticate", "")
                if challenge.lower().startswith("bearer"):
                    self._tokens[scope] = self._fetch_token(challenge, scope)
                    headers["Authorization"] = f"Bearer {self._tokens[scope]}"
                    response = self._http.request(method, url, headers=headers, content=content)
        except httpx.HTTPError as exc:
            raise TransientError(f"registry {self.registry} unreachable: {exc}") from exc
        return response

    def _fetch_token(self, challenge: str, scope: str) -> str:
        """The bearer-token exchange: ask the challenge's realm for a token for ``scope``."""
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

    # --- the API --------------------------------------------------------------------------

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

    def image_labels(self, repository: str, reference: str) -> dict[str, str] | None:
        """The image config's labels (``org.opencontainers.image.revision`` ...) of
        ``repository:reference`` (a tag or a digest); None when the image is absent."""
        found = self.image_config(repository, reference)
        if found is None:
            return None
        inner = found[1].get("config") or found[1].get("container_config") or {}
        labels = inner.get("Labels") or {}
        return {str(k): str(v) for k, v in labels.items()}

    def push_blob(self, repository: str, data: bytes) -> str:
        """Upload ``data`` as a blob of ``repository`` (monolithic); its digest.

        A blob the registry already has is not sent again.
        """
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        scope = f"repository:{repository}:pull,push"
        head = self._send("HEAD", f"/v2/{repository}/blobs/{digest}", scope, "*/*")
        if head.status_code == 200:
            return digest
        started = self._send("POST", f"/v2/{repository}/blobs/uploads/", scope, "*/*")
        self._check(started, f"blob upload to {repository}")
        location = started.headers.get("Location")
        if not location:
            raise PermanentError(f"registry {self.registry}: blob upload gave no Location")
        separator = "&" if "?" in location else "?"
        done = self._send(
            "PUT",
            f"{location}{separator}digest={digest}",
            scope,
            "*/*",
            content=data,
            content_type="application/octet-stream",
        )
        self._check(done, f"blob upload to {repository}")
        return digest

    def put_manifest(
        self, repository: str, reference: str, manifest: dict[str, Any], media_type: str
    ) -> str:
        """Store ``manifest`` as ``repository:reference``; the manifest's digest."""
        body = json.dumps(manifest, separators=(",", ":")).encode()
        scope = f"repository:{repository}:pull,push"
        response = self._send(
            "PUT",
            f"/v2/{repository}/manifests/{reference}",
            scope,
            "*/*",
            content=body,
            content_type=media_type,
        )
        self._check(response, f"manifest {repository}:{reference}")
        return response.headers.get("Docker-Content-Digest") or (
            "sha256:" + hashlib.sha256(body).hexdigest()
        )

    def tags(self, repository: str, page_size: int = 1000) -> list[str]:
        """Every tag of ``repository``, following the registry's ``Link`` pagination.

        An unknown repository is a ConfigError (the image name is wrong, not the network).
        """
        scope = f"repository:{repository}:pull"
        url: str | None = f"/v2/{repository}/tags/list?n={page_size}"
        tags: list[str] = []
        while url:
            response = self._send("GET", url, scope, "application/json")
            if response.status_code == 404:
                raise ConfigError(
                    f"registry {self.registry}: {repository}: repository not found (404)"
                )
            self._check(response, f"tags of {repository}")
            tags.extend(response.json().get("tags") or [])
            url = _next_page(response)
        return tags


def _next_page(response: httpx.Response) -> str | None:
    """The ``rel="next"`` target of a ``Link`` header (a path or an absolute URL)."""
    match = _NEXT.search(response.headers.get("link", ""))
    return match.group(1) if match else None
