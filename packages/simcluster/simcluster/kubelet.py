"""The simulated kubelet: moves pods through their lifecycle on simulated nodes.

For each scheduled pod it "pulls" the images (a manifest check against the real
registry, see :mod:`simcluster.registry`), then after ``startup_delay`` marks the
containers running and ready, or simulates a failure chosen by annotations or env:

- ``sim.shipyard.dev/crash: "true"`` (or env ``SIM_CRASH=true``): CrashLoopBackOff with
  a climbing restartCount;
- ``sim.shipyard.dev/ready: "false"`` (or env ``SIM_READY=false``): Running, never Ready;
- ``sim.shipyard.dev/exit-code: "N"``: a run-to-completion pod (Job) exits with N;
- ``sim.shipyard.dev/startup-seconds`` / ``sim.shipyard.dev/run-seconds``: timings.

Process-backed pods (``sim.shipyard.dev/run-processes: "true"``) run their command for
real (:mod:`simcluster.processes`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
from collections.abc import Hashable
from typing import Any

from simcluster import events, volumes
from simcluster.clock import now_iso
from simcluster.config import SimConfig
from simcluster.controllers.base import Controller
from simcluster.errors import ApiError
from simcluster.logs import LogStore
from simcluster.processes import ConfigError, ProcessRunner, container_env, wants_processes
from simcluster.registry import ImagePuller, credentials_from_secret
from simcluster.resources import ResourceType
from simcluster.store import WatchEvent, clone

JSON = dict[str, Any]
PREFIX = "sim.shipyard.dev/"
_ip_counter = itertools.count(2)
_VOLUME_SOURCES = (("", "configmaps"), ("", "secrets"))


class _Gone(Exception):
    """The pod was deleted or replaced; its worker stops."""


def _backoff_msg(backoff: float, container: str, pod: str, ns: str, uid: str) -> str:
    """The CrashLoopBackOff waiting message, worded like the real kubelet's."""
    return f"back-off {int(backoff)}s restarting failed container={container} pod={pod}_{ns}({uid})"


def _truthy(value: Any) -> bool:
    return str(value).lower() in ("true", "1", "yes")


