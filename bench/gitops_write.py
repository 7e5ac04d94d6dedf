"""Benchmark of GitOps write-back on a generated repo, in one run.

Generates (with ``git fast-import``, a few seconds) a bare GitOps repo of 1,000 apps x 3
environments with 2,000 commits of history, then measures:

(a) one set-image + commit + push through Shipyard (shallow clone; and shallow + sparse)
    against the raw git baseline (shallow clone, sed, commit, push), as a ratio of
    medians (goal <= 1.5x);
(b) 50 concurrent updates of different apps on one branch (sparse shallow clones, as
    for any large repo): lost updates (goal 0), commits per second, push attempts, in
    four modes: optimistic (50 writers racing, no lock), serialized (a lock standing in
    for the Prefect concurrency limit), coalesced (50 threads through a WriteBatcher),
    and batched (one call with all 50 updates, one commit).

Usage: ``.venv/bin/python bench/gitops_write.py [--apps 1000] [--commits 2000] [--writers 50]``
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from shipyard.core.git import GitWriteConfig
from tasks.git_write import ImageUpdate, WriteBackResult, WriteBatcher, write_back
from tasks.set_image import SetImageConfig

ENVS = ("dev", "staging", "prod")
GIT_ID = ["-c", "user.name=Bench", "-c", "user.email=bench@example.com"]


def _git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(
        ["git", *GIT_ID, *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout


def _kustomization(app: str, env: str, tag: str) -> bytes:
    return (
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"namespace: {app}-{env}\nresources:\n  - ../base\n"
        f"images:\n  - name: registry.example/shop/{app}\n    newTag: {tag}\n"
        f"  - name: registry.example/shop/{app}-migrate\n    newTag: {tag}\n"
    ).encode()


def _deployment(app: str) -> bytes:
    return (
        f"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {app}\nspec:\n"
        f"  replicas: 2\n  selector:\n    matchLabels: {{app: {app}}}\n  template:\n"
        f"    metadata:\n      labels: {{app: {app}}}\n    spec:\n      containers:\n"
        f"        - name: {app}\n          image: registry.example/shop/{app}:0.0.0\n"
        f"          ports: [{{containerPort: 8080}}]\n"
    ).encode()


def generate(root: Path, apps: int, commits: int) -> Path:
    """A bare repo with ``apps`` x 3 environments and ``commits`` commits of history."""
    bare = root / "gitops.git"
    _git("init", "-q", "--bare", "-b", "main", str(bare))
    for key, value in (
        ("receive.denyNonFastForwards", "true"),
        ("uploadpack.allowFilter", "true"),
        ("core.logAllRefUpdates", "always"),
    ):
        _git("config", key, value, cwd=bare)
    rng = random.Random(7)
    names = [f"app{i:04d}" for i in range(apps)]
    chunks: list[bytes] = []

    def inline(path: str, data: bytes) -> None:
        chunks.append(f"M 100644 inline {path}\ndata {len(data)}\n".encode() + data + b"\n")

    ts = 1_700_000_000
    for n in range(commits):
        msg = b"seed" if n == 0 else f"bump {n}".encode()
        chunks.append(
            f"commit refs/heads/main\nmark :{n + 1}\n"
            f"committer Gen <gen@example.com> {ts + n * 60} +0000\n"
            f"data {len(msg)}\n".encode()
            + msg
            + b"\n"
        )
        if n == 0:
            for app in names:
                inline(f"apps/{app}/base/deployment.yaml", _deployment(app))
                inline(f"apps/{app}/base/kustomization.yaml", b"resources:\n  - deployment.yaml\n")
                for env in ENVS:
                    inline(
                        f"apps/{app}/{env}/kustomization.yaml", _kustomization(app, env, "1.0.0")
                    )
        else:
            chunks.append(f"from :{n}\n".encode())
            app, env = rng.choice(names), rng.choice(ENVS)
            inline(f"apps/{app}/{env}/kustomization.yaml", _kustomization(app, env, f"1.0.{n}"))
        chunks.append(b"\n")
    subprocess.run(["git", "fast-import", "--quiet"], cwd=bare, input=b"".join(chunks), check=True)
    return bare


def _update(app: str, env: str, tag: str) -> ImageUpdate:
    return ImageUpdate(
        set_image=SetImageConfig(
            path=f"apps/{app}/{env}", image=f"registry.example/shop/{app}", tag=tag
        ),
        app=app,
        environment=env,
        source_commit="0123456789ab",
    )


def baseline(url: str, work: Path, app: str, env: str, tag: str) -> None:
    """What a careful script does: shallow clone, sed, commit, push."""
    dest = work / "checkout"
    _git(
        "clone", "-q", "--depth=1", "--single-branch", "--branch=main", "--no-tags", url, str(dest)
    )
    path = dest / f"apps/{app}/{env}/kustomization.yaml"
    subprocess.run(
        [
            "sed",
            "-i",
            f"/name: registry.example\\/shop\\/{app}$/{{n;s/newTag: .*/newTag: {tag}/}}",
            str(path),
        ],
        check=True,
    )
    _git("commit", "-q", "-am", f"{app}({env}): {tag}", cwd=dest)
    _git("push", "-q", "origin", "HEAD:refs/heads/main", cwd=dest)


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_single(url: str, root: Path, rounds: int) -> dict[str, float]:
    """Medians of (a): baseline, Shipyard shallow, Shipyard shallow+sparse."""
    times: dict[str, list[float]] = {"baseline": [], "shipyard": [], "shipyard_sparse": []}
    plain = GitWriteConfig(author_name="Bench", author_email="bench@example.com", sparse=False)
    sparse = plain.model_copy(update={"sparse": True})
    for r in range(rounds):
        for kind in times:  # interleaved so drift hits all three alike
            app, env, tag = (
                f"app{(r * 3 + len(times[kind])) % 997:04d}",
                "prod",
                f"2.{r}.{kind[:1]}",
            )
            with tempfile.TemporaryDirectory(dir=root) as tmp:
                if kind == "baseline":
                    run = partial(baseline, url, Path(tmp), app, env, tag)
                else:
                    cfg = plain if kind == "shipyard" else sparse
                    run = partial(write_back, url, [_update(app, env, tag)], cfg, workdir=tmp)
                times[kind].append(_timed(run))
    return {k: statistics.median(v) for k, v in times.items()}


def bench_concurrent(url: str, bare: Path, apps: int, writers: int, mode: str) -> dict[str, float]:
    """(b): ``writers`` threads update different apps on main at once."""
    before = int(_git("rev-list", "--count", "main", cwd=bare))
    config = GitWriteConfig(
        max_attempts=100,
        backoff_seconds=0.05,
        backoff_max_seconds=1.0,
        sparse=True,
        author_name="Bench",
        author_email="bench@example.com",
    )
    batcher = WriteBatcher(partial(write_back, url, config=config), window_seconds=0.1)
    tag = f"3.0.{mode}"
    offset = {"optimistic": 100, "serialized": 300, "coalesced": 500, "batched": 700}[mode]
    targets = [(f"app{(offset + i) % apps:04d}", "staging") for i in range(writers)]
    targets = list(dict.fromkeys(targets))
    results: list[WriteBackResult] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(targets))

    def one(app: str, env: str) -> None:
        try:
            barrier.wait()
            if mode == "serialized":
                with lock:
                    results.append(write_back(url, [_update(app, env, tag)], config))
            elif mode == "coalesced":
                results.append(batcher.submit(_update(app, env, tag)))
            else:
                results.append(write_back(url, [_update(app, env, tag)], config))
        except BaseException as exc:  # noqa: BLE001 - counted below
            errors.append(exc)

    start = time.perf_counter()
    if mode == "batched":
        results.append(write_back(url, [_update(a, e, tag) for a, e in targets], config))
    else:
        threads = [threading.Thread(target=one, args=t) for t in targets]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    wall = time.perf_counter() - start
    after = int(_git("rev-list", "--count", "main", cwd=bare))
    lost = 0
    for app, env in targets:
        text = _git("show", f"main:apps/{app}/{env}/kustomization.yaml", cwd=bare)
        if f"newTag: {tag}" not in text:
            lost += 1
    commits = after - before
    attempts = [r.attempts for r in {id(r): r for r in results}.values()] or [0]
    return {
        "updates": writers,
        "lost": lost,
        "errors": len(errors),
        "commits": commits,
        "seconds": wall,
        "commits_per_s": commits / wall,
        "updates_per_s": (writers - lost) / wall,
        "max_attempts": max(attempts),
        "mean_attempts": statistics.mean(attempts),
    }


def main() -> None:
    """Generate the repo, run (a) and (b), print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=1000)
    parser.add_argument("--commits", type=int, default=2000)
    parser.add_argument("--writers", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        bare = generate(root, args.apps, args.commits)
        files = len(_git("ls-tree", "-r", "--name-only", "main", cwd=bare).splitlines())
        history = int(_git("rev-list", "--count", "main", cwd=bare))
        print(
            f"generated {args.apps} apps x {len(ENVS)} envs: {files} files, "
            f"{history} commits in {time.perf_counter() - t0:.1f}s"
        )
        url = bare.as_uri()

        single = bench_single(url, root, args.rounds)
        print(f"(a) one set-image + commit + push, median of {args.rounds}:")
        print(
            f"    raw git baseline (clone --depth 1, sed, commit, push): {single['baseline']:.3f}s"
        )
        for kind in ("shipyard", "shipyard_sparse"):
            ratio = single[kind] / single["baseline"]
            verdict = "ok" if ratio <= 1.5 else "over goal"
            print(
                f"    {kind:<16} {single[kind]:.3f}s  ratio {ratio:.2f}x (goal <= 1.5x: {verdict})"
            )

        print(f"(b) {args.writers} concurrent updates, different apps, one branch:")
        for mode in ("optimistic", "serialized", "coalesced", "batched"):
            r = bench_concurrent(url, bare, args.apps, args.writers, mode)
            print(
                f"    {mode:<10}: lost {r['lost']} (goal 0), errors {r['errors']}, "
                f"{r['commits']:.0f} commits in {r['seconds']:.2f}s = "
                f"{r['commits_per_s']:.2f} commits/s, {r['updates_per_s']:.2f} updates/s, "
                f"attempts max {r['max_attempts']:.0f} mean {r['mean_attempts']:.1f}"
            )
        ok = bare.joinpath("logs/refs/heads/main").exists()
        forced = 0
        if ok:
            for line in bare.joinpath("logs/refs/heads/main").read_text().splitlines():
                old, new = line.split()[:2]
                if set(old) != {"0"}:
                    probe = subprocess.run(
                        ["git", "merge-base", "--is-ancestor", old, new], cwd=bare, check=False
                    )
                    forced += probe.returncode != 0
        print(f"    non-fast-forward ref updates on the remote: {forced}")


if __name__ == "__main__":
    main()
