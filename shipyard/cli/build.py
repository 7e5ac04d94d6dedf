"""`shipyard build | scan | push | scan-gate`: the build -> scan -> push steps by hand.

Users script these, so their flags, exit codes and JSON shapes are a contract:
exit 0 success (gate passed), 1 failure (gate blocked, push refused), 2 unusable input,
with one line on stderr. Heavy imports (docker, trivy runner) happen inside the
commands so ``scan-gate`` stays quick.
"""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer

from shipyard.core.errors import ConfigError, PolicyError

JsonOut = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
FailOn = Annotated[
    str,
    typer.Option(
        "--fail-on", help="Comma-separated severities that block (default HIGH,CRITICAL)."
    ),
]
IgnoreUnfixed = Annotated[
    bool, typer.Option("--ignore-unfixed", help="Vulnerabilities without a fix never block.")
]
IgnoreFile = Annotated[
    Path | None,
    typer.Option("--ignorefile", help="Accepted findings, in trivy's .trivyignore format."),
]
Insecure = Annotated[
    bool | None,
    typer.Option(
        "--insecure/--secure",
        help="Plain HTTP / unverified TLS to the registry (default: insecure on loopback).",
    ),
]
Username = Annotated[
    str | None,
    typer.Option("--username", envvar="SHIPYARD_REGISTRY_USERNAME", help="Registry user."),
]
DockerHostOpt = Annotated[
    str | None,
    typer.Option("--docker-host", envvar="DOCKER_HOST", help="Docker Engine API URL."),
]
PASSWORD_ENV = "SHIPYARD_REGISTRY_PASSWORD"  # noqa: S105 - a variable name


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc}") from None


def load_report(path: Path) -> Any:
    """The parsed JSON of a report file; ConfigError when missing or not JSON."""
    text = _read_text(path, "report")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None


def load_policy(fail_on: str, ignore_unfixed: bool, ignorefile: Path | None) -> Any:
    """A ScanPolicy from CLI flags; ConfigError on an unknown severity or a bad ignore file."""
    from tasks.scan_policy import ScanPolicy, parse_ignorefile, parse_severities

    rules = (
        parse_ignorefile(_read_text(ignorefile, "ignore file"), str(ignorefile))
        if ignorefile
        else ()
    )
    return ScanPolicy(
        fail_on=parse_severities(fail_on), ignore_unfixed=ignore_unfixed, ignore=rules
    )


