"""Run-time fault injection: make chosen API calls fail the way real servers fail.

A rule matches a verb and a resource (``*`` for any) and, a given number of times or
with a probability, answers 429 with Retry-After, 500, 503, drops the connection, or
delays the response. Rules are switched at run time through :class:`FaultInjector`
(the pytest fixture's handle) or ``POST /_sim/faults``. Thread-safe, since tests set
rules from their own thread while the server runs on another.
"""

from __future__ import annotations

import random
import threading
from dataclasses import asdict, dataclass
from typing import Any, Literal

FaultKind = Literal["429", "500", "503", "drop", "slow"]
KINDS: tuple[str, ...] = ("429", "500", "503", "drop", "slow")


@dataclass
class FaultRule:
    """One fault: which calls (``verb``/``resource``, ``*`` = any) and what happens.

    ``count`` limits how many calls it hits (None: unlimited); ``probability`` makes
    each matching call fail at random; ``delay`` is the pause for ``slow`` (and is
    added before any other kind); ``retry_after`` the 429 header in seconds.
    """

    kind: str
    verb: str = "*"
    resource: str = "*"
    namespace: str = "*"
    count: int | None = None
    probability: float = 1.0
    delay: float = 0.0
    retry_after: int = 1

    def __post_init__(self) -> None:
        for name in ("kind", "verb", "resource", "namespace"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be a string")
        if self.count is not None and (
            not isinstance(self.count, int) or isinstance(self.count, bool)
        ):
            raise ValueError("count must be an integer or null")
        for name in ("probability", "delay"):
            if not isinstance(getattr(self, name), int | float) or isinstance(
                getattr(self, name), bool
            ):
                raise ValueError(f"{name} must be a number")
        if not isinstance(self.retry_after, int) or isinstance(self.retry_after, bool):
            raise ValueError("retry_after must be an integer")
        if self.kind not in KINDS:
            raise ValueError(f"fault kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError("probability must be between 0 and 1")

    def matches(self, verb: str, resource: str, namespace: str) -> bool:
        base = resource.split("/", 1)[0]
        return (
            self.verb in ("*", verb)
            and self.resource in ("*", resource, base)
            and self.namespace in ("*", namespace)
        )

    @classmethod
    def from_json(cls, data: Any) -> FaultRule:
        if not isinstance(data, dict):
            raise ValueError("a fault rule must be an object")
        allowed = set(cls.__dataclass_fields__)
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"unknown fault rule fields: {', '.join(sorted(unknown))}")
        return cls(**data)


class FaultInjector:
    """The active rules; ``pick`` decides the fault (if any) for one request."""

    def __init__(self, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._random = random.Random(seed)  # noqa: S311 - fault dice, not security
        self.injected = 0

    def set(self, rules: list[FaultRule]) -> None:
        """Replace all rules."""
        with self._lock:
            self._rules = list(rules)

    def add(self, rule: FaultRule | None = None, **kwargs: Any) -> FaultRule:
        """Add one rule (``add(kind="429", verb="list", resource="pods", count=2)``)."""
        rule = rule or FaultRule(**kwargs)
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self._rules = []

    def rules(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(r) for r in self._rules]

    def pick(self, verb: str, resource: str, namespace: str) -> FaultRule | None:
        """The rule to apply to this call, consuming one of its ``count``."""
        with self._lock:
            for rule in self._rules:
                if rule.count is not None and rule.count <= 0:
                    continue
                if not rule.matches(verb, resource, namespace):
                    continue
                if rule.probability < 1.0 and self._random.random() >= rule.probability:
                    continue
                if rule.count is not None:
                    rule.count -= 1
                self.injected += 1
                return rule
        return None
