"""The stack's production profile: Prefect on PostgreSQL, optionally with Redis messaging.

SQLite and in-memory messaging stay the default. ``stack up --database postgresql``
initialises a PostgreSQL cluster (the Debian package's binaries) under the state dir,
serves it on loopback on a port of its own and points the Prefect server at it;
``--messaging redis`` adds a Redis server (the Debian package) and the ``prefect-redis``
broker, cache, causal ordering, lease storage and Docket settings. The choice is
remembered in ``<state>/profile.json``, so a later ``up`` without flags keeps it.

PostgreSQL refuses to run as root: when the stack runs as root (CI, containers) the
cluster belongs to an unprivileged system user (``postgres`` from the Debian package,
else ``nobody``; $SHIPYARD_DB_USER overrides) and every PostgreSQL program runs through
``setpriv``, which switches user and execs (no extra process to stop).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import quote

from shipyard.core.errors import ConfigError, TransientError
from shipyard.stack.model import ServiceSpec, StackLayout
from shipyard.stack.probes import tcp_open

DATABASES = ("sqlite", "postgresql")
# The backing services, started before the Prefect server and stopped after it.
BACKING_SERVICES = ("postgres", "redis")
MESSAGING = ("memory", "redis")

DB_NAME = "prefect"
DB_USER = "shipyard"

# Which Debian package provides each program, for the "missing prerequisite" message.
PACKAGES = {
    "initdb": "postgresql",
    "postgres": "postgresql",
    "pg_isready": "postgresql-client",
    "redis-server": "redis-server",
    "setpriv": "util-linux",
}


@dataclass(frozen=True)
class Profile:
    """Which database and which messaging broker the stack's Prefect server uses."""

    database: str = "sqlite"
    messaging: str = "memory"

    def describe(self) -> str:
        """One line for `stack status`: e.g. ``postgresql + redis``."""
        return f"{self.database} + {self.messaging} messaging"


def _profile_file(layout: StackLayout) -> Path:
    return layout.root / "profile.json"


def load_profile(layout: StackLayout) -> Profile:
    """The profile an earlier `up` chose (the default profile when none did)."""
    try:
        data = json.loads(_profile_file(layout).read_text())
    except (FileNotFoundError, ValueError):
        return Profile()
    return Profile(
        database=str(data.get("database", "sqlite")),
        messaging=str(data.get("messaging", "memory")),
    )


def resolve_profile(
    layout: StackLayout, database: str | None = None, messaging: str | None = None
) -> Profile:
    """The profile for this `up`: the flags given, else what an earlier `up` chose.

    Validates the flags (ConfigError: exit 2, nothing changed) and refuses to switch
    the database of a stack whose Prefect server is running (its runs would vanish from
    view); remembers the result in the state dir.
    """
    saved = load_profile(layout)
    if database is not None and database not in DATABASES:
        raise ConfigError(f"--database must be one of {', '.join(DATABASES)}, not {database!r}")
    if messaging is not None and messaging not in MESSAGING:
        raise ConfigError(f"--messaging must be one of {', '.join(MESSAGING)}, not {messaging!r}")
    profile = Profile(database or saved.database, messaging or saved.messaging)
    if profile != saved and _prefect_running(layout):
        raise ConfigError(
            f"the stack runs on {saved.describe()}; run 'shipyard stack down' before "
            f"switching to {profile.describe()}"
        )
    return profile


def save_profile(layout: StackLayout, profile: Profile) -> None:
    """Remember ``profile`` so a later `up` without flags keeps it."""
    layout.root.mkdir(parents=True, exist_ok=True)
    _profile_file(layout).write_text(json.dumps(asdict(profile), indent=2) + "\n")


def _prefect_running(layout: StackLayout) -> bool:
    from shipyard.stack import process

    return process.read_pid(layout, "prefect") is not None


# ---------------------------------------------------------------------------- programs


def program(name: str) -> str:
    """Path of a PostgreSQL/Redis program: PATH, then Debian's versioned directories."""
    found = shutil.which(name)
    if found is None:
        candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
        found = candidates[0] if candidates else None
    if found is None:
        pkg = PACKAGES.get(name, name)
        raise ConfigError(
            f"'{name}' is missing: install it with 'apt-get install -y {pkg}' "
            "(or run scripts/setup.sh as root)"
        )
    return found


def service_user() -> str | None:
    """The unprivileged user PostgreSQL runs as when we are root; None otherwise."""
    if os.geteuid() != 0:
        return None
    for name in (os.environ.get("SHIPYARD_DB_USER"), "postgres", "nobody"):
        if not name:
            continue
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise ConfigError(
        "PostgreSQL refuses to run as root and no unprivileged user exists: create one "
        "(useradd --system shipyard) and set SHIPYARD_DB_USER=shipyard"
    )


