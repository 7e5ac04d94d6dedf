"""Remember recent notifications so a registry's retry does not trigger a second run.

Registries redeliver when an answer is slow or lost. A bounded LRU with a time to live
keeps memory flat under load; the deterministic event id is the second line of defence
(Prefect ignores an event id it already stored), including across bridge restarts.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable


class RecentSet:
    """Keys seen within ``ttl`` seconds, at most ``capacity`` of them (oldest evicted)."""

    def __init__(
        self,
        capacity: int = 100_000,
        ttl: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capacity = capacity
        self.ttl = ttl
        self._clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, key: object) -> bool:
        expires = self._seen.get(key) if isinstance(key, str) else None
        return expires is not None and expires > self._clock()

    def add(self, key: str) -> bool:
        """Record ``key``; False when it was already there (a replay), True when new."""
        now = self._clock()
        expires = self._seen.get(key)
        if expires is not None and expires > now:
            return False
        self._seen[key] = now + self.ttl
        self._seen.move_to_end(key)
        self._evict(now)
        return True

    def discard(self, key: str) -> None:
        """Forget ``key`` (its event could not be stored, so a retry must get through)."""
        self._seen.pop(key, None)

    def _evict(self, now: float) -> None:
        while len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
        # Entries are in insertion order and share one ttl, so expired ones are first.
        while self._seen:
            key, expires = next(iter(self._seen.items()))
            if expires > now:
                break
            del self._seen[key]
