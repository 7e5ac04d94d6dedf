"""The production profile: `stack up --database postgresql --messaging redis` runs the
Prefect server on a real PostgreSQL with Redis messaging; a flow runs and an event makes
the round trip (client -> server -> Redis stream -> PostgreSQL -> API) against it.

The stack here is a stack of its own (not the session's): the profile is its subject.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shipyard.core.errors import ConfigError
from shipyard.stack import StackLayout, stack_down, stack_status, stack_up
from shipyard.stack import database as prod
from shipyard.stack.model import DEFAULT_PORTS
from shipyard.stack.runner import read_env_file

SHIPYARD = [sys.executable, "-m", "shipyard.cli.main"]

FLOW = """
import sys
from prefect import flow
from prefect.events import emit_event

@flow(name="shipyard-profile-smoke")
def smoke(marker: str) -> str:
    emit_event(
        event="shipyard.test.profile",
        resource={"prefect.resource.id": f"shipyard.test.{marker}"},
        payload={"marker": marker},
    )
    return marker

print(smoke(sys.argv[1]))
"""


@pytest.fixture(scope="module")
def production_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackLayout]:
    """A whole stack on PostgreSQL + Redis, on free ports, stopped at the end."""
    layout = StackLayout(tmp_path_factory.mktemp("prodstack"))
    try:
        stack_up(
            layout,
            ports=dict.fromkeys(DEFAULT_PORTS, 0),
            database="postgresql",
            messaging="redis",
        )
        yield layout
    finally:
        stack_down(layout)
        prod.remove_cluster(layout)  # 50 MB, possibly outside the state dir


def test_bad_profile_flag_is_one_line_exit_2(tmp_path: Path) -> None:
    state = tmp_path / "st"
    result = subprocess.run(
        [*SHIPYARD, "stack", "up", "--state-dir", str(state), "--database", "mysql"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--database must be one of sqlite, postgresql" in lines[0]
    assert not (state / "profile.json").exists()  # changed nothing


def test_profile_is_remembered_and_validated(tmp_path: Path) -> None:
    layout = StackLayout(tmp_path / "st")
    assert prod.resolve_profile(layout) == prod.Profile("sqlite", "memory")
    prod.save_profile(layout, prod.resolve_profile(layout, "postgresql"))
    assert prod.resolve_profile(layout) == prod.Profile("postgresql", "memory")
    assert prod.resolve_profile(layout, messaging="redis") == prod.Profile("postgresql", "redis")
    with pytest.raises(ConfigError, match="--messaging must be one of memory, redis"):
        prod.resolve_profile(layout, messaging="kafka")


def test_missing_program_names_the_debian_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ConfigError, match="apt-get install -y redis-server"):
        prod.program("redis-server")


@pytest.mark.slow
def test_prefect_runs_on_postgresql_with_redis(production_stack: StackLayout) -> None:
    layout = production_stack
    report = stack_status(layout)
    assert report.healthy, report.to_dict()
    by_name = {s.name: s for s in report.services}
    assert by_name["postgres"].healthy and by_name["redis"].healthy
    assert by_name["postgres"].address.startswith("postgresql://shipyard:***@127.0.0.1:")
    assert report.profile == "postgresql + redis messaging"
    assert prod.db_password(layout) not in str(report.to_dict())

    # A second `up` without flags keeps the profile and restarts nothing.
    pids = {s.name: s.pid for s in report.services if not s.optional}
    again = stack_up(layout)
    assert again.profile == "postgresql + redis messaging"
    assert {s.name: s.pid for s in again.services if s.name in pids} == pids

    env = read_env_file(layout)
    assert env["PREFECT_MESSAGING_BROKER"] == "prefect_redis.messaging"
    api = env["PREFECT_API_URL"]
    marker = uuid.uuid4().hex[:12]
    run = subprocess.run(
        [sys.executable, "-c", FLOW, marker],
        env={**os.environ, **env, "PREFECT_API_URL": api},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]

    runs = httpx.post(
        f"{api}/flow_runs/filter",
        json={"flows": {"name": {"any_": ["shipyard-profile-smoke"]}}},
        timeout=10,
    ).json()
    assert [r["state_type"] for r in runs] == ["COMPLETED"]

    event = _wait_for_event(api, marker)
    assert event["payload"] == {"marker": marker}

    # The rows are in PostgreSQL itself, not in a SQLite file beside it.
    ports = layout.load_ports()
    assert _pg_count(prod.database_url(layout, ports["postgres"]), marker) == 1
    assert not (layout.data_dir("prefect") / "prefect.db").exists()
    pgdata = layout.data_dir("postgres").resolve() / "pgdata"
    assert (pgdata / "PG_VERSION").exists()
    if (user := prod.service_user()) is not None:  # root: the cluster is not root's
        assert pgdata.owner() == user
    log = layout.log_file("prefect").read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]


def _wait_for_event(api: str, marker: str, timeout: float = 60.0) -> dict[str, object]:
    """The event read back through the API once the persister has stored it."""
    deadline = time.monotonic() + timeout
    body = {
        "filter": {
            "event": {"name": ["shipyard.test.profile"]},
            "resource": {"id": [f"shipyard.test.{marker}"]},
        },
        "limit": 5,
    }
    while True:
        found = httpx.post(f"{api}/events/filter", json=body, timeout=10).json()["events"]
        if found:
            return dict(found[0])
        assert time.monotonic() < deadline, "event not readable back within 60 s"
        time.sleep(0.5)


def _pg_count(url: str, marker: str) -> int:
    import asyncpg  # type: ignore[import-untyped]

    async def count() -> int:
        conn = await asyncpg.connect(url.replace("+asyncpg", ""))
        try:
            return int(
                await conn.fetchval(
                    "SELECT count(*) FROM events WHERE resource_id = $1",
                    f"shipyard.test.{marker}",
                )
            )
        finally:
            await conn.close()

    return asyncio.run(count())