def as_user(user: str | None, argv: list[str]) -> list[str]:
    """``argv`` run as ``user`` (setpriv switches user and execs), or as is."""
    if user is None:
        return argv
    return [
        program("setpriv"),
        f"--reuid={user}",
        f"--regid={pwd.getpwnam(user).pw_gid}",
        "--init-groups",
        "--",
        *argv,
    ]


def _reachable(user: str, path: Path) -> bool:
    """Can ``user`` traverse every directory down to ``path``? (Others' bits only:
    the state dir's parents belong to root here, e.g. pytest's 0700 temp root.)"""
    for directory in (path, *path.parents):
        if not directory.exists():
            continue
        if not os.stat(directory).st_mode & 0o001:
            return False
    return True


def postgres_root(layout: StackLayout) -> Path:
    """Where the cluster lives: ``<state>/data/postgres``.

    When the service user cannot reach the state dir (root's private temp dirs), the
    cluster lives in the temp dir under a name derived from the state dir, and
    ``<state>/data/postgres`` is a symlink to it.
    """
    home = layout.data_dir("postgres")
    user = service_user()
    if user is None or home.is_symlink() or _reachable(user, home.parent):
        return home.resolve() if home.is_symlink() else home
    digest = hashlib.sha256(str(layout.root).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"shipyard-{digest}" / "postgres"


def remove_cluster(layout: StackLayout) -> None:
    """Delete the cluster's files (stopped first by `down`), also when they live in the
    temp dir behind a symlink, which deleting the state dir alone would leave behind."""
    link = layout.data_dir("postgres")
    if link.is_symlink():
        shutil.rmtree(link.resolve(), ignore_errors=True)
        link.unlink()
    else:
        shutil.rmtree(link, ignore_errors=True)


def db_password(layout: StackLayout) -> str:
    """The database password of the stack (made once, 0600 in the state dir)."""
    path = layout.root / "postgres.secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(24))
    return path.read_text().strip()


def database_url(layout: StackLayout, port: int, *, password: bool = True) -> str:
    """The Prefect server's SQLAlchemy URL (``password=False``: for display)."""
    secret = quote(db_password(layout), safe="") if password else "***"
    return f"postgresql+asyncpg://{DB_USER}:{secret}@{layout.host}:{port}/{DB_NAME}"


def init_cluster(layout: StackLayout) -> Path:
    """initdb (once) and create the Prefect database; return the data directory.

    Runs before the server starts: ``initdb`` with scram-sha-256 for every connection
    and the stack's password, then ``CREATE DATABASE`` in single-user mode.
    """
    root = postgres_root(layout)
    pgdata = root / "pgdata"
    if (pgdata / "PG_VERSION").exists():
        return pgdata
    user = service_user()
    root.mkdir(parents=True, exist_ok=True)
    link = layout.data_dir("postgres")
    if root != link and not link.is_symlink():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(root, target_is_directory=True)
    shutil.rmtree(pgdata, ignore_errors=True)  # a half-done earlier initdb
    pwfile = root / ".pwfile"
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(db_password(layout) + "\n")
    if user is not None:
        info = pwd.getpwnam(user)
        for path in (root, pwfile):
            os.chown(path, info.pw_uid, info.pw_gid)
    try:
        _run(
            as_user(
                user,
                [
                    program("initdb"),
                    "-D",
                    str(pgdata),
                    "-U",
                    DB_USER,
                    f"--pwfile={pwfile}",
                    "--auth=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--no-locale",
                    "--no-instructions",
                ],
            ),
            "initdb",
        )
        _run(
            as_user(user, [program("postgres"), "--single", "-D", str(pgdata), "postgres"]),
            "create database",
            stdin=f"CREATE DATABASE {DB_NAME};\n",
        )
    finally:
        pwfile.unlink(missing_ok=True)
    return pgdata


def _run(argv: list[str], what: str, stdin: str | None = None) -> None:
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    if done.returncode != 0 or "ERROR:" in done.stdout + done.stderr:
        lines = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise TransientError(f"postgresql {what} failed: {' / '.join(lines)}")


def postgres_ready(host: str, port: int) -> bool:
    """True when PostgreSQL accepts connections (``pg_isready``: not just listening)."""
    if not tcp_open(host, port):
        return False
    done = subprocess.run(
        [program("pg_isready"), "-q", "-h", host, "-p", str(port), "-t", "2"],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


def postgres_spec(layout: StackLayout, port: int) -> ServiceSpec:
    """PostgreSQL on loopback (TCP only, no unix socket) with its data under the state dir."""
    pgdata = postgres_root(layout) / "pgdata"
    argv = as_user(
        service_user(),
        [
            program("postgres"),
            "-D",
            str(pgdata),
            "-p",
            str(port),
            "-c",
            f"listen_addresses={layout.host}",
            "-c",
            "unix_socket_directories=",
            "-c",
            "max_connections=200",
        ],
    )
    return ServiceSpec(
        name="postgres",
        argv=argv,
        health=lambda: postgres_ready(layout.host, port),
        prepare=lambda: _discard(init_cluster(layout)),
        ready_timeout=60.0,
    )


def _discard(_value: object) -> None:
    """A prepare step returns nothing."""


def redis_ping(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when Redis answers PING with PONG (its inline protocol)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def redis_spec(layout: StackLayout, port: int) -> ServiceSpec:
    """redis-server on loopback, append-only file under the state dir, no RDB snapshots."""
    data = layout.data_dir("redis")
    return ServiceSpec(
        name="redis",
        argv=[
            program("redis-server"),
            "--bind",
            layout.host,
            "--port",
            str(port),
            "--dir",
            str(data),
            "--appendonly",
            "yes",
            "--save",
            "",
            "--protected-mode",
            "yes",
        ],
        health=lambda: redis_ping(layout.host, port),
        prepare=lambda: data.mkdir(parents=True, exist_ok=True),
    )


# ---------------------------------------------------------------------- prefect wiring


def redis_client_env(host: str, port: int) -> dict[str, str]:
    """prefect-redis settings every Prefect process (server and clients) reads."""
    return {
        "PREFECT_MESSAGING_BROKER": "prefect_redis.messaging",
        "PREFECT_MESSAGING_CACHE": "prefect_redis.messaging",
        "PREFECT_REDIS_MESSAGING_HOST": host,
        "PREFECT_REDIS_MESSAGING_PORT": str(port),
        "PREFECT_REDIS_MESSAGING_DB": "0",
    }


def prefect_server_env(
    layout: StackLayout, ports: dict[str, int], profile: Profile
) -> dict[str, str]:
    """Environment of the Prefect server for ``profile`` (empty for the default one).

    PostgreSQL: the asyncpg URL. Redis: the broker and cache, causal ordering, the
    concurrency lease storage (db 0), and Docket's background tasks (db 1).
    """
    env: dict[str, str] = {}
    if profile.database == "postgresql":
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = database_url(layout, ports["postgres"])
    if profile.messaging == "redis":
        host, port = layout.host, ports["redis"]
        env |= redis_client_env(host, port)
        env |= {
            "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING": "prefect_redis.ordering",
            "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect_redis.lease_storage",
            "PREFECT_SERVER_DOCKET_URL": f"redis://{host}:{port}/1",
        }
    return env


def client_env(layout: StackLayout, ports: dict[str, int], profile: Profile) -> dict[str, str]:
    """What the env file adds for clients: the messaging settings (never the password)."""
    if profile.messaging != "redis":
        return {}
    return redis_client_env(layout.host, ports["redis"])


def backing_specs(
    layout: StackLayout, ports: dict[str, int], profile: Profile
) -> list[ServiceSpec]:
    """The services the Prefect server needs first (none for the default profile)."""
    specs: list[ServiceSpec] = []
    if profile.database == "postgresql":
        specs.append(postgres_spec(layout, ports["postgres"]))
    if profile.messaging == "redis":
        specs.append(redis_spec(layout, ports["redis"]))
    return specs


def wire_prefect(
    spec: ServiceSpec,
    backing: list[ServiceSpec],
    env: dict[str, str],
    wait: float = 60.0,
) -> ServiceSpec:
    """The Prefect server spec with ``env`` added and a prepare step that waits until
    its database and broker answer (it migrates and connects at start, and would exit
    if they did not)."""
    spec.env.update(env)
    earlier = spec.prepare

    def prepare() -> None:
        if earlier:
            earlier()
        deadline = time.monotonic() + wait
        for dependency in backing:
            while not dependency.health():
                if time.monotonic() > deadline:
                    raise TransientError(
                        f"prefect waits for {dependency.name}, which is not ready after {wait:.0f}s"
                    )
                time.sleep(0.2)

    spec.prepare = prepare
    return spec


def address(layout: StackLayout, service: str, ports: dict[str, int]) -> str:
    """How `stack status` shows the backing services (no password)."""
    port = ports.get(service)
    if not port:
        return ""
    if service == "postgres":
        return database_url(layout, port, password=False).replace("+asyncpg", "")
    return f"redis://{layout.host}:{port}/0"
