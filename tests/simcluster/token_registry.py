"""A real Distribution registry behind bearer-token auth, with a minimal token issuer.

The registry (real) challenges with ``WWW-Authenticate: Bearer realm=...`` and verifies
RS256 JWTs against a CA bundle; the issuer here checks basic credentials and signs
tokens carrying the requested pull/push access, as docker_auth would.
"""

from __future__ import annotations

import base64
import datetime as dt
import http.server
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from simcluster.testing import LocalRegistry, free_port

SERVICE = "simcluster-registry"
ISSUER = "simcluster-token-issuer"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenIssuer:
    """Signs registry tokens for one user; ``issued`` counts the tokens handed out."""

    key: rsa.RSAPrivateKey
    cert_der: bytes
    user: tuple[str, str]
    issued: int = 0

    def token(self, scope: str) -> str:
        access = []
        if scope:
            kind, name, actions = scope.split(":", 2)
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(self.cert_der).decode()]}
        claims = {
            "iss": ISSUER,
            "sub": self.user[0],
            "aud": SERVICE,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        self.issued += 1
        return f"{signing_input}.{_b64(signature)}"


def _issuer_server(issuer: TokenIssuer, port: int) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            expected = "Basic " + base64.b64encode(":".join(issuer.user).encode()).decode()
            if self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.end_headers()
                return
            scope = parse_qs(urlparse(self.path).query).get("scope", [""])[0]
            body = json.dumps({"token": issuer.token(scope)}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def start_token_registry(
    user: tuple[str, str],
) -> tuple[LocalRegistry, TokenIssuer, http.server.ThreadingHTTPServer]:
    """A registry requiring bearer tokens from an issuer that accepts ``user``."""
    root = Path(tempfile.mkdtemp(prefix="simreg-token-"))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (root / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    issuer = TokenIssuer(key, cert.public_bytes(serialization.Encoding.DER), user)
    token_port, port = free_port(), free_port()
    server = _issuer_server(issuer, token_port)
    (root / "config.yml").write_text(
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {root / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
        f"auth:\n  token:\n    realm: http://127.0.0.1:{token_port}/token\n"
        f"    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {root / 'ca.pem'}\n"
    )
    binary = shutil.which("docker-registry")
    assert binary is not None
    proc = subprocess.Popen(
        [binary, "serve", str(root / "config.yml")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ},
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.05)
    return LocalRegistry(f"127.0.0.1:{port}", proc, root), issuer, server


def push_with_token(registry: LocalRegistry, issuer: TokenIssuer, repository: str, tag: str) -> str:
    """Push through the registry's token auth (a fresh push token for the repository)."""
    token = issuer.token(f"repository:{repository}:pull,push")
    pusher = LocalRegistry(registry.host, registry.process, registry.root)
    return pusher.push_image(repository, tag, headers={"Authorization": f"Bearer {token}"})
