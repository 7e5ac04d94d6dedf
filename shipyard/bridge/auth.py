"""Is a webhook from the registry we configured? One check per source, constant time.

Distribution, Harbor and ECR (API destination) send a static ``Authorization`` header
we configure, either the bare secret or ``Bearer <secret>``. GitHub signs the raw body
(``X-Hub-Signature-256: sha256=<hex HMAC-SHA256>``). Docker Hub can do neither, so its
webhook URL carries ``?token=<secret>``. Every comparison uses ``hmac.compare_digest``
so the response time does not reveal how much of a guess was right.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping


def _same(given: str, expected: bytes) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected)


def check_authorization(header: str, secret: bytes) -> bool:
    """``Authorization: <secret>`` or ``Authorization: Bearer <secret>``."""
    value = header.strip()
    scheme, _, rest = value.partition(" ")
    if scheme.lower() == "bearer" and rest:
        value = rest.strip()
    return bool(value) and _same(value, secret)


def github_signature(body: bytes, secret: bytes) -> str:
    """The ``X-Hub-Signature-256`` value GitHub sends for ``body``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def check_github_signature(header: str, body: bytes, secret: bytes) -> bool:
    """``X-Hub-Signature-256`` equals the HMAC-SHA256 of the raw body."""
    if not header.startswith("sha256="):
        return False
    return _same(header.strip().lower(), github_signature(body, secret).encode())


def check_token(token: str, secret: bytes) -> bool:
    """Docker Hub's ``?token=`` query parameter."""
    return bool(token) and _same(token, secret)


def authenticate(
    source: str,
    headers: Mapping[str, str],
    query: Mapping[str, str],
    body: bytes,
    secret: bytes,
) -> bool:
    """True when the request proves knowledge of ``secret`` the way ``source`` can."""
    if source == "ghcr":
        return check_github_signature(headers.get("x-hub-signature-256", ""), body, secret)
    if source == "dockerhub":
        return check_token(query.get("token", ""), secret)
    return check_authorization(headers.get("authorization", ""), secret)
