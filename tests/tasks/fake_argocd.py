"""A small stateful fake of Argo CD's REST API, backed by the simulated cluster.

Serves the two endpoints the REST driver uses, in Argo CD's wire format:
``POST /api/v1/applications/{name}/sync`` (writes ``operation`` on the Application
resource, as the real API server does, or answers 400 "another operation is already in
progress") and ``GET /api/v1/applications/{name}`` (the Application as JSON). The
Argo CD-like controller in the simulator does the actual sync. Bearer token required.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from shipyard.core.kube import KubeClient

GROUP_PATH = "/apis/argoproj.io/v1alpha1"


class FakeArgoCD:
    """Run with ``start()``; ``url``; ``requests`` counts calls per (method, path)."""

    def __init__(self, kube: KubeClient, token: str, default_namespace: str = "argocd") -> None:
        self.kube, self.token, self.default_namespace = kube, token, default_namespace
        self.requests: list[tuple[str, str]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _route(self, method: str) -> None:
                parts = urlsplit(self.path)
                fake.requests.append((method, parts.path))
                if self.headers.get("Authorization") != f"Bearer {fake.token}":
                    self._send(
                        401, {"error": "invalid session", "code": 16, "message": "invalid session"}
                    )
                    return
                query = parse_qs(parts.query)
                segs = [s for s in parts.path.split("/") if s]
                if len(segs) < 4 or segs[:3] != ["api", "v1", "applications"]:
                    self._send(404, {"error": "not found", "code": 5, "message": "not found"})
                    return
                name = segs[3]
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}") if length else {}
                ns = (
                    query.get("appNamespace")
                    or [body.get("appNamespace") or fake.default_namespace]
                )[0]
                path = f"{GROUP_PATH}/namespaces/{ns}/applications/{name}"
                app = fake.kube.get(path)
                if app is None:
                    msg = f'applications.argoproj.io "{name}" not found'
                    self._send(404, {"error": msg, "code": 5, "message": msg})
                    return
                if method == "GET" and len(segs) == 4:
                    self._send(200, app)
                elif method == "POST" and segs[4:] == ["sync"]:
                    if app.get("operation"):
                        msg = "another operation is already in progress"
                        self._send(400, {"error": msg, "code": 9, "message": msg})
                        return
                    sync: dict[str, Any] = {"prune": bool(body.get("prune"))}
                    if body.get("revision"):
                        sync["revision"] = body["revision"]
                    op = {
                        "sync": sync,
                        "initiatedBy": {"username": "admin"},
                        "info": body.get("infos") or [],
                    }
                    patched = fake.kube.merge_patch(
                        path,
                        {
                            "metadata": {"resourceVersion": app["metadata"]["resourceVersion"]},
                            "operation": op,
                        },
                    )
                    self._send(200, patched)
                else:
                    self._send(404, {"error": "not found", "code": 5, "message": "not found"})

            def do_GET(self) -> None:
                self._route("GET")

            def do_POST(self) -> None:
                self._route("POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> FakeArgoCD:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
