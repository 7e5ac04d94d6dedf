"""``shipyard drift-check``: does what runs still match what git declares?

One cluster: ``--path`` and ``--namespace`` of an environment in ``--repo``, compared
with the cluster of ``--kubeconfig`` (flag, $KUBECONFIG, then the local stack's). A
fleet: ``--fleet FILE`` compares every cluster of the fleet file with the rollout's path
(``{cluster}`` filled in) in its namespace, at most ``--max-parallel`` clusters at once;
an unreachable cluster is reported and the others still run. Each runs its Prefect flow
(``drift-check`` / ``drift-check-fleet``) when an API answers, the same steps directly
otherwise.

Exit codes: 0 nothing drifted, 1 drift found or a cluster could not be checked, 2 bad
input (one line on stderr). ``--json`` prints the report: one cluster
``{drifted, revision, namespace, items: [{object, change, differences}]}``; a fleet
``{passed, fleet, action, clusters: [{cluster, status, reason, revision, drifted}]}``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from shipyard.cli.runner import run_flow
from shipyard.core.errors import ConfigError

__all__ = ["register"]

EXIT_FAILED = 1


def _fleet(
    fleet: str, repo: str, branch: str, revision: str | None, max_parallel: int, json_out: bool
) -> None:
    from flows.drift_check import drift_check_fleet, drift_check_fleet_directly

    report = run_flow(
        drift_check_fleet,
        drift_check_fleet_directly,
        fleet,
        repo,
        branch=branch,
        revision=revision,
        max_parallel=max_parallel,
    )
    if json_out:
        typer.echo(json.dumps(report.cli_json()))
    else:
        for c in report.clusters:
            typer.echo(f"{c.cluster:<20} {c.status:<12} {c.reason}")
            for item in c.drifted:
                typer.echo(f"  {item}")
        typer.echo(report.summary(), err=not report.passed)
    if report.drifted or not report.passed:
        raise typer.Exit(EXIT_FAILED)


def register(app: typer.Typer) -> None:
    """Add ``drift-check`` to ``app``."""

    @app.command("drift-check")
    def drift_check_cmd(
        repo: Annotated[
            str,
            typer.Option("--repo", "--repo-dir", help="GitOps repo: a working tree or a URL."),
        ] = "",
        fleet: Annotated[
            str | None,
            typer.Option("--fleet", help="Fleet file: check every cluster of the fleet."),
        ] = None,
        path: Annotated[
            str | None, typer.Option("--path", help="One cluster: the environment's path.")
        ] = None,
        namespace: Annotated[
            str | None, typer.Option("--namespace", help="One cluster: the app's namespace.")
        ] = None,
        app_name: Annotated[
            str | None,
            typer.Option(
                "--app", help="One cluster: ownership label value (default: path's last part)."
            ),
        ] = None,
        managed_by: Annotated[
            str,
            typer.Option("--managed-by", help="One cluster: shipyard, argocd or flux."),
        ] = "shipyard",
        kubeconfig: Annotated[
            Path | None,
            typer.Option("--kubeconfig", help="One cluster: its kubeconfig.", show_default=False),
        ] = None,
        branch: Annotated[
            str, typer.Option("--branch", help="Branch compared (its tip).")
        ] = "main",
        revision: Annotated[
            str | None, typer.Option("--revision", help="Compare with this commit instead.")
        ] = None,
        max_parallel: Annotated[
            int, typer.Option("--max-parallel", help="Fleet: clusters checked at once.")
        ] = 4,
        json_out: Annotated[bool, typer.Option("--json", help="Print a JSON report.")] = False,
    ) -> None:
        """Compare live objects with git, for one cluster or every cluster of a fleet."""
        if not repo.strip():
            raise ConfigError("--repo is required")
        if max_parallel < 1:
            raise ConfigError("--max-parallel must be at least 1")
        if fleet is not None:
            if path or namespace or kubeconfig or app_name:
                raise ConfigError(
                    "--fleet takes path, namespace and clusters from the fleet file: "
                    "drop --path, --namespace, --app and --kubeconfig"
                )
            _fleet(fleet, repo, branch, revision, max_parallel, json_out)
            return
        if not path or not namespace:
            raise ConfigError("give --path and --namespace (one cluster) or --fleet FILE")
        from pathlib import PurePosixPath

        from blocks.cluster import KubernetesCluster
        from flows.drift_check import DriftConfig, drift_check, drift_check_directly
        from shipyard.cli.options import resolve_kubeconfig
        from shipyard.core.config import parse_config

        config = parse_config(
            DriftConfig,
            {
                "repo": repo,
                "path": path,
                "namespace": namespace,
                "branch": branch,
                "revision": revision,
                "app": app_name or PurePosixPath(path.rstrip("/")).name or "app",
                "managed_by": managed_by,
            },
        )
        cluster = KubernetesCluster(kubeconfig_path=str(resolve_kubeconfig(kubeconfig)))
        report = run_flow(drift_check, drift_check_directly, cluster, config)
        if json_out:
            typer.echo(json.dumps({"drifted": report.drifted, **report.model_dump()}))
        else:
            for item in report.items:
                typer.echo(f"{item.object:<40} {item.change}")
                for line in item.differences:
                    typer.echo(f"  {line}")
            verdict = "drifted" if report.drifted else "matches git"
            typer.echo(f"{namespace} {verdict} at {report.revision[:12]}")
        if report.drifted:
            raise typer.Exit(EXIT_FAILED)
