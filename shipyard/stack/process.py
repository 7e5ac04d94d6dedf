"""Start and stop detached service processes tracked by pid files.

Each service runs in its own session (process group), so `down` can stop it together
with any children it spawned and leave no orphans behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from shipyard.stack.model import ServiceSpec, StackLayout


def read_pid(layout: StackLayout, name: str) -> int | None:
    """The pid recorded for ``name`` if that process is still alive, else None."""
    path = layout.pid_file(name)
    try:
        pid = int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if _alive(pid) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not alive for our purposes.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def spawn(layout: StackLayout, spec: ServiceSpec) -> int:
    """Start ``spec`` detached, logging to its log file; record and return its pid."""
    log_path = layout.log_file(spec.name)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    layout.pid_file(spec.name).parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **spec.env}
    with open(log_path, "ab") as log, open(os.devnull, "rb") as devnull:
        proc = subprocess.Popen(
            spec.argv,
            stdin=devnull,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=spec.cwd,
            start_new_session=True,
            close_fds=True,
        )
    layout.pid_file(spec.name).write_text(f"{proc.pid}\n")
    return proc.pid


def stop(layout: StackLayout, name: str, grace: float = 10.0) -> bool:
    """Stop the service's whole process group: SIGTERM, then SIGKILL after ``grace``.

    Returns True when something was running.
    """
    pid = read_pid(layout, name)
    layout.pid_file(name).unlink(missing_ok=True)
    if pid is None:
        return False
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _reap(pid)
        if not _alive(pid) and not _group_alive(pid):
            return True
        time.sleep(0.05)
    _signal_group(pid, signal.SIGKILL)
    for _ in range(100):
        _reap(pid)
        if not _alive(pid):
            break
        time.sleep(0.02)
    return True


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _reap(pid: int) -> None:
    """Collect the exit status if ``pid`` is our child (in-process tests spawn children)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def tail(path: Path, lines: int = 5) -> str:
    """The last ``lines`` lines of a log file, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def option_of(pid: int, option: str) -> str | None:
    """The value given to ``option`` on process ``pid``'s command line, if any (Linux)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    words = [w.decode(errors="replace") for w in raw.split(b"\0")]
    for word, following in zip(words, [*words[1:], ""], strict=True):
        if word == option:
            return following or None
        if word.startswith(f"{option}="):
            return word.partition("=")[2] or None
    return None