def _validated(model: Any, **values: Any) -> Any:
    """``model(**values)``; a validation failure is a ConfigError naming the field."""
    from pydantic import ValidationError

    try:
        return model(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or model.__name__
        raise ConfigError(f"{where}: {first['msg']}") from None


def _connections(
    registry: str, username: str | None, insecure: bool | None, docker_host: str | None
) -> tuple[Any, Any]:
    """The Docker Engine and registry blocks a command's steps use (password from env)."""
    from blocks.docker import DockerHost
    from blocks.registry import RegistryCredentials

    password = os.environ.get(PASSWORD_ENV)
    return DockerHost(base_url=docker_host), RegistryCredentials.for_registry(
        registry, username=username, password=password, insecure=insecure
    )


def _build_scan_push(config: Any, host: Any, creds: Any) -> Any:
    """``build --push``: the build_scan_push flow (build, scan, gate, push), as a flow run
    when a Prefect API answers, else the same steps directly; the build's result with the
    pushed digest and reference. A blocked gate raises PolicyError: nothing is pushed."""
    from flows.build_scan_push import build_scan_push_blocking
    from flows.steps import build_scan_push_directly
    from shipyard.cli.runner import run_flow

    done = run_flow(
        build_scan_push_blocking,
        build_scan_push_directly,
        build=config,
        docker_host=host,
        registry=creds,
    )
    return done.built.model_copy(update={"digest": done.digest, "reference": done.reference})


def register(app: typer.Typer) -> None:
    """Add `build`, `scan`, `push` and `scan-gate` to ``app``."""

    @app.command("scan-gate")
    def scan_gate(
        report: Annotated[
            Path, typer.Option("--report", help="A trivy JSON report (SchemaVersion 2).")
        ],
        fail_on: FailOn = "HIGH,CRITICAL",
        ignore_unfixed: IgnoreUnfixed = False,
        ignorefile: IgnoreFile = None,
        json_out: JsonOut = False,
    ) -> None:
        """Apply the scan policy to a trivy report: exit 0 passed, 1 blocked, 2 bad input."""
        from tasks.scan_policy import evaluate_gate, parse_trivy_report

        policy = load_policy(fail_on, ignore_unfixed, ignorefile)
        findings = parse_trivy_report(load_report(report), str(report))
        gate = evaluate_gate(findings, policy, date.today())
        if json_out:
            typer.echo(json.dumps(gate.contract()))
        else:
            typer.echo(gate.summary())
        if not gate.passed:
            raise typer.Exit(1)

    @app.command("build")
    def build(
        repo: Annotated[str, typer.Option("--repo", help="Git URL of the app source.")],
        commit: Annotated[str, typer.Option("--commit", help="Full commit SHA to build.")],
        image: Annotated[str, typer.Option("--image", help="Image repository, no tag.")],
        dockerfile: Annotated[
            str, typer.Option(help="Dockerfile path in the repo.")
        ] = "Dockerfile",
        context: Annotated[str, typer.Option(help="Build context dir in the repo.")] = ".",
        target: Annotated[str | None, typer.Option(help="Multi-stage target.")] = None,
        build_arg: Annotated[
            list[str] | None, typer.Option("--build-arg", help="KEY=VALUE, repeatable.")
        ] = None,
        platform: Annotated[str | None, typer.Option(help="e.g. linux/amd64.")] = None,
        tag: Annotated[
            list[str] | None, typer.Option("--tag", help="Extra tag, repeatable.")
        ] = None,
        cache_from: Annotated[
            list[str] | None, typer.Option("--cache-from", help="Image to reuse layers from.")
        ] = None,
        push: Annotated[
            bool,
            typer.Option(
                "--push", help="Also scan (image and source), gate, push and print the digest."
            ),
        ] = False,
        username: Username = None,
        insecure: Insecure = None,
        docker_host: DockerHostOpt = None,
        json_out: JsonOut = False,
    ) -> None:
        """Build an image from a commit (skipped when the registry already has it)."""
        from shipyard.cli.options import image_name, image_tags
        from tasks.build_image import BuildImageConfig, run_build

        image_name(image)
        image_tags(tag)
        args: dict[str, str] = {}
        for item in build_arg or []:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise ConfigError(f"--build-arg {item!r} must be KEY=VALUE")
            args[key] = value
        config = _validated(
            BuildImageConfig,
            repo_url=repo,
            commit=commit,
            repository=image,
            dockerfile=dockerfile,
            context=context,
            target=target,
            build_args=args,
            platform=platform,
            extra_tags=tag or [],
            cache_from=cache_from or [],
        )
        host, creds = _connections(config.registry, username, insecure, docker_host)
        if push:
            result = _build_scan_push(config, host, creds)
        else:
            result = run_build(config, host, creds)
        out: dict[str, Any] = result.model_dump(mode="json", exclude={"log_tail"})
        if json_out:
            typer.echo(json.dumps(out))
        else:
            typer.echo(out.get("reference") or result.local_reference)

    @app.command("push")
    def push_cmd(
        image: Annotated[str, typer.Argument(help="Image repository (no tag).")],
        tag: Annotated[list[str], typer.Option("--tag", help="Tag to push, repeatable.")],
        username: Username = None,
        insecure: Insecure = None,
        docker_host: DockerHostOpt = None,
        json_out: JsonOut = False,
    ) -> None:
        """Push local tags of IMAGE; print the immutable reference repo@sha256:..."""
        from shipyard.cli.options import image_name, image_tags
        from shipyard.cli.runner import run_flow
        from shipyard.core.oci import split_repository
        from tasks.push_image import PushImageConfig

        registry, _ = split_repository(image_name(image))
        image_tags(tag)
        config = _validated(PushImageConfig, repository=image, tags=tag)
        from flows import steps

        host, creds = _connections(registry, username, insecure, docker_host)
        result = run_flow(steps.push_step, steps.push_steps, config, host, creds)
        typer.echo(json.dumps(result.model_dump(mode="json")) if json_out else result.reference)

    @app.command("scan")
    def scan_cmd(
        image: Annotated[str, typer.Argument(help="Image reference (tag or @sha256 digest).")],
        source: Annotated[
            Path | None,
            typer.Option("--source", help="Also scan this source directory (trivy fs)."),
        ] = None,
        fail_on: FailOn = "HIGH,CRITICAL",
        ignore_unfixed: IgnoreUnfixed = False,
        ignorefile: IgnoreFile = None,
        sbom: Annotated[
            Path | None, typer.Option("--sbom", help="Write the CycloneDX SBOM here.")
        ] = None,
        db_repository: Annotated[
            str | None, typer.Option("--db-repository", help="Mirrored trivy DB (air-gapped).")
        ] = None,
        cache_dir: Annotated[
            Path | None,
            typer.Option(
                "--cache-dir", help="Trivy DB/cache and scan results (default ~/.cache/shipyard)."
            ),
        ] = None,
        local: Annotated[
            bool,
            typer.Option("--local", help="Scan the image in the Docker engine, not a registry."),
        ] = False,
        username: Username = None,
        insecure: Insecure = None,
        docker_host: DockerHostOpt = None,
        json_out: JsonOut = False,
    ) -> None:
        """Scan an image (and its source) with trivy and apply the gate; exit 1 if blocked."""
        from shipyard.cli.options import image_reference
        from shipyard.cli.runner import run_flow
        from tasks.scan_image import ScanConfig

        registry = image_reference(image).registry
        policy = load_policy(fail_on, ignore_unfixed, ignorefile)
        config = _validated(
            ScanConfig,
            image=image,
            image_src="docker" if local else "remote",
            source_dir=str(source) if source else None,
            db_repository=db_repository,
            sbom_path=str(sbom) if sbom else None,
            **(
                {
                    "cache_dir": str(cache_dir / "trivy"),
                    "result_cache_dir": str(cache_dir / "scans"),
                }
                if cache_dir
                else {}
            ),
        )
        from flows import steps

        host, creds = _connections(registry, username, insecure, docker_host)
        result = run_flow(steps.scan_step, steps.scan_steps, config, policy, creds, host)
        if json_out:
            out = result.gate.contract()
            out["image"] = image
            out["sbom"] = result.sbom_path
            out["cached"] = result.cached
            typer.echo(json.dumps(out))
        else:
            typer.echo(result.gate.summary())
        if not result.gate.passed:
            raise PolicyError(result.gate.summary())
