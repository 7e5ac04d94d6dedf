"""``python -m simcluster`` (or ``shipyard-sim-cluster``): serve a simulated Kubernetes API
in the foreground until SIGTERM/SIGINT, writing a kubeconfig once it is ready."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from simcluster.cluster import SimCluster
from simcluster.config import SimConfig


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line, with the same flags as ``shipyard sim-cluster``."""
    parser = argparse.ArgumentParser(
        prog="shipyard-sim-cluster", description="Serve a simulated Kubernetes API."
    )
    parser.add_argument(
        "--kubeconfig",
        type=Path,
        required=True,
        help="Where to write the kubeconfig once the API is ready.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="Address to listen on (loopback).")
    parser.add_argument("--port", type=int, default=0, help="Port to listen on (0: any free).")
    parser.add_argument("--nodes", type=int, default=1, help="Number of simulated nodes.")
    parser.add_argument(
        "--startup-delay",
        type=float,
        default=0.5,
        help="Seconds from image pulled to Running/Ready.",
    )
    parser.add_argument(
        "--pull-images",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Check images against their registries.",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the simulator until it is told to stop."""
    args = parse_args(argv)
    config = SimConfig(
        nodes=args.nodes, startup_delay=args.startup_delay, pull_images=args.pull_images
    )
    cluster = SimCluster(config, host=args.host, port=args.port)

    def ready() -> None:
        cluster.write_kubeconfig(args.kubeconfig)
        print(
            f"simulated cluster at {cluster.url}; kubeconfig written to {args.kubeconfig}",
            file=sys.stderr,
            flush=True,
        )

    # uvicorn turns SIGTERM/SIGINT into a graceful shutdown of the whole cluster.
    asyncio.run(cluster.serve(ready=ready))


if __name__ == "__main__":
    main()
