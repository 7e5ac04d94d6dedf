"""The recent-deliveries set: replays refused, memory bounded, entries expire."""

from __future__ import annotations

from shipyard.bridge.dedupe import RecentSet


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_second_add_is_a_replay() -> None:
    recent = RecentSet()
    assert recent.add("a")
    assert not recent.add("a")
    assert "a" in recent


def test_capacity_evicts_oldest() -> None:
    recent = RecentSet(capacity=3)
    for key in "abcd":
        assert recent.add(key)
    assert len(recent) == 3
    assert "a" not in recent
    assert recent.add("a")  # forgotten, so new again


def test_ttl_expires() -> None:
    clock = Clock()
    recent = RecentSet(ttl=60, clock=clock)
    recent.add("a")
    clock.now += 59
    assert not recent.add("a")
    clock.now += 61
    assert recent.add("a")


def test_discard_lets_a_retry_through() -> None:
    recent = RecentSet()
    recent.add("a")
    recent.discard("a")
    assert recent.add("a")
