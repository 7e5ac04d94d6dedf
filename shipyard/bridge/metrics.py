"""Counters the bridge exposes at ``GET /metrics`` in the Prometheus text format.

Plain integers updated on the event loop (and by the forwarder thread for ``emitted``;
an int increment under the GIL is good enough for monitoring).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Metrics:
    """What happened to requests and events since the bridge started."""

    received: Counter[str] = field(default_factory=Counter)  # requests, by source
    rejected: Counter[str] = field(default_factory=Counter)  # requests, by reason
    ignored: Counter[str] = field(default_factory=Counter)  # requests, by source
    deduplicated: Counter[str] = field(default_factory=Counter)  # events, by source
    spooled: Counter[str] = field(default_factory=Counter)  # events, by source
    emitted: int = 0  # events the Prefect API accepted
    dead_lettered: int = 0

    def add_emitted(self, n: int) -> None:
        """Forwarder callback: ``n`` events reached Prefect."""
        self.emitted += n

    def add_dead(self, n: int) -> None:
        """Forwarder callback: ``n`` events were refused for good."""
        self.dead_lettered += n

    def render(self, spool_depth: int, forwarder_up: Callable[[], bool]) -> str:
        """Prometheus exposition text."""
        out: list[str] = []

        def family(name: str, kind: str, help_text: str, rows: list[tuple[str, float]]) -> None:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")
            out.extend(f"{name}{labels} {value:g}" for labels, value in rows)

        def by(label: str, counter: Counter[str]) -> list[tuple[str, float]]:
            return [(f'{{{label}="{k}"}}', v) for k, v in sorted(counter.items())] or [("", 0)]

        family(
            "shipyard_bridge_received_total",
            "counter",
            "Webhook requests received, by source.",
            by("source", self.received),
        )
        family(
            "shipyard_bridge_rejected_total",
            "counter",
            "Requests refused (auth, malformed, too large, unknown source), by reason.",
            by("reason", self.rejected),
        )
        family(
            "shipyard_bridge_ignored_total",
            "counter",
            "Requests that carried no image push (pulls, blobs, other event types).",
            by("source", self.ignored),
        )
        family(
            "shipyard_bridge_deduplicated_total",
            "counter",
            "Events dropped as redeliveries of one already accepted.",
            by("source", self.deduplicated),
        )
        family(
            "shipyard_bridge_spooled_total",
            "counter",
            "Events accepted and written durably to the spool.",
            by("source", self.spooled),
        )
        family(
            "shipyard_bridge_emitted_total",
            "counter",
            "Events the Prefect API accepted.",
            [("", self.emitted)],
        )
        family(
            "shipyard_bridge_dead_lettered_total",
            "counter",
            "Events the Prefect API refused as invalid.",
            [("", self.dead_lettered)],
        )
        family(
            "shipyard_bridge_spool_depth",
            "gauge",
            "Events spooled and not yet accepted by the Prefect API.",
            [("", spool_depth)],
        )
        family(
            "shipyard_bridge_prefect_up",
            "gauge",
            "1 when the last attempt to reach the Prefect API succeeded.",
            [("", 1 if forwarder_up() else 0)],
        )
        return "\n".join(out) + "\n"
