"""`shipyard fleet appset`: print (or write) the Argo CD ApplicationSet equivalent to a
fleet file. Pure rendering (tasks/fleet_appset.py); bad input is one line, exit 2.

Added to the ``fleet`` group of :mod:`shipyard.cli.fleet`; this module's ``register``
only makes sure it is imported (the group itself is registered by that module).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Annotated

import typer

from shipyard.cli.fleet import fleet_app
from shipyard.core.errors import ConfigError


@fleet_app.command("appset")
def appset_command(
    fleet: Annotated[Path, typer.Option("--fleet", help="Fleet file (YAML, kind Fleet).")],
    repo_url: Annotated[
        str,
        typer.Option(
            "--repo-url",
            help="The GitOps repo's URL as Argo CD knows it (default: the fleet file's "
            "checkout's origin).",
        ),
    ] = "",
    project: Annotated[str, typer.Option("--project", help="Argo CD project.")] = "default",
    target_revision: Annotated[
        str, typer.Option("--target-revision", help="Branch, tag or commit Argo CD tracks.")
    ] = "HEAD",
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write here instead of stdout.")
    ] = None,
) -> None:
    """Render the equivalent Argo CD ApplicationSet (RollingSync steps mirroring the waves).

    A clusters generator selects the fleet's cluster secrets by label; the header
    comments list the labels each secret needs and what Argo CD cannot mirror (bake,
    approval, on_unreachable, rollback, verify).
    """
    from tasks.fleet.config import load_fleet
    from tasks.fleet_appset import AppSetConfig, render_appset, render_appset_yaml

    parsed = load_fleet(fleet)
    config = AppSetConfig(
        repo_url=repo_url or _origin_url(fleet), project=project, target_revision=target_revision
    )
    text = render_appset_yaml(render_appset(parsed, config))
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text)
        typer.echo(f"wrote {output}", err=True)


def register(app: typer.Typer) -> None:
    """Nothing to add: ``appset`` joined ``fleet_app`` when this module was imported."""


def _origin_url(fleet: Path) -> str:
    """The ``origin`` remote of the git checkout holding the fleet file, when there is one."""
    proc = subprocess.run(
        ["git", "-C", str(fleet.resolve().parent), "remote", "get-url", "origin"],
        capture_output=True,
        text=True,
        check=False,
    )
    url = proc.stdout.strip() if proc.returncode == 0 else ""
    if not url:
        raise ConfigError("--repo-url is required (the fleet file is in no checkout with origin)")
    return url
