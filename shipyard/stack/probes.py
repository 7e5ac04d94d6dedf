"""Health probes: each answers "is this service ready to serve?" without raising."""

from __future__ import annotations

import socket

import httpx


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """True when GET ``url`` answers with a status below 500."""
    try:
        response = httpx.get(url, timeout=timeout)
    except httpx.HTTPError:
        return False
    return response.status_code < 500


def unix_http_ok(socket_path: str, path: str = "/_ping", timeout: float = 1.0) -> bool:
    """True when an HTTP server on a unix socket answers ``path`` with 2xx."""
    try:
        transport = httpx.HTTPTransport(uds=socket_path)
        with httpx.Client(transport=transport, timeout=timeout) as client:
            return client.get(f"http://localhost{path}").is_success
    except (httpx.HTTPError, OSError):
        return False


def tcp_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
