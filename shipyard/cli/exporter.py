"""`shipyard exporter`: serve Shipyard's metrics for Prometheus.

``/metrics`` (Prometheus text, every metric of ``docs/observability.md``) and
``/healthz``, refreshed from the Prefect API (``PREFECT_API_URL``) every ``--interval``
seconds. Runs until interrupted; the Prefect API may be down (then
``shipyard_exporter_up`` is 0 and the last values stay). Exit 2 on a bad flag or a port
that cannot be bound.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer

from shipyard.core.errors import ConfigError

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add the ``exporter`` command."""

    @app.command("exporter")
    def exporter(
        host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
        port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 9464,
        interval: Annotated[
            float, typer.Option("--interval", help="Seconds between refreshes from Prefect.")
        ] = 15.0,
        lookback_days: Annotated[
            float, typer.Option("--lookback-days", help="History read at start (days).")
        ] = 35.0,
    ) -> None:
        """Serve /metrics and /healthz, derived from Prefect's events and runs."""
        if not 0 <= port < 65536:
            raise ConfigError(f"--port {port} is not a TCP port (0-65535; 0: any free port)")
        if interval <= 0 or lookback_days <= 0:
            raise ConfigError("--interval and --lookback-days must be positive")
        from shipyard.exporter.prefect_api import PrefectReader
        from shipyard.exporter.server import Exporter

        reader = PrefectReader()
        try:
            server = Exporter(
                reader,
                host=host,
                port=port,
                interval=interval,
                lookback=timedelta(days=lookback_days),
            )
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        typer.echo(
            f"shipyard exporter on http://{host}:{server.port}/metrics "
            f"(Prefect API {reader.api_url or 'not set'}, every {interval:g}s)",
            err=True,
        )
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            reader.close()
