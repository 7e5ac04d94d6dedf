"""`shipyard bridge serve` as a user runs it: refuses without a secret, serves with one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from shipyard.stack.probes import free_port

SHIPYARD = str(Path(sys.executable).parent / "shipyard")


def env(tmp_path: Path, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k != "SHIPYARD_BRIDGE_SECRET"}
    return {**base, "SHIPYARD_STATE_DIR": str(tmp_path / "state"), **extra}


def test_refuses_to_start_without_a_secret(tmp_path: Path) -> None:
    done = subprocess.run(
        [SHIPYARD, "bridge", "serve", "--dry-run"],
        env=env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "SHIPYARD_BRIDGE_SECRET" in done.stderr
    assert "Traceback" not in done.stderr


def test_serves_in_dry_run_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    secret = "cli-test-secret-0123456789"
    proc = subprocess.Popen(
        [SHIPYARD, "bridge", "serve", "--port", str(port), "--dry-run"],
        env=env(tmp_path, SHIPYARD_BRIDGE_SECRET=secret),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "bridge did not start"
                time.sleep(0.2)
        assert health.json()["dry_run"] is True
        body = (Path(__file__).parent / "data" / "ecr_push.json").read_bytes()
        url = f"http://127.0.0.1:{port}/hooks/ecr"
        assert httpx.post(url, content=body).status_code == 401
        ok = httpx.post(url, content=body, headers={"Authorization": secret})
        assert ok.status_code == 202
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=20)
    # uvicorn shuts down gracefully, then re-raises the signal it caught.
    assert code in (0, -signal.SIGTERM)
    assert not (tmp_path / "state").exists()  # dry run: no spool written
