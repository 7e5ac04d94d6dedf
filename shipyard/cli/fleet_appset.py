"""`shipyard fleet appset`: print (or write) the Argo CD ApplicationSet equivalent to a
fleet file. Pure rendering (tasks/fleet_appset.py); bad input is one line, exit 2."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Annotated

import typer
import yaml

from shipyard.core.errors import ConfigError


def register(app: typer.Typer) -> None:
    """Add ``appset`` to the ``fleet`` group (creating the group if no module did)."""
    group = next(
        (g.typer_instance for g in app.registered_groups if g.name == "fleet"),
        None,
    )
    if group is None:
        group = typer.Typer(help="Roll one revision out across a fleet of clusters in waves.")
        app.add_typer(group, name="fleet")
    add_appset_command(group)


def add_appset_command(group: typer.Typer) -> None:
    """The ``appset`` command, added to ``group`` (the ``fleet`` typer group)."""

    @group.command("appset")
    def appset(
        fleet: Annotated[Path, typer.Option("--fleet", help="The fleet file (YAML).")],
        repo_url: Annotated[
            str,
            typer.Option("--repo-url", help="The GitOps repo's URL as Argo CD knows it."),
        ] = "",
        project: Annotated[str, typer.Option("--project", help="Argo CD project.")] = "default",
        target_revision: Annotated[
            str, typer.Option("--target-revision", help="Branch, tag or commit Argo CD tracks.")
        ] = "HEAD",
        output: Annotated[
            Path | None, typer.Option("-o", "--output", help="Write here instead of stdout.")
        ] = None,
    ) -> None:
        """Render the ApplicationSet (cluster generator by labels, RollingSync steps
        mirroring the waves); comments list the cluster-secret labels and what Argo CD
        cannot mirror (bake, approval, on_unreachable, rollback)."""
        from tasks.fleet_appset import AppSetConfig, render_appset, render_appset_yaml

        text = render_appset_yaml(
            render_appset(
                _read_fleet(fleet),
                AppSetConfig(
                    repo_url=repo_url or _origin_url(fleet),
                    project=project,
                    target_revision=target_revision,
                ),
            )
        )
        if output is None:
            typer.echo(text, nl=False)
        else:
            output.write_text(text)
            typer.echo(f"wrote {output}", err=True)


def _read_fleet(path: Path) -> dict[str, object]:
    if not path.is_file():
        raise ConfigError(f"fleet file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"fleet file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict) or data.get("kind") != "Fleet":
        raise ConfigError(f"fleet file {path} is not a shipyard.dev/v1 Fleet")
    return data


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
