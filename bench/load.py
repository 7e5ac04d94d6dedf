"""Load: a burst of image pushes for many apps of one GitOps repo, delivered by Kubernetes
workers against the cluster simulator, on SQLite and on PostgreSQL side by side.

For each database a whole stack of its own is started (free ports, temporary state
dir), seeded with ``--apps`` apps in ``--environments`` environments (one catalog, one
GitOps repo), and then, for 1 worker and for 2: ``--pushes`` real image pushes go to the
real registry as fast as it takes them; the registry notifies the bridge, the bridge's
events fire the `deliver` automation, and the workers run the deliveries as Jobs whose
process-backed pods run the flow. It prints, per database and worker count:

* deliveries completed / failed / lost / duplicated (goal: all completed, 0 lost,
  0 duplicated), and apps half-applied (git and the cluster disagree at the end);
* p50/p95 seconds from push to run created (the automation fired), started (the flow
  process is up in its pod) and verified (the run's end);
* deliveries per minute with 1 and with 2 workers, and the scale-out ratio;
* GitOps: `commit-and-push` task retries and writer-lock waits (writes that queued
  behind another writer of the repo, derived from the task runs' intervals);
* Prefect API p50/p95 latency (a flow-run query sampled every second during the burst)
  and the peak RSS of the server (with PostgreSQL/Redis when used) and the workers.

Usage::

    python bench/load.py --apps 20 --pushes 20                    # both databases
    python bench/load.py --apps 200 --environments 3 --pushes 100 --database postgresql
    python bench/load.py --workers 1 --database sqlite --json
    python bench/load.py --database postgresql --messaging memory   # PostgreSQL alone

The PostgreSQL stack runs the production profile (``stack up --database postgresql
--messaging redis``) unless ``--messaging memory``.

The defaults are the issue's (200 apps, 100 pushes); on a 2-core machine use a few
dozen (docs/production.md, "Load figures", gives the size measured there).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _load_common as lc


def _say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_burst(platform: lc.Platform, pushes: int, workers: int, timeout: float) -> dict[str, Any]:
    """One burst of ``pushes`` with ``workers`` workers; its figures."""
    lc.start_workers(platform, workers)
    since = time.time()
    with lc.sampling(platform) as samples:
        pushed = lc.push_burst(platform, pushes, f"w{workers}-{int(since)}", _say)
        deliveries = lc.wait_settled(platform, pushed, since, timeout, say=_say)
    counts = lc.summary(deliveries)
    waits, waited = lc.writer_waits(deliveries)
    seen, explained = lc.failures_explained(deliveries)
    return {
        "workers": workers,
        **counts,
        "half_applied": len(lc.half_applied(platform)),
        **lc.latencies(deliveries),
        "deliveries_per_minute": lc.throughput(deliveries),
        "gitops_commit_and_push_retries": lc.task_retries(deliveries, "commit-and-push"),
        "gitops_writer_lock_waits": waits,
        "gitops_writer_lock_wait_s": waited,
        "failures_seen": seen,
        "failures_explained": explained,
        **samples.report(),
        "seconds": round(time.time() - since, 1),
    }


def run_database(args: argparse.Namespace, database: str) -> dict[str, Any]:
    """A stack on ``database``, seeded, then one burst per worker count."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    started = time.monotonic()
    with lc.temp_root(f"shipyard-load-{database}-") as tmp:
        _say(f"{database}: starting the stack")
        messaging = args.messaging if database == "postgresql" else None
        platform = lc.start_stack(Path(tmp) / "stack", database, _say, messaging)
        try:
            with temporary_settings(updates={PREFECT_API_URL: platform.api_url}):
                lc.seed_load(platform, args.apps, args.environments, _say)
                _say("deploying prefect.yaml and the crashed-run automations")
                lc.deploy(platform)
                bursts = [
                    run_burst(platform, args.pushes, n, args.timeout) for n in args.worker_counts
                ]
        finally:
            lc.stop_stack(platform)
    return {
        "database": database if database == "sqlite" else f"{database}+{args.messaging}",
        "apps": args.apps,
        "environments": args.environments,
        "pushes": args.pushes,
        "bursts": bursts,
        "cores": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30),
        "total_seconds": round(time.monotonic() - started, 1),
    }


