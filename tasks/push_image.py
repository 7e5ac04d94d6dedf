"""Push step: send the built tags to the registry and record the immutable digest.

Every later step deploys ``repository@sha256:...``, never a mutable tag, so the result
of a push is that reference. Credentials come from blocks: :class:`RegistryCredentials`
for any OCI registry (basic or token auth), :class:`EcrRegistry` for AWS ECR (a login
token from ``get_authorization_token``; the repository is created on first push with
scan-on-push and immutable tags), and optionally a Harbor project is created through
Harbor's API. A refused login (401/403) is permanent and names the registry.

No Prefect here: the tasks are :func:`tasks.steps.image.push_image` and
:func:`tasks.steps.image.login_ecr`. Credentials are anything shaped like
:class:`~shipyard.core.registry.RegistryAccess`; an ECR login yields a
:class:`~shipyard.core.registry.RegistryAuth`.
"""

from __future__ import annotations

import base64
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Protocol

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator

from shipyard.core.engine import DockerEngine, DockerEngineAccess
from shipyard.core.errors import (
    ConfigError,
    PermanentError,
    ShipyardError,
    TransientError,
    is_transient,
)
from shipyard.core.oci import split_reference, split_repository
from shipyard.core.redact import redact, register_secret
from shipyard.core.registry import RegistryAccess, RegistryAuth, engine_auth, open_client

__all__ = [
    "EcrAccess",
    "PushImageConfig",
    "PushImageResult",
    "ecr_login",
    "ensure_ecr_repository",
    "ensure_harbor_project",
    "prepare_ecr",
    "run_push",
]

Logger = logging.Logger | logging.LoggerAdapter[Any]

_DIGEST = re.compile(r"digest:\s*(sha256:[0-9a-f]{64})")
_AUTH_MARKERS = ("unauthorized", "authentication required", "denied", "401", "403", "forbidden")
_TRANSIENT_MARKERS = (
    "connection refused",
    "connection reset",
    "timeout",
    "timed out",
    "eof",
    "502",
    "503",
    "504",
    "429",
    "too many requests",
    "no route to host",
)


class PushImageConfig(BaseModel):
    """What to push: a repository and the local tags to send."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    repository: str = Field(description="Image repository without tag (registry host first).")
    tags: list[str] = Field(min_length=1, description="Local tags to push (commit SHA first).")
    harbor_api_url: str | None = Field(
        None,
        description="Harbor base URL (https://harbor.example.com): create the project if missing.",
    )

    @field_validator("repository")
    @classmethod
    def _no_tag(cls, value: str) -> str:
        ref = split_reference(value)
        if ref.tag is not None or ref.digest is not None:
            raise ValueError(f"repository {value!r} must have no tag or digest")
        return value


class EcrAccess(Protocol):
    """What the push needs of an ECR registry block: a client and repository defaults."""

    def get_ecr_client(self) -> Any:
        """A boto3 ECR client."""
        ...

    @property
    def registry_id(self) -> str | None:
        """AWS account ID; None for the caller's."""
        ...

    @property
    def scan_on_push(self) -> bool:
        """Create repositories with scan-on-push."""
        ...

    @property
    def immutable_tags(self) -> bool:
        """Create repositories with IMMUTABLE tags."""
        ...

    @property
    def insecure(self) -> bool:
        """Plain HTTP to the registry (tests only)."""
        ...


class PushImageResult(BaseModel):
    """Where the image went and its immutable reference."""

    repository: str
    tags: list[str]
    digest: str = Field(description="sha256:... of the manifest the registry stored.")
    reference: str = Field(description="repository@digest: what every later step deploys.")
    created_repository: bool = Field(False, description="ECR repo / Harbor project created.")
    duration_seconds: float = 0.0


# --- pure core ---------------------------------------------------------------------------


class PushLog:
    """Reads the engine's push stream for the pushed digest and any error."""

    def __init__(self) -> None:
        self.digest: str | None = None
        self.error: str | None = None
        self.lines: list[str] = []

    def feed(self, event: Mapping[str, Any]) -> None:
        """Consume one decoded push event."""
        status = str(event.get("status") or "")
        if status:
            self.lines.append(status)
            match = _DIGEST.search(status)
            if match:
                self.digest = match.group(1)
        aux = event.get("aux")
        if isinstance(aux, Mapping) and str(aux.get("Digest", "")).startswith("sha256:"):
            self.digest = str(aux["Digest"])
        if event.get("error") or event.get("errorDetail"):
            detail = event.get("errorDetail") or {}
            self.error = str(detail.get("message") or event.get("error")).strip()


