"""Image "pulls" for the simulated kubelet: a manifest HEAD against the real registry.

The kubelet only needs to know whether an image exists and its digest; it asks the
registry named in the image reference over the OCI distribution API, with credentials
from the pod's imagePullSecrets, following a bearer-token challenge when the registry
sends one. Results that succeed are cached for a while.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import re
import time
from dataclasses import dataclass
from typing import Any

import httpx

from simcluster.config import SimConfig

JSON = dict[str, Any]

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)


@dataclass(frozen=True)
class ImageRef:
    """A parsed image reference; ``registry`` is None when the reference names none."""

    registry: str | None
    repository: str
    reference: str

    @property
    def is_digest(self) -> bool:
        return self.reference.startswith("sha256:")


def parse_image(image: str) -> ImageRef:
    """Split ``host:port/repo/name:tag@digest`` the way container runtimes do."""
    name, _, digest = image.partition("@")
    tag = ""
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, _, tag = name.rpartition(":")
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        registry: str | None = first
        repository = rest
    else:
        registry = None
        repository = name if "/" in name else f"library/{name}"
    return ImageRef(registry, repository, digest or tag or "latest")


@dataclass(frozen=True)
class PullResult:
    """Whether the image exists; ``image_id`` is ``<repo>@<digest>`` when it does."""

    ok: bool
    image_id: str = ""
    message: str = ""


def _is_loopback(host: str) -> bool:
    hostname = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    hostname = hostname.strip("[]")
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def credentials_from_secret(secret: JSON) -> dict[str, tuple[str, str]]:
    """Registry host -> (username, password) from a kubernetes.io/dockerconfigjson Secret."""
    data = secret.get("data") or {}
    raw = data.get(".dockerconfigjson") or data.get(".dockercfg")
    if not raw:
        return {}
    try:
        doc = json.loads(base64.b64decode(raw))
    except (ValueError, TypeError):
        return {}
    auths = doc.get("auths", doc) if isinstance(doc, dict) else {}
    out: dict[str, tuple[str, str]] = {}
    for host, entry in auths.items():
        if not isinstance(entry, dict):
            continue
        user, password = entry.get("username"), entry.get("password")
        if not (user and password) and entry.get("auth"):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                continue
        if user and password:
            key = re.sub(r"^https?://", "", host).split("/", 1)[0]
            out[key] = (str(user), str(password))
    return out


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, params = header.partition(" ")
    return scheme.lower(), dict(re.findall(r'(\w+)="([^"]*)"', params))


class ImagePuller:
    """Checks images against registries, with a cache of successful checks."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self._cache: dict[tuple[str, str], tuple[float, PullResult]] = {}
        self.requests = 0

    async def check(self, image: str, creds: dict[str, tuple[str, str]]) -> PullResult:
        """Resolve ``image``: present (with digest) or the reason it cannot be pulled."""
        ref = parse_image(image)
        if not self.config.pull_images or (
            ref.registry is None and self.config.assume_present_without_registry
        ):
            digest = "sha256:" + hashlib.sha256(image.encode()).hexdigest()
            host = ref.registry or "docker.io"
            return PullResult(
                True, f"{host}/{ref.repository}@{ref.reference if ref.is_digest else digest}"
            )
        host = ref.registry or "registry-1.docker.io"
        auth = creds.get(host)
        key = (image, f"{auth[0]}:{hashlib.sha256(auth[1].encode()).hexdigest()}" if auth else "")
        cached = self._cache.get(key)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        result = await self._head(ref, host, auth, image)
        if result.ok:
            self._cache[key] = (time.monotonic() + self.config.pull_cache_seconds, result)
        return result

    async def _head(
        self, ref: ImageRef, host: str, auth: tuple[str, str] | None, image: str
    ) -> PullResult:
        scheme = "http" if _is_loopback(host) else "https"
        url = f"{scheme}://{host}/v2/{ref.repository}/manifests/{ref.reference}"
        headers = {"Accept": MANIFEST_TYPES}
        prefix = f'failed to pull and unpack image "{image}": failed to resolve reference "{image}"'
        self.requests += 1
        try:
            async with httpx.AsyncClient(
                timeout=self.config.pull_timeout, follow_redirects=True
            ) as client:
                resp = await client.head(url, headers=headers)
                if resp.status_code == 401:
                    scheme_name, params = _challenge(resp.headers.get("www-authenticate", ""))
                    if scheme_name == "bearer" and params.get("realm"):
                        query = {k: v for k, v in params.items() if k in ("service", "scope")}
                        query.setdefault("scope", f"repository:{ref.repository}:pull")
                        token_resp = await client.get(params["realm"], params=query, auth=auth)
                        if token_resp.status_code != 200:
                            return PullResult(
                                False,
                                message=f"{prefix}: failed to authorize: failed to fetch token: "
                                f"{token_resp.status_code} {token_resp.reason_phrase}",
                            )
                        body = token_resp.json()
                        token = body.get("token") or body.get("access_token") or ""
                        resp = await client.head(
                            url, headers={**headers, "Authorization": f"Bearer {token}"}
                        )
                    elif auth is not None:
                        resp = await client.head(url, headers=headers, auth=auth)
                if resp.status_code == 401:
                    return PullResult(
                        False,
                        message=f"{prefix}: pull access denied, repository does not exist or may "
                        "require authorization: authorization failed: 401 Unauthorized",
                    )
                if resp.status_code == 404:
                    return PullResult(False, message=f"{prefix}: {image}: not found")
                if resp.status_code != 200:
                    return PullResult(
                        False,
                        message=f"{prefix}: unexpected status from HEAD request to {url}: "
                        f"{resp.status_code}",
                    )
                digest = resp.headers.get("docker-content-digest", "")
                if not digest:
                    full = await client.get(url, headers=resp.request.headers)
                    digest = "sha256:" + hashlib.sha256(full.content).hexdigest()
        except httpx.HTTPError as exc:
            return PullResult(
                False,
                message=f'{prefix}: failed to do request: Head "{url}": '
                f"{type(exc).__name__}: {exc}",
            )
        return PullResult(True, f"{host}/{ref.repository}@{digest}")
