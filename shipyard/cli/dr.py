"""`shipyard backup | restore-drill`: disaster-recovery backups and restore drills.

Flags, exit codes and JSON keys are a contract (issue 8): exit 0 success / drill
passed, 1 drill failed, 2 unusable input (missing kubeconfig, unknown bucket or backup
id), with one line on stderr. Each command runs its Prefect flow, so runs show up in
the UI like scheduled ones. AWS credentials come from the usual environment variables.

Fleets: ``backup --fleet FILE`` backs up every cluster of a fleet file (flow
``backup-fleet``), each under ``<prefix>/<cluster>/``, ``--namespaces`` defaulting to
the fleet's rollout namespace; exit 1 when a cluster could not be backed up (the others
still are), ``--json`` ``{passed, fleet, action, clusters: [{cluster, status, reason,
backup_id, backup_key, objects, bytes}]}``. ``restore-drill --cluster NAME`` drills a
backup of that cluster (``--fleet FILE`` also takes its kubeconfig from the fleet).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from shipyard.cli.runner import run_flow
from shipyard.core.errors import ConfigError

JsonOut = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
Kubeconfig = Annotated[
    Path | None,
    typer.Option(
        "--kubeconfig",
        help="kubeconfig of the cluster (default $KUBECONFIG, then the local stack's).",
        show_default=False,
    ),
]
Bucket = Annotated[str, typer.Option("--bucket", help="S3 bucket holding the backups.")]
Prefix = Annotated[str, typer.Option("--prefix", help="Key prefix of the backups.")]
Endpoint = Annotated[
    str | None,
    typer.Option("--s3-endpoint", envvar="SHIPYARD_S3_ENDPOINT", help="S3-compatible endpoint."),
]
DEFAULT_PREFIX = "shipyard-backups"
Fleet = Annotated[
    str | None,
    typer.Option("--fleet", help="Fleet file: every cluster of it (backup), or --cluster's."),
]


def _fleet_kubeconfig(fleet: str, cluster: str) -> Path:
    """The kubeconfig of ``cluster`` in the fleet file (ConfigError when not there)."""
    from tasks.fleet.survey import load_fleet_targets

    for c in load_fleet_targets(fleet).clusters:
        if c.name == cluster:
            if c.context:
                raise ConfigError(
                    f"cluster {cluster!r} uses kubeconfig context {c.context!r}: "
                    "pass --kubeconfig with that context current instead of --fleet"
                )
            return Path(c.kubeconfig)
    raise ConfigError(f"cluster {cluster!r} is not in fleet file {fleet}")


def _backup_fleet(
    fleet: str,
    names: list[str],
    bucket: str,
    prefix: str,
    s3_endpoint: str | None,
    max_parallel: int,
    json_out: bool,
) -> None:
    from flows.backup import backup_fleet, backup_fleet_directly

    report = run_flow(
        backup_fleet,
        backup_fleet_directly,
        fleet,
        namespaces=names or None,
        bucket=bucket,
        prefix=prefix,
        s3_endpoint=s3_endpoint,
        max_parallel=max_parallel,
    )
    if json_out:
        typer.echo(json.dumps(report.cli_json()))
    else:
        for c in report.clusters:
            typer.echo(f"{c.cluster:<20} {c.status:<12} {c.backup_key or c.reason}")
        typer.echo(report.summary(), err=not report.passed)
    if not report.passed:
        raise typer.Exit(1)


def _where(
    kubeconfig: Path | None, bucket: str, prefix: str, s3_endpoint: str | None
) -> dict[str, Any]:
    """The cluster and storage arguments both flows take; the kubeconfig is found as
    every command finds it (flag, $KUBECONFIG, the stack's), ConfigError without one."""
    from shipyard.cli.options import resolve_kubeconfig

    return {
        "kubeconfig": str(resolve_kubeconfig(kubeconfig)),
        "bucket": bucket,
        "prefix": prefix,
        "s3_endpoint": s3_endpoint,
    }


def register(app: typer.Typer) -> None:
    """Add `backup` and `restore-drill` to ``app``."""

    @app.command("backup")
    def backup_cmd(
        bucket: Bucket,
        namespaces: Annotated[
            str,
            typer.Option(
                "--namespaces",
                help="Comma-separated namespaces to back up (with --fleet: default its namespace).",
            ),
        ] = "",
        kubeconfig: Kubeconfig = None,
        prefix: Prefix = DEFAULT_PREFIX,
        s3_endpoint: Endpoint = None,
        fleet: Fleet = None,
        max_parallel: Annotated[
            int, typer.Option("--max-parallel", help="With --fleet: clusters backed up at once.")
        ] = 4,
        json_out: JsonOut = False,
    ) -> None:
        """Export namespaces (custom resources and their CRDs included) to S3."""
        names = [n.strip() for n in namespaces.split(",") if n.strip()]
        if fleet is not None:
            if kubeconfig is not None:
                raise ConfigError("--fleet takes every cluster's kubeconfig from the fleet file")
            if max_parallel < 1:
                raise ConfigError("--max-parallel must be at least 1")
            _backup_fleet(fleet, names, bucket, prefix, s3_endpoint, max_parallel, json_out)
            return
        if not names:
            raise ConfigError("--namespaces is empty")
        from flows.backup import backup
        from flows.steps import backup_directly

        where = _where(kubeconfig, bucket, prefix, s3_endpoint)
        result = run_flow(backup, backup_directly, namespaces=names, **where)
        if json_out:
            typer.echo(
                json.dumps(
                    {
                        "backup_id": result.backup_id,
                        "objects": result.objects,
                        "bytes": result.bytes,
                    }
                )
            )
        else:
            typer.echo(f"backup {result.backup_id}: {result.objects} objects, {result.bytes} bytes")

    @app.command("restore-drill")
    def restore_drill_cmd(
        bucket: Bucket,
        kubeconfig: Kubeconfig = None,
        prefix: Prefix = DEFAULT_PREFIX,
        s3_endpoint: Endpoint = None,
        backup: Annotated[
            str, typer.Option("--backup", help="Backup id, 'latest' or 'random'.")
        ] = "latest",
        rto_target: Annotated[
            float | None,
            typer.Option("--rto-target", help="RTO target in seconds; a slower drill fails."),
        ] = None,
        cluster: Annotated[
            str,
            typer.Option("--cluster", help="Whose backups: the key segment after the prefix."),
        ] = "default",
        fleet: Fleet = None,
        json_out: JsonOut = False,
    ) -> None:
        """Restore a backup into drill namespaces, verify parity, report RTO/RPO."""
        from tasks.drill_report import DrillResult

        if rto_target is not None and rto_target <= 0:
            raise ConfigError("--rto-target must be positive")
        from flows.restore_drill import restore_drill
        from flows.steps import restore_drill_directly

        if fleet is not None:
            if kubeconfig is not None:
                raise ConfigError("--fleet takes the cluster's kubeconfig from the fleet file")
            kubeconfig = _fleet_kubeconfig(fleet, cluster)
        where = _where(kubeconfig, bucket, prefix, s3_endpoint)
        outcome = run_flow(
            restore_drill,
            restore_drill_directly,
            backup=backup,
            rto_target_seconds=rto_target,
            cluster=cluster,
            **where,
        )
        if not isinstance(outcome, DrillResult):
            raise ConfigError(f"restore drill ended without a result: {outcome!r}")
        if json_out:
            typer.echo(json.dumps(outcome.cli_json()))
        else:
            verdict = "PASSED" if outcome.passed else "FAILED"
            typer.echo(
                f"drill {verdict}: backup {outcome.backup_id}, {outcome.restored}/"
                f"{outcome.objects} restored, parity {outcome.parity:.4f}, "
                f"RTO {outcome.rto_seconds:.1f}s, RPO {outcome.rpo_seconds:.1f}s"
            )
            for line in outcome.failures:
                typer.echo(f"  {line}")
        if not outcome.passed:
            raise typer.Exit(1)