def classify_push_error(message: str, registry: str) -> ShipyardError:
    """A refused login is permanent and names the registry; network trouble is transient."""
    text = redact(" ".join(message.split()))
    lower = text.lower()
    if any(m in lower for m in _AUTH_MARKERS):
        return PermanentError(
            f"registry {registry} refused the push (authentication/authorization): {text}",
            hint="check the registry credentials block",
        )
    if any(m in lower for m in _TRANSIENT_MARKERS):
        return TransientError(f"push to {registry} failed: {text}")
    return PermanentError(f"push to {registry} failed: {text}")


def decode_ecr_token(auth: Mapping[str, Any]) -> tuple[str, str, str]:
    """``(registry host, user, password)`` from one ECR ``authorizationData`` entry."""
    raw = base64.b64decode(str(auth["authorizationToken"])).decode()
    user, sep, password = raw.partition(":")
    if not sep:
        raise PermanentError("ECR returned a malformed authorization token")
    host = re.sub(r"^https?://", "", str(auth.get("proxyEndpoint", ""))).rstrip("/")
    return host, user, password


# --- I/O edges ----------------------------------------------------------------------------


def _aws_call(what: str, fn: Any, **kwargs: Any) -> Any:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return fn(**kwargs)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if is_transient(exc) or code in {"ThrottlingException", "ServerException"}:
            raise TransientError(f"ECR {what}: {code}: {exc}") from exc
        raise PermanentError(f"ECR {what} refused: {code}: {exc}") from exc
    except BotoCoreError as exc:
        if is_transient(exc):
            raise TransientError(f"ECR {what}: {exc}") from exc
        raise PermanentError(f"ECR {what}: {exc}") from exc


def ecr_login(ecr_client: Any, registry_id: str | None = None) -> RegistryAuth:
    """Registry credentials from ``get_authorization_token`` (valid for 12 hours)."""
    kwargs = {"registryIds": [registry_id]} if registry_id else {}
    answer = _aws_call("get_authorization_token", ecr_client.get_authorization_token, **kwargs)
    data = answer.get("authorizationData") or []
    if not data:
        raise PermanentError("ECR returned no authorization data")
    host, user, password = decode_ecr_token(data[0])
    register_secret(password)
    return RegistryAuth.for_registry(host, username=user, password=password)


