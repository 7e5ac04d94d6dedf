"""Benchmark `shipyard stack up`: cold (new state dir), warm (state kept, services
stopped) and no-op (everything already running), measured side by side in one run.

    .venv/bin/python bench/stack_up.py [--rounds 2]

Each start uses its own free loopback ports, so it does not disturb a stack you run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from shipyard.stack import StackLayout, stack_down, stack_up
from shipyard.stack.model import DEFAULT_PORTS


def _up(layout: StackLayout) -> tuple[float, dict[str, float]]:
    start = time.perf_counter()
    report = stack_up(layout, ports=dict.fromkeys(DEFAULT_PORTS, 0))
    total = time.perf_counter() - start
    assert report.healthy, report.to_dict()
    return total, {s.name: s.seconds or 0.0 for s in report.services}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    cold, warm, noop = [], [], []
    per_service: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-") as tmp:
        for i in range(args.rounds):
            layout = StackLayout(Path(tmp) / f"st{i}")
            seconds, services = _up(layout)
            cold.append(seconds)
            for name, s in services.items():
                per_service.setdefault(name, []).append(s)
            noop.append(_up(layout)[0])
            stack_down(layout)
            warm.append(_up(layout)[0])
            stack_down(layout)
    print(f"stack up, {args.rounds} rounds (median seconds)")
    print(f"  cold  (new state dir)        {statistics.median(cold):6.2f}")
    print(f"  warm  (state kept, stopped)  {statistics.median(warm):6.2f}")
    print(f"  no-op (already running)      {statistics.median(noop):6.2f}")
    print(
        f"  warm / cold ratio            {statistics.median(warm) / statistics.median(cold):6.2f}"
    )
    print(
        "  cold, per service: "
        + ", ".join(f"{name} {statistics.median(v):.1f}s" for name, v in per_service.items())
    )


if __name__ == "__main__":
    main()
