"""`shipyard sim-cluster`: run the Kubernetes cluster simulator in the foreground.

Test and demo tooling only: production code never imports :mod:`simcluster`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add the ``sim-cluster`` command to ``app``."""

    @app.command("sim-cluster")
    def sim_cluster(
        kubeconfig: Annotated[
            Path,
            typer.Option(
                "--kubeconfig", help="Where to write the kubeconfig once the API is ready."
            ),
        ],
        host: Annotated[
            str, typer.Option("--host", help="Address to listen on (loopback).")
        ] = "127.0.0.1",
        port: Annotated[
            int, typer.Option("--port", help="Port to listen on (0: any free port).")
        ] = 0,
        nodes: Annotated[int, typer.Option("--nodes", help="Number of simulated nodes.")] = 1,
        startup_delay: Annotated[
            float,
            typer.Option("--startup-delay", help="Seconds from image pulled to Running/Ready."),
        ] = 0.5,
        pull_images: Annotated[
            bool,
            typer.Option(
                "--pull-images/--no-pull-images", help="Check images against their registries."
            ),
        ] = True,
    ) -> None:
        """Serve a simulated Kubernetes API until SIGTERM/SIGINT (writes KUBECONFIG when ready)."""
        from simcluster.cluster import SimCluster
        from simcluster.config import SimConfig

        config = SimConfig(nodes=nodes, startup_delay=startup_delay, pull_images=pull_images)
        cluster = SimCluster(config, host=host, port=port)

        def ready() -> None:
            cluster.write_kubeconfig(kubeconfig)
            typer.echo(
                f"simulated cluster at {cluster.url}; kubeconfig written to {kubeconfig}", err=True
            )

        # uvicorn turns SIGTERM/SIGINT into a graceful shutdown of the whole cluster.
        asyncio.run(cluster.serve(ready=ready))
