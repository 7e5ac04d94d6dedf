"""`shipyard sim-cluster`: run the Kubernetes cluster simulator in the foreground.

The simulator is a separate distribution (``packages/simcluster``, tests and demo only);
production code never imports it. This command only checks that it is installed and
hands over to ``python -m simcluster`` with the same flags.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

INSTALL_HINT = (
    "the cluster simulator is not installed: run ./scripts/setup.sh, or "
    "pip install -e packages/simcluster"
)


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
        if importlib.util.find_spec("simcluster") is None:
            typer.echo(f"error: {INSTALL_HINT}", err=True)
            raise typer.Exit(2)
        argv = [
            sys.executable, "-m", "simcluster", "--kubeconfig", str(kubeconfig),
            "--host", host, "--port", str(port), "--nodes", str(nodes),
            "--startup-delay", str(startup_delay),
            "--pull-images" if pull_images else "--no-pull-images",
        ]
        # Replace this process, so signals from the stack reach the simulator directly.
        os.execv(sys.executable, argv)  # noqa: S606 (argv is ours; no shell involved)