def ensure_ecr_repository(
    ecr_client: Any,
    name: str,
    *,
    scan_on_push: bool = True,
    immutable_tags: bool = True,
    registry_id: str | None = None,
) -> bool:
    """Create the ECR repository ``name`` unless it exists; True when it was created."""
    from botocore.exceptions import ClientError

    ids = {"registryId": registry_id} if registry_id else {}
    try:
        ecr_client.describe_repositories(repositoryNames=[name], **ids)
        return False
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "RepositoryNotFoundException":
            _aws_call("describe_repositories", _reraise, exc=exc)
    try:
        ecr_client.create_repository(
            repositoryName=name,
            imageTagMutability="IMMUTABLE" if immutable_tags else "MUTABLE",
            imageScanningConfiguration={"scanOnPush": scan_on_push},
            **ids,
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "RepositoryAlreadyExistsException":
            return False  # created concurrently by another delivery
        _aws_call("create_repository", _reraise, exc=exc)
    return True


def _reraise(exc: BaseException) -> None:
    raise exc


def ensure_harbor_project(api_url: str, project: str, credentials: RegistryAccess) -> bool:
    """Create Harbor project ``project`` (private) unless it exists; True when created."""
    auth = None
    if credentials.username:
        auth = (credentials.username, register_secret(credentials.password))
    base = api_url.rstrip("/") + "/api/v2.0/projects"
    try:
        with httpx.Client(auth=auth, timeout=15.0, verify=not credentials.insecure) as http:
            head = http.head(base, params={"project_name": project})
            if head.status_code == 200:
                return False
            if head.status_code not in (404,):
                _harbor_status(head, api_url)
            created = http.post(
                base, json={"project_name": project, "metadata": {"public": "false"}}
            )
            if created.status_code == 409:
                return False
            _harbor_status(created, api_url)
    except httpx.HTTPError as exc:
        raise TransientError(f"Harbor API {api_url} unreachable: {exc}") from exc
    return True


def _harbor_status(response: httpx.Response, api_url: str) -> None:
    status = response.status_code
    if status < 400:
        return
    if status in (401, 403):
        raise PermanentError(f"Harbor {api_url} refused project creation (HTTP {status})")
    if status == 429 or status >= 500:
        raise TransientError(f"Harbor {api_url} answered HTTP {status}")
    raise PermanentError(f"Harbor {api_url} answered HTTP {status}: {response.text[:200]}")


def prepare_ecr(ecr: EcrAccess, repository_path: str) -> tuple[RegistryAuth, bool]:
    """Log in to ECR and make sure the repository exists; ``(credentials, created)``."""
    client = ecr.get_ecr_client()
    created = ensure_ecr_repository(
        client,
        repository_path,
        scan_on_push=ecr.scan_on_push,
        immutable_tags=ecr.immutable_tags,
        registry_id=ecr.registry_id,
    )
    credentials = ecr_login(client, ecr.registry_id)
    if ecr.insecure:
        credentials = replace(credentials, insecure=True)
    return credentials, created


def login_ecr_for(ecr: EcrAccess, repository: str) -> RegistryAuth:
    """ECR login (and repository creation) for the image ``repository``."""
    return prepare_ecr(ecr, split_repository(repository)[1])[0]


def run_push(
    config: PushImageConfig,
    docker_host: DockerEngineAccess | None = None,
    registry: RegistryAccess | None = None,
    ecr: EcrAccess | None = None,
    *,
    log: Logger | None = None,
) -> PushImageResult:
    """Push every tag; return the registry's digest as ``repository@sha256:...``.

    ``registry`` defaults to anonymous access, replaced by an ECR login when ``ecr`` is
    given; progress goes to ``log`` (a run logger, say).
    """
    import docker
    import requests
    from docker.errors import APIError, DockerException

    log = log or logging.getLogger("shipyard.push")
    started = time.monotonic()
    host, path = split_repository(config.repository)
    created = False
    if ecr is not None:
        registry, created = prepare_ecr(ecr, path)
    if registry is None:
        registry = RegistryAuth.for_registry(host)
    if registry.registry != host:
        raise ConfigError(f"credentials are for {registry.registry} but the image goes to {host}")
    if config.harbor_api_url:
        created = ensure_harbor_project(config.harbor_api_url, path.split("/", 1)[0], registry)
    client = (docker_host or DockerEngine()).get_client()
    auth = engine_auth(registry)
    headers = {"X-Registry-Auth": docker.auth.encode_header(auth)} if auth else {}
    for tag in config.tags:
        params = {"tag": tag}
        if registry.insecure:
            params["tlsVerify"] = "false"  # podman's compat API; Docker ignores it
        push_log = PushLog()
        try:
            response = client.api._post(
                client.api._url("/images/{0}/push", config.repository),
                params=params,
                headers=headers,
                stream=True,
            )
            client.api._raise_for_status(response)
            for event in client.api._stream_helper(response, decode=True):
                push_log.feed(event)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise TransientError(f"Docker Engine API failed during the push: {exc}") from exc
        except APIError as exc:
            if getattr(exc, "status_code", None) == 404:
                raise PermanentError(
                    f"no local image {config.repository}:{tag} to push (build it first)"
                ) from None
            raise classify_push_error(str(exc.explanation or exc), host) from None
        except DockerException as exc:
            raise TransientError(f"Docker Engine API failed during the push: {exc}") from exc
        if push_log.error:
            raise classify_push_error(push_log.error, host)
        log.info("pushed %s:%s %s", config.repository, tag, push_log.digest or "")
    with open_client(registry) as api:
        found = api.manifest(path, config.tags[0])
    if found is None:
        raise TransientError(f"{config.repository}:{config.tags[0]} missing right after the push")
    digest = found[0]  # the registry's word, whatever the engine printed
    log.info("image reference %s@%s", config.repository, digest)
    return PushImageResult(
        repository=config.repository,
        tags=list(config.tags),
        digest=digest,
        reference=f"{config.repository}@{digest}",
        created_repository=created,
        duration_seconds=time.monotonic() - started,
    )
