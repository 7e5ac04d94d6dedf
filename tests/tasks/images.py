"""Fixtures for the build -> scan -> push tests: real engine, real registries, real git.

Import the fixtures you need into a test module. Everything runs against the session
stack (podman's Docker API, the Distribution registry, the git daemon); the
authenticated registry and moto's ECR are extra real servers started here on free
loopback ports, because the stack's own registry has no auth.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import pytest
from git import Repo

from blocks.docker import DockerHost
from shipyard.stack.base_image import ensure_base_image
from shipyard.stack.probes import free_port, http_ok
from tests.fixtures.services import Stack
from tests.fixtures.token_registry import TokenIssuer, start_token_registry


@dataclass(frozen=True)
class AppRepo:
    """A source repo on the stack's git daemon and the commit to build."""

    url: str
    commit: str
    bare: Path


@pytest.fixture(scope="session")
def docker_host(stack: Stack) -> DockerHost:
    """The stack's Docker Engine API as a block."""
    return DockerHost(base_url=stack.docker_host)


@pytest.fixture(scope="session")
def base_image(stack: Stack, docker_host: DockerHost) -> str:
    """``<registry>/shipyard/busybox:1``, built and pushed once per session."""
    return ensure_base_image(docker_host.get_client(), stack.registry)


@pytest.fixture
def make_app_repo(stack: Stack, tmp_path: Path) -> Callable[[dict[str, str]], AppRepo]:
    """Create a repo with ``files`` on the git daemon; return its URL and commit."""

    def make(files: dict[str, str]) -> AppRepo:
        name = f"app-{uuid.uuid4().hex[:8]}.git"
        bare = stack.git_root / name
        Repo.init(bare, bare=True).close()
        work = tmp_path / name.removesuffix(".git")
        repo = Repo.init(work)
        for rel, text in files.items():
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            (work / rel).write_text(text)
        repo.index.add(list(files))
        commit = repo.index.commit("app source").hexsha
        repo.create_remote("origin", str(bare))
        repo.git.push("origin", "HEAD:refs/heads/main")
        repo.close()
        return AppRepo(url=f"{stack.git_url}/{name}", commit=commit, bare=bare)

    return make


def unique_repository(stack: Stack, name: str) -> str:
    """A fresh image repository on the stack registry (tests never share tags)."""
    return f"{stack.registry}/test/{name}-{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class AuthRegistry:
    """A second Distribution registry with htpasswd (basic) auth."""

    address: str
    username: str
    password: str


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthRegistry]:
    """`docker-registry serve` with an htpasswd user, on a free loopback port."""
    program = shutil.which("docker-registry")
    if program is None:
        pytest.skip("docker-registry is not installed")
    root = tmp_path_factory.mktemp("authreg")
    port = free_port()
    password = "reg-" + uuid.uuid4().hex
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    (root / "htpasswd").write_text(f"alice:{hashed}\n")
    (root / "config.yml").write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'storage'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
        f"auth:\n  htpasswd:\n    realm: shipyard-test\n    path: {root / 'htpasswd'}\n"
    )
    log = (root / "registry.log").open("w")
    proc = subprocess.Popen([program, "serve", str(root / "config.yml")], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 20
        while not http_ok(f"http://127.0.0.1:{port}/v2/"):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("authenticated registry did not start")
            time.sleep(0.1)
        yield AuthRegistry(f"127.0.0.1:{port}", "alice", password)
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


@pytest.fixture(scope="session")
def moto_ecr() -> Iterator[str]:
    """A moto server (its ECR API) on a free port; yields the endpoint URL."""
    program = Path(sys.executable).with_name("moto_server")
    port = free_port()
    proc = subprocess.Popen(
        [str(program), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not http_ok(f"{url}/moto-api/"):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("moto_server did not start")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


APP_DOCKERFILE = """\
FROM {base}
ARG GREETING=hi
RUN echo "$GREETING" > /greeting && cat /greeting
COPY app.txt /app/app.txt
RUN wc -c /app/app.txt
CMD ["cat", "/app/app.txt"]
"""


@dataclass(frozen=True)
class TokenRegistry:
    """A Distribution registry with token auth, and the issuer that signs its tokens."""

    address: str
    username: str
    password: str
    issuer: TokenIssuer

    @property
    def issued(self) -> int:
        """How many tokens the issuer has handed out so far."""
        return self.issuer.issued


@pytest.fixture(scope="session")
def token_registry() -> Iterator[TokenRegistry]:
    """Distribution with ``auth: token``: clients must fetch a signed JWT from the realm
    (the shared real-registry-plus-issuer from tests/fixtures/token_registry.py)."""
    user, password = "bob", "tok-" + uuid.uuid4().hex
    registry, issuer, server = start_token_registry((user, password))
    try:
        yield TokenRegistry(registry.host, user, password, issuer)
    finally:
        server.shutdown()
        registry.stop()
        server.shutdown()
        server.server_close()
