"""Process-backed pods: a container's command runs as a local subprocess.

Opt-in per pod or namespace (label or annotation ``sim.shipyard.dev/run-processes:
"true"``). The environment is the simulator's own (so ``python``/``prefect`` resolve)
overlaid with the container's env, with ``valueFrom`` secret/configMap/field
references resolved from the store. Output goes to the pod's log buffer.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import signal
import sys
import tempfile
from typing import Any

from simcluster.logs import LogStore
from simcluster.store import Store

JSON = dict[str, Any]
RUN_PROCESSES = "sim.shipyard.dev/run-processes"


class ConfigError(Exception):
    """The container cannot start (CreateContainerConfigError), e.g. a missing secret."""


def wants_processes(store: Store, pod: JSON) -> bool:
    """Whether ``pod`` (or its namespace) opted in to running real processes."""
    meta = pod["metadata"]
    for source in (meta.get("labels") or {}, meta.get("annotations") or {}):
        if source.get(RUN_PROCESSES) == "true":
            return True
    ns_rt = store.registry.by_key("", "namespaces")
    assert ns_rt is not None
    ns = store.try_get(ns_rt, "", meta.get("namespace", ""))
    if ns is None:
        return False
    ns_meta = ns["metadata"]
    return (ns_meta.get("labels") or {}).get(RUN_PROCESSES) == "true" or (
        ns_meta.get("annotations") or {}
    ).get(RUN_PROCESSES) == "true"


def _field_ref(pod: JSON, path: str) -> str:
    meta = pod["metadata"]
    m = re.match(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": (pod.get("spec") or {}).get("nodeName"),
        "spec.serviceAccountName": (pod.get("spec") or {}).get("serviceAccountName"),
        "status.podIP": (pod.get("status") or {}).get("podIP"),
        "status.hostIP": (pod.get("status") or {}).get("hostIP"),
    }
    return str(simple.get(path) or "")


def _lookup(store: Store, plural: str, ns: str, name: str, key: str | None, optional: bool) -> Any:
    rt = store.registry.by_key("", plural)
    assert rt is not None
    obj = store.try_get(rt, ns, name)
    singular = plural[:-1]
    if obj is None:
        if optional:
            return None
        raise ConfigError(f'{singular} "{name}" not found')
    data = dict(obj.get("data") or {})
    if plural == "secrets":
        data = {k: base64.b64decode(v).decode("utf-8", "replace") for k, v in data.items()}
    if key is None:
        return data
    if key not in data:
        if optional:
            return None
        raise ConfigError(
            f"couldn't find key {key} in "
            f"{'Secret' if plural == 'secrets' else 'ConfigMap'} {ns}/{name}"
        )
    return data[key]


def container_env(store: Store, pod: JSON, container: JSON) -> dict[str, str]:
    """The container's environment as the kubelet would build it (raises ConfigError)."""
    ns = pod["metadata"].get("namespace", "default")
    env: dict[str, str] = {}
    for src in container.get("envFrom") or []:
        prefix = src.get("prefix", "")
        for kind, plural in (("configMapRef", "configmaps"), ("secretRef", "secrets")):
            ref = src.get(kind)
            if ref:
                data = _lookup(
                    store, plural, ns, ref.get("name", ""), None, bool(ref.get("optional"))
                )
                for k, v in (data or {}).items():
                    env[prefix + k] = str(v)
    for var in container.get("env") or []:
        name = var.get("name", "")
        if "value" in var:
            env[name] = _expand(str(var["value"]), env)
            continue
        source = var.get("valueFrom") or {}
        value: Any = ""
        if "secretKeyRef" in source:
            r = source["secretKeyRef"]
            value = _lookup(
                store, "secrets", ns, r.get("name", ""), r.get("key", ""), bool(r.get("optional"))
            )
        elif "configMapKeyRef" in source:
            r = source["configMapKeyRef"]
            value = _lookup(
                store,
                "configmaps",
                ns,
                r.get("name", ""),
                r.get("key", ""),
                bool(r.get("optional")),
            )
        elif "fieldRef" in source:
            value = _field_ref(pod, source["fieldRef"].get("fieldPath", ""))
        if value is not None:
            env[name] = str(value)
        elif name not in env:
            env[name] = ""
    return env


def _expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion against earlier variables."""
    return re.sub(
        r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), value
    )


class ProcessRunner:
    """Starts, follows and stops container subprocesses for process-backed pods."""

    def __init__(self, logs: LogStore) -> None:
        self.logs = logs
        self._procs: dict[tuple[str, str, str], asyncio.subprocess.Process] = {}

    async def run(self, store: Store, pod: JSON, container: JSON) -> int:
        """Run one container to completion; return its exit code (127: cannot start)."""
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        cname = container.get("name", "")
        env = container_env(store, pod, container)
        argv = [*(container.get("command") or []), *(container.get("args") or [])]
        argv = [_expand(str(a), env) for a in argv]
        if not argv:
            self.logs.append(
                ns, name, cname, b"simcluster: container has no command or args to run\n"
            )
            return 127
        # The simulator's interpreter directory comes first on PATH, so ``python`` and
        # ``prefect`` resolve to the environment the simulator runs in.
        # (Also when the pod sets its own PATH: the "image" is this host.)
        bin_dir = os.path.dirname(sys.executable)
        path = os.pathsep.join([bin_dir, env.get("PATH") or os.environ.get("PATH", "")])
        full_env = {**os.environ, "HOSTNAME": name, **env, "PATH": path}
        cwd = container.get("workingDir")
        if not cwd or not os.path.isdir(cwd):
            cwd = tempfile.mkdtemp(prefix=f"simpod-{name}-")
        self.logs.reopen(ns, name, cname)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                env=full_env,
                cwd=cwd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            self.logs.append(
                ns, name, cname, f"simcluster: exec {argv[0]!r} failed: {exc}\n".encode()
            )
            return 127
        key = (ns, name, cname)
        self._procs[key] = proc
        try:
            assert proc.stdout is not None
            while True:
                chunk = await proc.stdout.read(65536)
                if not chunk:
                    break
                self.logs.append(ns, name, cname, chunk)
            return await proc.wait()
        finally:
            self._procs.pop(key, None)
            self.logs.close(ns, name, cname)
            if proc.returncode is None:
                self._kill(proc)
                with contextlib.suppress(ProcessLookupError):
                    await proc.wait()

    def stop_pod(self, namespace: str, name: str) -> None:
        for key, proc in list(self._procs.items()):
            if key[:2] == (namespace, name):
                self._kill(proc)

    def stop_all(self) -> None:
        for proc in list(self._procs.values()):
            self._kill(proc)

    @staticmethod
    def _kill(proc: asyncio.subprocess.Process) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
