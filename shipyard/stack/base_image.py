"""A tiny base image for app builds on machines that cannot reach a public registry.

No base image can be pulled here, so the stack makes one: ``FROM scratch`` plus the
static busybox binary and its applet symlinks (``sh``, ``cat``, ``echo`` ...), enough
for Dockerfile ``RUN`` steps. It is pushed once to the stack registry as
``<registry>/shipyard/busybox:1`` so app Dockerfiles can ``FROM`` it; later calls only
ask the registry whether the tag is there (one HTTP round trip).
"""

from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path
from typing import Any

import httpx

from shipyard.core.errors import ConfigError, PermanentError, TransientError

BASE_REPOSITORY = "shipyard/busybox"
BASE_TAG = "1"
BUSYBOX_PATHS = ("/bin/busybox", "/usr/bin/busybox")
_MANIFEST_ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)

DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
LABEL org.opencontainers.image.title="shipyard busybox base"
CMD ["/bin/sh"]
"""


def base_image_ref(registry: str) -> str:
    """The reference app Dockerfiles use: ``<registry>/shipyard/busybox:1``."""
    return f"{registry}/{BASE_REPOSITORY}:{BASE_TAG}"


def _find_busybox() -> Path:
    for candidate in BUSYBOX_PATHS:
        path = Path(candidate)
        if path.is_file():
            return path
    found = shutil.which("busybox")
    if found:
        return Path(found)
    raise ConfigError("no static busybox binary found", hint="apt-get install busybox-static")


def _context_tar(busybox: Path) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = DOCKERFILE.encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        tar.add(str(busybox), arcname="busybox")
    buf.seek(0)
    return buf


def _registry_has(registry: str, timeout: float = 5.0) -> bool:
    url = f"http://{registry}/v2/{BASE_REPOSITORY}/manifests/{BASE_TAG}"
    try:
        response = httpx.head(url, headers={"Accept": _MANIFEST_ACCEPT}, timeout=timeout)
    except httpx.HTTPError as exc:
        raise TransientError(f"registry {registry} unreachable: {exc}") from exc
    return response.status_code == 200


def ensure_base_image(docker_client: Any, registry: str) -> str:
    """Make sure ``<registry>/shipyard/busybox:1`` exists there; return that reference.

    Cheap when present (one HEAD request); otherwise builds it through the Docker
    Engine API given and pushes it.
    """
    ref = base_image_ref(registry)
    if _registry_has(registry):
        return ref
    context = _context_tar(_find_busybox())
    try:
        docker_client.images.build(fileobj=context, custom_context=True, tag=ref, rm=True)
        output = docker_client.images.push(f"{registry}/{BASE_REPOSITORY}", tag=BASE_TAG)
    except Exception as exc:
        raise PermanentError(f"could not build the base image {ref}: {exc}") from exc
    if '"error"' in str(output):
        raise PermanentError(f"could not push the base image {ref}: {output}")
    return ref