ROWS = (
    ("completed", "completed"),
    ("failed", "failed"),
    ("lost", "lost"),
    ("duplicated", "duplicated"),
    ("half-applied", "half_applied"),
    ("push->created p50/p95 s", "push_to_run_created_s"),
    ("push->started p50/p95 s", "push_to_run_started_s"),
    ("push->verified p50/p95 s", "push_to_verified_s"),
    ("deliveries/min", "deliveries_per_minute"),
    ("commit-and-push retries", "gitops_commit_and_push_retries"),
    ("writer-lock waits (s)", "gitops_writer_lock_waits"),
    ("API p50/p95 ms", "prefect_api_p95_ms"),
    ("API errors", "prefect_api_errors"),
    ("server RSS MiB", "server_rss_mib_peak"),
    ("workers RSS MiB", "workers_rss_mib_peak"),
    ("load avg 1m mean/max", "load_average_1m_mean"),
    ("failures explained", "failures_explained"),
)


def _cell(burst: dict[str, Any], key: str) -> str:
    value = burst.get(key)
    if isinstance(value, dict):
        return f"{value.get('p50')} / {value.get('p95')}"
    if key == "prefect_api_p95_ms":
        return f"{burst.get('prefect_api_p50_ms')} / {value}"
    if key == "gitops_writer_lock_waits":
        return f"{value} ({burst.get('gitops_writer_lock_wait_s')})"
    if key == "load_average_1m_mean":
        return f"{value} / {burst.get('load_average_1m_max')}"
    if key == "failures_explained":
        return f"{value} of {burst.get('failures_seen')}"
    return str(value)


def table(results: list[dict[str, Any]]) -> str:
    """The figures side by side: one column per database and worker count."""
    columns = [(r["database"], b) for r in results for b in r["bursts"]]
    heads = [f"{db} {b['workers']}w" for db, b in columns]
    width = max(len(label) for label, _ in ROWS) + 2
    lines = ["".ljust(width) + "".join(h.rjust(22) for h in heads)]
    for label, key in ROWS:
        lines.append(label.ljust(width) + "".join(_cell(b, key).rjust(22) for _, b in columns))
    for r in results:
        rates = {b["workers"]: b["deliveries_per_minute"] for b in r["bursts"]}
        if rates.get(1) and rates.get(2):
            lines.append(
                f"{r['database']}: scale-out 2 workers / 1 worker = {rates[2] / rates[1]:.2f}"
            )
    size = results[0]
    lines.append(
        f"size: {size['apps']} apps x {size['environments']} environments, "
        f"{size['pushes']} pushes per burst; machine: {size['cores']} cores, "
        f"{size['memory_gib']} GiB"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the load on the chosen databases and print the table (and JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=200, help="Apps in the catalog.")
    parser.add_argument("--environments", type=int, default=3, help="Environments per app.")
    parser.add_argument("--pushes", type=int, default=100, help="Pushes per burst.")
    parser.add_argument(
        "--workers", choices=["1", "2", "both"], default="both", help="Kubernetes workers."
    )
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument(
        "--messaging",
        choices=["memory", "redis"],
        default="redis",
        help="Messaging of the PostgreSQL stack (redis: the production profile).",
    )
    parser.add_argument(
        "--timeout", type=float, default=900, help="Seconds a burst may take to settle."
    )
    parser.add_argument("--json", action="store_true", help="Print JSON only.")
    args = parser.parse_args(argv)
    if args.apps < 1 or args.pushes < 1:
        parser.error("--apps and --pushes must be at least 1")
    args.worker_counts = [1, 2] if args.workers == "both" else [int(args.workers)]
    if args.database == "both":
        # One process per database: each its own stack, settings and clients.
        results = []
        for database in ("sqlite", "postgresql"):
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    *(argv if argv is not None else sys.argv[1:]),
                    "--database",
                    database,
                    "--json",
                ],
                stdout=subprocess.PIPE,
                text=True,
                check=True,
            ).stdout
            results.append(json.loads(out))
    else:
        results = [run_database(args, args.database)]
    if args.json and len(results) == 1:
        print(json.dumps(results[0], indent=2))
        return 0
    print(table(results))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
