"""A whole simulated cluster: store, admission, controllers, kubelet and HTTP server.

:class:`SimCluster` runs on its own event loop, either in the foreground (the CLI) or
on a background thread (tests, the demo), bound to a loopback port (0 = any free one).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn

from simcluster import admission
from simcluster import kubeconfig as kubeconfig_mod
from simcluster.app import SimApp
from simcluster.config import SimConfig
from simcluster.controllers.base import Controller
from simcluster.controllers.core import CrdRegistrar, GarbageCollector, NamespaceController
from simcluster.faults import FaultInjector
from simcluster.logs import LogStore
from simcluster.resources import ResourceRegistry
from simcluster.store import Store

log = logging.getLogger("simcluster")

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


class SimCluster:
    """The simulator; ``start()``/``stop()`` on a thread or ``serve()`` in the foreground."""

    def __init__(self, config: SimConfig | None = None, host: str = "127.0.0.1", port: int = 0):
        self.config = config or SimConfig()
        self.host = host
        self.registry = ResourceRegistry()
        self.store = Store(self.registry, admission.admit, history=self.config.history)
        self.faults = FaultInjector()
        self.logs = LogStore()
        self.app = SimApp(self.store, self.config, self.faults, self.logs)
        self.store.subscribe(CrdRegistrar(self.store))
        self.controllers: list[Controller] = self._controllers()
        for c in self.controllers:
            self.store.subscribe(c.on_event)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit this: without it, Nagle plus delayed ACKs add
        # ~40 ms to every keep-alive response (headers and body are separate writes).
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock.bind((host, port))
        self.port = self._sock.getsockname()[1]
        self.app.server_address = f"{host}:{self.port}"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._bootstrap()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _controllers(self) -> list[Controller]:
        from simcluster.controllers import workloads
        from simcluster.kubelet import Kubelet
        from simcluster.scheduler import Scheduler
        from simcluster.serviceaccounts import ServiceAccountController

        out: list[Controller] = [
            ServiceAccountController(self.store, self.config),
            NamespaceController(self.store, self.config),
            Scheduler(self.store, self.config),
            GarbageCollector(self.store, self.config),
        ]
        out += workloads.all_controllers(self.store, self.config)
        out.append(Kubelet(self.store, self.config, self.logs))
        return out

    def _bootstrap(self) -> None:
        ns_rt = self.registry.by_key("", "namespaces")
        node_rt = self.registry.by_key("", "nodes")
        assert ns_rt is not None and node_rt is not None
        for ns in SYSTEM_NAMESPACES:
            self.store.create(ns_rt, {"metadata": {"name": ns}}, manager="kube-apiserver")
        for i in range(max(1, self.config.nodes)):
            node = _node(f"sim-node-{i + 1}", i, self.config)
            created = self.store.create(node_rt, node, manager="kubelet")
            self.store.update(
                node_rt,
                {**created, "status": node["status"]},
                subresource="status",
                manager="kubelet",
            )

    # -- running ---------------------------------------------------------------------

    async def serve(self, ready: Any = None) -> None:
        """Serve until the uvicorn server is told to exit; call ``ready()`` once listening."""
        self._loop = asyncio.get_running_loop()
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_keep_alive=30,
            timeout_graceful_shutdown=1,
            http="h11",
            ws="none",
        )
        self._server = _Server(config, self.store.close_watches)
        tasks = [asyncio.create_task(c.run(), name=c.name) for c in self.controllers]
        serve_task = asyncio.create_task(self._server.serve(sockets=[self._sock]))
        while not self._server.started and not serve_task.done():
            await asyncio.sleep(0.01)
        if ready is not None:
            ready()
        self._ready.set()
        try:
            await serve_task
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            kubelet = self.controllers[-1]
            stop = getattr(kubelet, "shutdown", None)
            if stop is not None:
                await stop()

    def start(self, timeout: float = 10.0) -> SimCluster:
        """Run on a daemon thread; return once the server accepts connections."""
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self.serve()), name="simcluster", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("simulated cluster did not start")
        return self

    def request_stop(self) -> None:
        """Ask the server to exit (safe from any thread)."""
        if self._server is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self.store.close_watches)
            self._server.should_exit = True

    def stop(self, timeout: float = 10.0) -> None:
        self.request_stop()
        if self._thread is not None:
            self._thread.join(timeout)

    def call(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` on the cluster's loop thread and return its result."""
        assert self._loop is not None
        fut: Any = asyncio.run_coroutine_threadsafe(_call(fn, *args), self._loop)
        return fut.result(10)

    def write_kubeconfig(self, path: Path) -> Path:
        return kubeconfig_mod.write(path, self.url)


class _Server(uvicorn.Server):
    """uvicorn, ending open watch streams first so shutdown is prompt and clean."""

    def __init__(self, config: uvicorn.Config, on_exit: Any) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Stop gracefully on SIGTERM/SIGINT (main thread only), without re-raising them.

        uvicorn's own handling re-raises the signal after shutdown, which would kill the
        process before the kubelet stops its process-backed pods.
        """
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.handle_exit, sig, None)
        try:
            yield
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    def handle_exit(self, sig: int, frame: Any) -> None:
        loop = asyncio.get_event_loop()
        loop.call_soon_threadsafe(self._on_exit)
        super().handle_exit(sig, frame)


async def _call(fn: Any, *args: Any) -> Any:
    return fn(*args)


def _node(name: str, index: int, config: SimConfig) -> dict[str, Any]:
    override = config.node_overrides.get(name) or {}
    resources = {
        "cpu": str(override.get("cpu", config.node_cpu)),
        "memory": str(override.get("memory", config.node_memory)),
        "pods": str(override.get("pods", config.node_pods)),
    }
    return {
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "node.kubernetes.io/instance-type": "simulated",
                **config.node_labels,
                **(override.get("labels") or {}),
            },
        },
        "spec": {"podCIDR": f"10.244.{index}.0/24"},
        "status": {
            "capacity": dict(resources),
            "allocatable": dict(resources),
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "kubelet is posting ready status (simulated)",
                }
            ],
            "addresses": [
                {"type": "InternalIP", "address": f"172.18.0.{index + 2}"},
                {"type": "Hostname", "address": name},
            ],
            "nodeInfo": {
                "machineID": f"sim{index:029d}",
                "systemUUID": f"00000000-0000-0000-0000-{index:012d}",
                "bootID": f"00000000-0000-0000-0001-{index:012d}",
                "kernelVersion": "6.1.0-simcluster",
                "osImage": "simcluster",
                "containerRuntimeVersion": "simcluster://1",
                "kubeletVersion": "v1.32.0-sim",
                "kubeProxyVersion": "v1.32.0-sim",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        },
    }
