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
    issued: list[str]


def _b64url(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenRegistry]:
    """Distribution with ``auth: token``: clients must fetch a signed JWT from the realm.

    The issuer is a small real token service (RS256 JWTs with an x5c chain the registry
    verifies against its root bundle); it grants the requested actions to one user.
    """
    import base64
    import datetime as dt
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs, urlparse

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa
    from cryptography.x509.oid import NameOID

    program = shutil.which("docker-registry")
    if program is None:
        pytest.skip("docker-registry is not installed")
    root = tmp_path_factory.mktemp("tokenreg")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "shipyard test token issuer")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (root / "root.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
    user, password = "bob", "tok-" + uuid.uuid4().hex
    service, issuer = "shipyard-test-registry", "shipyard-test-issuer"
    issued: list[str] = []

    class Issuer(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
            if self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            query = parse_qs(urlparse(self.path).query)
            access = []
            for scope in query.get("scope", []):
                kind, _, rest = scope.partition(":")
                repo, _, actions = rest.rpartition(":")
                access.append({"type": kind, "name": repo, "actions": actions.split(",")})
            t = int(time.time())
            header = {"typ": "JWT", "alg": "RS256", "x5c": [x5c]}
            claims = {
                "iss": issuer,
                "sub": user,
                "aud": service,
                "exp": t + 300,
                "nbf": t - 10,
                "iat": t,
                "jti": uuid.uuid4().hex,
                "access": access,
            }
            signing_input = (
                _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
            )
            signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
            token = signing_input + "." + _b64url(signature)
            issued.append(",".join(query.get("scope", [])))
            body = json.dumps({"token": token, "access_token": token, "expires_in": 300}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Issuer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = free_port()
    (root / "config.yml").write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'storage'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
        "auth:\n  token:\n"
        f"    realm: http://127.0.0.1:{server.server_address[1]}/token\n"
        f"    service: {service}\n    issuer: {issuer}\n"
        f"    rootcertbundle: {root / 'root.pem'}\n"
    )
    log = (root / "registry.log").open("w")
    proc = subprocess.Popen([program, "serve", str(root / "config.yml")], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 20
        while not http_ok(f"http://127.0.0.1:{port}/v2/"):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("token-auth registry did not start")
            time.sleep(0.1)
        yield TokenRegistry(f"127.0.0.1:{port}", user, password, issued)
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
        server.shutdown()
        server.server_close()
