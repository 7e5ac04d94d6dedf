"""The on-disk spool: in order, durable across reopen, cursor, rotation, torn tails."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from shipyard.bridge.spool import Spool
from shipyard.core.errors import ConfigError


def records(start: int, n: int) -> list[dict[str, object]]:
    return [{"id": f"e{i}", "n": i} for i in range(start, start + n)]


def drain(spool: Spool, limit: int = 7) -> list[int]:
    seen: list[int] = []
    while (batch := spool.read_batch(limit)) is not None:
        seen += [int(r["n"]) for r in batch.records]
        spool.ack(batch)
    return seen


def test_in_order_and_acked(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append(records(0, 20))
    assert spool.depth == 20
    assert drain(spool) == list(range(20))
    assert spool.depth == 0
    assert spool.read_batch() is None


def test_unacked_survives_reopen(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append(records(0, 10))
    batch = spool.read_batch(4)
    assert batch is not None
    spool.ack(batch)
    unacked = spool.read_batch(3)  # read but "crashed" before ack
    assert unacked is not None
    spool.close()

    again = Spool(tmp_path)
    assert again.depth == 6
    assert drain(again) == list(range(4, 10))


def test_rotation_and_cleanup(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=200)
    for i in range(10):
        spool.append(records(i * 3, 3))
    assert len(list(tmp_path.glob("seg-*.jsonl"))) > 3
    assert drain(spool) == list(range(30))
    spool.append(records(30, 1))
    assert drain(spool) == [30]
    assert len(list(tmp_path.glob("seg-*.jsonl"))) == 1
    spool.close()
    assert Spool(tmp_path).depth == 0


def test_torn_tail_is_dropped(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append(records(0, 2))
    spool.close()
    (segment,) = tmp_path.glob("seg-*.jsonl")
    with open(segment, "ab") as fh:
        fh.write(b'{"id": "half')
    again = Spool(tmp_path)
    assert again.depth == 2
    again.append(records(2, 1))
    assert drain(again) == [0, 1, 2]


def test_one_writer_per_directory(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    with pytest.raises(ConfigError, match=r"in use by pid \d+"):
        Spool(tmp_path)
    spool.close()
    Spool(tmp_path).close()  # free again once closed


def test_failed_write_leaves_no_partial_batch(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append(records(0, 1))
    good = spool._file
    spool._file = io.FileIO("/dev/full", "ab")  # a real ENOSPC on write
    with pytest.raises(OSError):
        spool.append(records(1, 3))
    spool._file.close()
    spool._file = good
    assert spool.depth == 1
    spool.append(records(1, 1))
    assert drain(spool) == [0, 1]


def test_read_ahead_while_earlier_batches_wait(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append(records(0, 10))
    first = spool.read_batch(4)
    assert first is not None
    second = spool.read_batch(4, after=first)
    assert second is not None
    third = spool.read_batch(4, after=second)
    assert third is not None
    assert [r["n"] for r in [*first.records, *second.records, *third.records]] == list(range(10))
    assert spool.read_batch(4, after=third) is None
    # Nothing is acknowledged yet: a reopened spool would send all ten again.
    assert spool.depth == 10
    spool.ack(first)
    spool.ack(second)
    assert spool.depth == 2
    again = spool.read_batch(4)
    assert again is not None and [r["n"] for r in again.records] == [8, 9]


def test_read_ahead_stops_at_the_end_of_the_cursor_segment(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=64)
    spool.append(records(0, 2))
    spool.append(records(2, 2))  # rotates: a second segment
    first = spool.read_batch(10)
    assert first is not None and [r["n"] for r in first.records] == [0, 1]
    assert spool.read_batch(10, after=first) is None  # not past the unacknowledged segment
    spool.ack(first)
    rest = spool.read_batch(10)
    assert rest is not None and [r["n"] for r in rest.records] == [2, 3]
