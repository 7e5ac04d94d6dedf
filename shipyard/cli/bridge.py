"""`shipyard bridge serve`: receive registry webhooks, emit Prefect events."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from shipyard.stack.model import DEFAULT_PORTS

SECRET_ENV = "SHIPYARD_BRIDGE_SECRET"  # noqa: S105 - the variable name, not a value


def register(app: typer.Typer) -> None:
    """Add the `bridge` command group to ``app``."""
    bridge = typer.Typer(help="Registry webhooks -> registry.image.pushed Prefect events.")
    app.add_typer(bridge, name="bridge")

    @bridge.command("serve")
    def serve(
        host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="Port to listen on.")] = DEFAULT_PORTS["bridge"],
        spool_dir: Annotated[
            Path | None,
            typer.Option(help="Durable spool directory (default: the stack's state dir)."),
        ] = None,
        catalog: Annotated[
            Path | None,
            typer.Option("--catalog", help="App catalog file, to add the app to each event."),
        ] = None,
        dry_run: Annotated[
            bool, typer.Option("--dry-run", help="Answer webhooks as usual; emit nothing.")
        ] = False,
        insecure_no_auth: Annotated[
            bool,
            typer.Option(
                "--insecure-no-auth", help=f"Accept webhooks without {SECRET_ENV} (testing)."
            ),
        ] = False,
        prefect_api_url: Annotated[
            str | None,
            typer.Option(help="Prefect API URL (default: PREFECT_API_URL / the profile)."),
        ] = None,
    ) -> None:
        """Serve POST /hooks/{distribution|harbor|dockerhub|ghcr|ecr}, /healthz, /metrics."""
        from pydantic import SecretStr

        from shipyard.bridge.server import BridgeConfig
        from shipyard.bridge.server import serve as run
        from shipyard.cli.main import fail
        from shipyard.core.catalog import load_catalog
        from shipyard.stack.model import StackLayout

        secret = os.environ.get(SECRET_ENV, "")
        if not secret and not insecure_no_auth:
            raise fail(f"set {SECRET_ENV} (or pass --insecure-no-auth to accept anyone's webhooks)")
        if secret and len(secret) < 16:
            raise fail(f"{SECRET_ENV} is too short: use at least 16 random characters")
        api_url, api_key, auth_string = _prefect_settings(prefect_api_url)
        if not api_url and not dry_run:
            raise fail("no Prefect API: set PREFECT_API_URL or pass --prefect-api-url")
        config = BridgeConfig(
            secret=SecretStr(secret) if secret else None,
            insecure_no_auth=insecure_no_auth,
            spool_dir=spool_dir or StackLayout.from_env().data_dir("bridge") / "spool",
            prefect_api_url=api_url or None,
            prefect_api_key=SecretStr(api_key) if api_key else None,
            prefect_auth_string=SecretStr(auth_string) if auth_string else None,
            catalog=load_catalog(catalog) if catalog else None,
            dry_run=dry_run,
        )
        typer.echo(
            f"shipyard bridge: listening on http://{host}:{port}/hooks/<source>"
            + (" (dry run)" if dry_run else f", spool {config.spool_dir}, Prefect {api_url}"),
            err=True,
        )
        run(config, host, port)


def _prefect_settings(override: str | None) -> tuple[str, str, str]:
    """Prefect API URL, API key and basic-auth string from the active Prefect settings."""
    from prefect.settings import get_current_settings

    api = get_current_settings().api
    url = override or (api.url or "")
    key = api.key.get_secret_value() if api.key else ""
    auth = api.auth_string.get_secret_value() if api.auth_string else ""
    return url, key, auth