class Kubelet(Controller):
    """Runs one worker task per live pod (see module docstring)."""

    name = "kubelet"

    def __init__(self, store: Any, config: SimConfig, logs: LogStore) -> None:
        super().__init__(store, config)
        self.logs = logs
        self.puller = ImagePuller(config)
        self.runner = ProcessRunner(logs)
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._images: dict[str, list[str]] = {}
        self._mount_waits: dict[str, asyncio.Event] = {}

    # -- event plumbing --------------------------------------------------------------

    def on_event(self, rt: ResourceType, event: WatchEvent) -> None:
        if rt.key in _VOLUME_SOURCES and self._mount_waits:
            wake = self._mount_waits.pop(event.obj["metadata"].get("namespace", ""), None)
            if wake is not None:
                wake.set()
        if rt.key != ("", "pods") or self._loop is None:
            return
        meta = event.obj["metadata"]
        uid = meta["uid"]
        if event.type == "DELETED" or meta.get("deletionTimestamp"):
            self._stop(
                uid, meta.get("namespace", ""), meta["name"], drop_logs=event.type == "DELETED"
            )
            return
        self._ensure(event.obj)

    def _ensure(self, pod: JSON) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        if not (pod.get("spec") or {}).get("nodeName"):
            return
        images = [c.get("image", "") for c in (pod.get("spec") or {}).get("containers") or []]
        worker = self._workers.get(uid)
        if worker is not None and not worker.done():
            if self._images.get(uid) == images:
                return
            worker.cancel()
        elif worker is not None or (pod.get("status") or {}).get("phase") in (
            "Succeeded",
            "Failed",
        ):
            if self._images.get(uid) == images:
                return
        self._images[uid] = images
        self._workers[uid] = asyncio.get_running_loop().create_task(
            self._worker(meta["namespace"], meta["name"], uid), name=f"kubelet:{meta['name']}"
        )

    def _stop(self, uid: str, ns: str, name: str, drop_logs: bool) -> None:
        worker = self._workers.pop(uid, None)
        if worker is not None:
            worker.cancel()
        self._images.pop(uid, None)
        self.runner.stop_pod(ns, name)
        if drop_logs:
            self.logs.drop_pod(ns, name)

    def start(self) -> None:
        for pod in self.store.select(self.rt("", "pods")):
            self._ensure(pod)

    async def shutdown(self) -> None:
        for task in list(self._workers.values()):
            task.cancel()
        self.runner.stop_all()
        for task in list(self._workers.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # -- status helpers --------------------------------------------------------------

    def _pod(self, ns: str, name: str, uid: str) -> JSON:
        pod = self.store.try_get(self.rt("", "pods"), ns, name)
        if pod is None or pod["metadata"]["uid"] != uid or pod["metadata"].get("deletionTimestamp"):
            raise _Gone
        return pod

    def _write(
        self,
        ns: str,
        name: str,
        uid: str,
        phase: str,
        containers: dict[str, JSON],
        reason: str | None = None,
    ) -> JSON:
        pod = self._pod(ns, name, uid)
        now = now_iso()
        old = pod.get("status") or {}
        statuses = []
        for c in pod["spec"].get("containers") or []:
            cs = containers.get(c["name"]) or {
                "state": {"waiting": {"reason": "ContainerCreating"}}
            }
            entry: JSON = {
                "name": c["name"],
                "image": c.get("image", ""),
                "imageID": cs.get("imageID", ""),
                "ready": bool(cs.get("ready")),
                "restartCount": int(cs.get("restartCount", 0)),
                "started": "running" in cs["state"],
                "state": cs["state"],
                "lastState": cs.get("lastState") or {},
            }
            if cs.get("containerID"):
                entry["containerID"] = cs["containerID"]
            statuses.append(entry)
        all_ready = bool(statuses) and all(s["ready"] for s in statuses) and phase == "Running"
        running = phase in ("Running", "Succeeded", "Failed")
        conds_old = {c.get("type"): c for c in old.get("conditions") or []}

        def cond(ctype: str, ok: bool, why: str = "") -> JSON:
            status = "True" if ok else "False"
            prev = conds_old.get(ctype)
            c: JSON = {
                "type": ctype,
                "status": status,
                "lastProbeTime": None,
                "lastTransitionTime": prev["lastTransitionTime"]
                if prev and prev.get("status") == status
                else now,
            }
            if not ok and why:
                c["reason"] = why
            return c

        not_ready = "PodCompleted" if phase in ("Succeeded", "Failed") else "ContainersNotReady"
        status: JSON = {
            "phase": phase,
            "conditions": [
                cond("PodReadyToStartContainers", running),
                cond("Initialized", True),
                cond("Ready", all_ready, not_ready),
                cond("ContainersReady", all_ready, not_ready),
                cond("PodScheduled", True),
            ],
            "hostIP": old.get("hostIP") or self._host_ip(pod),
            "startTime": old.get("startTime") or now,
            "containerStatuses": statuses,
            "qosClass": old.get("qosClass", "BestEffort"),
        }
        status["hostIPs"] = [{"ip": status["hostIP"]}]
        if running or old.get("podIP"):
            ip = old.get("podIP") or f"10.244.{(n := next(_ip_counter)) // 250 % 250}.{n % 250 + 1}"
            status["podIP"] = ip
            status["podIPs"] = [{"ip": ip}]
        if reason:
            status["reason"] = reason
        if status == old:
            return pod
        new = clone(pod)
        new["status"] = status
        return self.store.update(
            self.rt("", "pods"), new, ns, subresource="status", manager="kubelet"
        )

    def _host_ip(self, pod: JSON) -> str:
        node = self.store.try_get(self.rt("", "nodes"), "", pod["spec"].get("nodeName", ""))
        for addr in ((node or {}).get("status") or {}).get("addresses") or []:
            if addr.get("type") == "InternalIP":
                return str(addr["address"])
        return "172.18.0.2"

    def _event(
        self, pod: JSON, etype: str, reason: str, message: str, component: str = "kubelet"
    ) -> None:
        events.record(
            self.store, pod, etype, reason, message, component, pod["spec"].get("nodeName", "")
        )

    def _creds(self, pod: JSON) -> dict[str, tuple[str, str]]:
        creds: dict[str, tuple[str, str]] = {}
        secret_rt = self.rt("", "secrets")
        for ref in pod["spec"].get("imagePullSecrets") or []:
            secret = self.store.try_get(
                secret_rt, pod["metadata"]["namespace"], ref.get("name", "")
            )
            if secret is not None:
                creds.update(credentials_from_secret(secret))
        return creds

    # -- the lifecycle ---------------------------------------------------------------

    async def _worker(self, ns: str, name: str, uid: str) -> None:
        try:
            await self._lifecycle(ns, name, uid)
        except (_Gone, asyncio.CancelledError):
            pass
        except ApiError as exc:
            if exc.code not in (404, 409):
                raise

    async def _lifecycle(self, ns: str, name: str, uid: str) -> None:
        pod = self._pod(ns, name, uid)
        spec = pod["spec"]
        containers = spec.get("containers") or []
        annotations = pod["metadata"].get("annotations") or {}
        if not (pod.get("status") or {}).get("containerStatuses"):
            self._event(
                pod,
                "Normal",
                "Scheduled",
                f"Successfully assigned {ns}/{name} to {spec.get('nodeName')}",
                "default-scheduler",
            )
        states: dict[str, JSON] = {
            c["name"]: {"state": {"waiting": {"reason": "ContainerCreating"}}} for c in containers
        }
        self._write(ns, name, uid, "Pending", states)
        await self._mount(ns, name, uid)
        image_ids = await self._pull(ns, name, uid, containers, states)
        delay = float(annotations.get(PREFIX + "startup-seconds", self.config.startup_delay))
        await asyncio.sleep(delay)
        pod = self._pod(ns, name, uid)
        if wants_processes(self.store, pod):
            await self._run_processes(ns, name, uid, pod, image_ids)
        else:
            await self._simulate(ns, name, uid, pod, image_ids)

    async def _mount(self, ns: str, name: str, uid: str) -> None:
        """Wait (ContainerCreating, a FailedMount event per try) until every volume's
        ConfigMap/Secret exists; a change to one in the namespace retries at once."""
        backoff = self.config.pull_backoff
        while True:
            pod = self._pod(ns, name, uid)
            failed = volumes.mount_errors(self.store, pod)
            if not failed:
                return
            for vol, err in failed:
                msg = f'MountVolume.SetUp failed for volume "{vol}" : {err}'
                self._event(pod, "Warning", "FailedMount", msg)
            wake = self._mount_waits.setdefault(ns, asyncio.Event())
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(wake.wait(), backoff)
            backoff = min(backoff * 2, self.config.max_backoff)

    async def _pull(
        self, ns: str, name: str, uid: str, containers: list[JSON], states: dict[str, JSON]
    ) -> dict[str, str]:
        backoff = self.config.pull_backoff
        pod = self._pod(ns, name, uid)
        creds = self._creds(pod)
        for c in containers:
            self._event(pod, "Normal", "Pulling", f'Pulling image "{c.get("image")}"')
        while True:
            results = await asyncio.gather(
                *(self.puller.check(c.get("image", ""), creds) for c in containers)
            )
            failed = [(c, r) for c, r in zip(containers, results, strict=True) if not r.ok]
            if not failed:
                pod = self._pod(ns, name, uid)
                for c in containers:
                    self._event(
                        pod, "Normal", "Pulled", f'Successfully pulled image "{c.get("image")}"'
                    )
                return {c["name"]: r.image_id for c, r in zip(containers, results, strict=True)}
            pod = self._pod(ns, name, uid)
            for c, r in failed:
                msg = f"rpc error: code = NotFound desc = {r.message}"
                states[c["name"]] = {
                    "state": {"waiting": {"reason": "ErrImagePull", "message": msg}}
                }
                self._event(
                    pod, "Warning", "Failed", f'Failed to pull image "{c.get("image")}": {msg}'
                )
                self._event(pod, "Warning", "Failed", "Error: ErrImagePull")
            self._write(ns, name, uid, "Pending", states)
            await asyncio.sleep(backoff)
            pod = self._pod(ns, name, uid)
            for c, _ in failed:
                msg = f'Back-off pulling image "{c.get("image")}"'
                states[c["name"]] = {
                    "state": {"waiting": {"reason": "ImagePullBackOff", "message": msg}}
                }
                self._event(pod, "Normal", "BackOff", msg)
                self._event(pod, "Warning", "Failed", "Error: ImagePullBackOff")
            self._write(ns, name, uid, "Pending", states)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.config.max_backoff)
            creds = self._creds(self._pod(ns, name, uid))

    def _flags(self, pod: JSON, container: JSON) -> tuple[bool, bool]:
        """(crash, ready) for one container from pod annotations and container env."""
        ann = pod["metadata"].get("annotations") or {}
        env = {e.get("name"): e.get("value") for e in container.get("env") or [] if "value" in e}
        crash = _truthy(ann.get(PREFIX + "crash", "false")) or _truthy(
            env.get("SIM_CRASH", "false")
        )
        ready = (
            str(ann.get(PREFIX + "ready", "true")).lower() != "false"
            and str(env.get("SIM_READY", "true")).lower() != "false"
        )
        return crash, ready

    async def _simulate(
        self, ns: str, name: str, uid: str, pod: JSON, image_ids: dict[str, str]
    ) -> None:
        containers = pod["spec"].get("containers") or []
        policy = pod["spec"].get("restartPolicy", "Always")
        ann = pod["metadata"].get("annotations") or {}
        started = now_iso()
        states: dict[str, JSON] = {}
        crashing = []
        for c in containers:
            crash, ready = self._flags(pod, c)
            if crash:
                crashing.append(c)
            states[c["name"]] = {
                "state": {"running": {"startedAt": started}},
                "ready": ready and not crash,
                "imageID": image_ids.get(c["name"], ""),
                "containerID": f"simcluster://{secrets.token_hex(16)}",
            }
            self._event(pod, "Normal", "Created", f"Created container {c['name']}")
            self._event(pod, "Normal", "Started", f"Started container {c['name']}")
            self.logs.reopen(ns, name, c["name"])
            line = f"{started} simcluster: simulated container {c['name']} ({c.get('image')})\n"
            self.logs.append(ns, name, c["name"], line.encode())
        self._write(ns, name, uid, "Running", states)
        if crashing:
            await self._crash_loop(ns, name, uid, crashing, states, policy)
            return
        if policy == "Always":
            return
        await asyncio.sleep(float(ann.get(PREFIX + "run-seconds", self.config.job_run_seconds)))
        try:
            code = int(ann.get(PREFIX + "exit-code", "0"))
        except ValueError:
            code = 1
        finished = now_iso()
        for c in containers:
            states[c["name"]] = {
                **states[c["name"]],
                "ready": False,
                "state": {
                    "terminated": {
                        "exitCode": code,
                        "reason": "Completed" if code == 0 else "Error",
                        "startedAt": started,
                        "finishedAt": finished,
                        "containerID": states[c["name"]]["containerID"],
                    }
                },
            }
        for c in containers:
            line = f"{finished} simcluster: simulated container {c['name']} exited with {code}\n"
            self.logs.append(ns, name, c["name"], line.encode())
            self.logs.close(ns, name, c["name"])
        self._write(ns, name, uid, "Succeeded" if code == 0 else "Failed", states)

    async def _crash_loop(
        self,
        ns: str,
        name: str,
        uid: str,
        crashing: list[JSON],
        states: dict[str, JSON],
        policy: str,
    ) -> None:
        backoff = self.config.pull_backoff
        restarts = 0
        while True:
            await asyncio.sleep(min(self.config.startup_delay, 0.5) or 0.05)
            finished = now_iso()
            pod = self._pod(ns, name, uid)
            for c in crashing:
                st = states[c["name"]]
                terminated = {
                    "exitCode": 1,
                    "reason": "Error",
                    "startedAt": st["state"].get("running", {}).get("startedAt", finished),
                    "finishedAt": finished,
                    "containerID": st.get("containerID", ""),
                }
                if policy == "Never":
                    st["state"] = {"terminated": terminated}
                else:
                    st["lastState"] = {"terminated": terminated}
                    st["restartCount"] = restarts + 1
                    msg = _backoff_msg(backoff, c["name"], name, ns, uid)
                    st["state"] = {"waiting": {"reason": "CrashLoopBackOff", "message": msg}}
                    self._event(
                        pod,
                        "Warning",
                        "BackOff",
                        "Back-off restarting failed container "
                        + c["name"]
                        + f" in pod {name}_{ns}({uid})",
                    )
                st["ready"] = False
            if policy == "Never":
                self._write(ns, name, uid, "Failed", states)
                return
            self._write(ns, name, uid, "Running", states)
            restarts += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.config.max_backoff)
            started = now_iso()
            for c in crashing:
                states[c["name"]]["state"] = {"running": {"startedAt": started}}
            self._write(ns, name, uid, "Running", states)

    async def _run_processes(
        self, ns: str, name: str, uid: str, pod: JSON, image_ids: dict[str, str]
    ) -> None:
        policy = pod["spec"].get("restartPolicy", "Always")
        containers = pod["spec"].get("containers") or []
        states: dict[str, JSON] = {
            c["name"]: {
                "state": {"waiting": {"reason": "ContainerCreating"}},
                "imageID": image_ids.get(c["name"], ""),
            }
            for c in containers
        }
        backoff = self.config.pull_backoff
        while True:
            try:
                for c in [*(pod["spec"].get("initContainers") or []), *containers]:
                    container_env(self.store, pod, c)
                break
            except ConfigError as exc:
                for c in containers:
                    states[c["name"]]["state"] = {
                        "waiting": {"reason": "CreateContainerConfigError", "message": str(exc)}
                    }
                self._event(pod, "Warning", "Failed", f"Error: {exc}")
                self._write(ns, name, uid, "Pending", states)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.config.max_backoff)
                pod = self._pod(ns, name, uid)
        for init in pod["spec"].get("initContainers") or []:
            code = await self.runner.run(self.store, pod, init)
            if code != 0:
                self._write(ns, name, uid, "Failed", states, reason="InitContainerFailed")
                return
        restarts = {c["name"]: 0 for c in containers}
        while True:
            started = now_iso()
            for c in containers:
                _, ready = self._flags(pod, c)
                states[c["name"]].update(
                    state={"running": {"startedAt": started}},
                    ready=ready,
                    containerID=f"simcluster://{secrets.token_hex(16)}",
                    restartCount=restarts[c["name"]],
                )
                self._event(pod, "Normal", "Started", f"Started container {c['name']}")
            self._write(ns, name, uid, "Running", states)
            codes = await asyncio.gather(*(self.runner.run(self.store, pod, c) for c in containers))
            finished = now_iso()
            for c, code in zip(containers, codes, strict=True):
                states[c["name"]]["ready"] = False
                states[c["name"]]["state"] = {
                    "terminated": {
                        "exitCode": code,
                        "reason": "Completed" if code == 0 else "Error",
                        "startedAt": started,
                        "finishedAt": finished,
                        "containerID": states[c["name"]]["containerID"],
                    }
                }
            if policy != "Always" and (policy == "Never" or all(code == 0 for code in codes)):
                self._write(
                    ns,
                    name,
                    uid,
                    "Succeeded" if all(code == 0 for code in codes) else "Failed",
                    states,
                )
                return
            for c in containers:
                st = states[c["name"]]
                st["lastState"] = {"terminated": st["state"]["terminated"]}
                restarts[c["name"]] += 1
                st["restartCount"] = restarts[c["name"]]
                st["state"] = {
                    "waiting": {
                        "reason": "CrashLoopBackOff",
                        "message": _backoff_msg(backoff, c["name"], name, ns, uid),
                    }
                }
            self._write(ns, name, uid, "Running", states)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.config.max_backoff)
            pod = self._pod(ns, name, uid)

    def keys_for(self, rt: ResourceType, event: WatchEvent) -> list[Hashable]:
        return []
