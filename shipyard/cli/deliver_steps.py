"""`shipyard verify` and `shipyard sync`: the delivery's cluster steps on their own.

Contracts:

- ``shipyard verify [--kubeconfig FILE] --namespace NS --workload KIND/NAME [--digest D]
  [--timeout S] [--json]``: exit 0 healthy, 1 unhealthy or timed out, 2 unusable input;
  ``--json`` prints ``{"healthy", "reason", "ready", "desired", "images", "seconds"}``.
- ``shipyard sync --driver apply [--kubeconfig FILE] --repo-dir DIR --path SUBPATH
  --namespace NS [--json]`` (``--driver argocd --application NAME``,
  ``--driver argocd --argocd-url URL`` with ``ARGOCD_AUTH_TOKEN``, or ``--driver flux
  --kustomization NAME``): exit 0 synced, 1 failed, 2 unusable input; ``--json`` prints
  ``{"revision", "driver", "applied", "pruned", "seconds"}``.

Without ``--kubeconfig`` the cluster is ``$KUBECONFIG``, else the local stack's, else
``~/.kube/config`` (:func:`shipyard.cli.options.resolve_kubeconfig`, as every command).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from shipyard.cli.runner import run_flow
from shipyard.core.errors import ConfigError

EXIT_UNHEALTHY = 1


def _validation(exc: ValidationError, what: str) -> ConfigError:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or what
    msg = str(first.get("msg", "")).removeprefix("Value error, ")
    return ConfigError(f"{where}: {msg}" if where != what else msg)


def _cluster(kubeconfig: Path | None) -> Any:
    """The cluster block the steps connect through (the kubeconfig found as every
    command finds it: :func:`shipyard.cli.options.resolve_kubeconfig`)."""
    from blocks.cluster import KubernetesCluster
    from shipyard.cli.options import resolve_kubeconfig

    return KubernetesCluster(kubeconfig_path=str(resolve_kubeconfig(kubeconfig)))


def register(app: typer.Typer) -> None:
    """Add ``verify`` and ``sync`` to ``app``."""

    @app.command("verify")
    def verify_command(
        namespace: Annotated[str, typer.Option("--namespace", help="Namespace.")] = "",
        workload: Annotated[
            str,
            typer.Option("--workload", help="deployment/NAME, statefulset/NAME, daemonset/NAME."),
        ] = "",
        kubeconfig: Annotated[
            Path | None,
            typer.Option(
                "--kubeconfig", help="kubeconfig file (default $KUBECONFIG, the stack's)."
            ),
        ] = None,
        digest: Annotated[
            str | None, typer.Option("--digest", help="sha256:... the pods must run.")
        ] = None,
        timeout: Annotated[float, typer.Option("--timeout", help="Deadline in seconds.")] = 300.0,
        json_out: Annotated[bool, typer.Option("--json", help="Print a JSON report.")] = False,
    ) -> None:
        """Wait until WORKLOAD has rolled out and is healthy (fails fast on stuck pods)."""
        from tasks.verify_rollout import VerifyConfig

        if not namespace:
            raise ConfigError("--namespace is required")
        if not workload:
            raise ConfigError("--workload is required")
        try:
            config = VerifyConfig(
                namespace=namespace, workload=workload, digest=digest, timeout_seconds=timeout
            )
        except ValidationError as exc:
            raise _validation(exc, "verify") from None
        from flows import steps

        result = run_flow(steps.verify_step, steps.verify_directly, _cluster(kubeconfig), config)
        if json_out:
            typer.echo(json.dumps(result.cli_json()))
        elif result.healthy:
            typer.echo(
                f"{workload}: healthy, {result.ready}/{result.desired} ready "
                f"({', '.join(result.images)}) in {result.seconds:.1f}s"
            )
        else:
            typer.echo(f"{workload}: {result.reason}: {result.message}", err=True)
        if not result.healthy:
            raise typer.Exit(EXIT_UNHEALTHY)

    @app.command("sync")
    def sync_command(
        driver: Annotated[str, typer.Option("--driver", help="apply, argocd or flux.")] = "apply",
        kubeconfig: Annotated[
            Path | None,
            typer.Option(
                "--kubeconfig", help="kubeconfig file (default $KUBECONFIG, the stack's)."
            ),
        ] = None,
        repo_dir: Annotated[
            str | None, typer.Option("--repo-dir", help="apply: GitOps working tree (or URL).")
        ] = None,
        path: Annotated[str | None, typer.Option("--path", help="apply: path in the repo.")] = None,
        namespace: Annotated[
            str | None, typer.Option("--namespace", help="apply: target namespace.")
        ] = None,
        revision: Annotated[
            str | None, typer.Option("--revision", help="Commit to sync (default HEAD/tip).")
        ] = None,
        app_name: Annotated[
            str | None, typer.Option("--app", help="apply: app name for the ownership label.")
        ] = None,
        no_prune: Annotated[bool, typer.Option("--no-prune", help="apply: do not prune.")] = False,
        application: Annotated[
            str | None, typer.Option("--application", help="argocd: Application name.")
        ] = None,
        application_namespace: Annotated[
            str, typer.Option("--application-namespace", help="argocd: its namespace.")
        ] = "argocd",
        argocd_url: Annotated[
            str | None,
            typer.Option(
                "--argocd-url", help="argocd: use the REST API (token: ARGOCD_AUTH_TOKEN)."
            ),
        ] = None,
        kustomization: Annotated[
            str | None, typer.Option("--kustomization", help="flux: Kustomization name.")
        ] = None,
        source: Annotated[
            str | None, typer.Option("--source", help="flux: GitRepository name.")
        ] = None,
        flux_namespace: Annotated[
            str, typer.Option("--flux-namespace", help="flux: namespace.")
        ] = "flux-system",
        timeout: Annotated[float, typer.Option("--timeout", help="Deadline in seconds.")] = 300.0,
        json_out: Annotated[bool, typer.Option("--json", help="Print a JSON report.")] = False,
    ) -> None:
        """Make the cluster converge to the GitOps repo (direct apply, Argo CD or Flux)."""
        from tasks.sync.plan import needs_cluster, plan_sync

        if driver == "apply" and repo_dir and "://" not in repo_dir and not Path(repo_dir).is_dir():
            raise ConfigError(f"--repo-dir {repo_dir!r} is not a directory")
        config = plan_sync(
            driver,
            revision=revision,
            timeout_seconds=timeout,
            repo=repo_dir,
            path=path,
            namespace=namespace,
            app=app_name,
            prune=not no_prune,
            application=application,
            application_namespace=application_namespace,
            argocd_url=argocd_url,
            argocd_token=os.environ.get("ARGOCD_AUTH_TOKEN"),
            kustomization=kustomization,
            source=source,
            flux_namespace=flux_namespace,
        )
        from blocks.cluster import KubernetesCluster

        cluster = _cluster(kubeconfig) if needs_cluster(config) else KubernetesCluster()
        from flows import steps

        result = run_flow(steps.sync_step, steps.sync_steps, cluster, config)
        if json_out:
            typer.echo(
                json.dumps(
                    {
                        "revision": result.revision,
                        "driver": driver,
                        "applied": result.applied,
                        "pruned": result.pruned,
                        "seconds": round(result.seconds, 3),
                    }
                )
            )
            return
        typer.echo(f"synced {result.revision[:12]} with {driver} in {result.seconds:.1f}s")
        for ref in result.applied:
            typer.echo(f"  applied {ref}")
        for ref in result.pruned:
            typer.echo(f"  pruned {ref}")
