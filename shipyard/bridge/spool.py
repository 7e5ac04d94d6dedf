"""A durable, append-only, on-disk queue of Prefect events: nothing accepted is lost.

Every accepted event is appended (one JSON line) and fsynced before the webhook is
answered, so a 202 means "on disk". A forwarder reads from a persisted cursor in
order and acknowledges what the Prefect API took; after a crash or an API outage
delivery resumes from the cursor. Delivery is at least once: a batch sent just before
a crash is sent again, and Prefect drops it by event id.

Layout: ``seg-<n>.jsonl`` segments (rotated by size, deleted once fully delivered) and
``cursor.json`` (segment and byte offset of the next undelivered line), replaced
atomically.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from shipyard.core.errors import ConfigError

log = logging.getLogger(__name__)

SEGMENT_BYTES = 8 * 1024 * 1024
_PREFIX, _SUFFIX = "seg-", ".jsonl"


@dataclass(frozen=True)
class Batch:
    """Records read from the spool and the position just after the last of them."""

    records: list[dict[str, Any]]
    segment: int
    end_offset: int
    lines: int


class Spool:
    """The spool directory; safe to use from the request path and the forwarder at once."""

    def __init__(self, directory: str | os.PathLike[str], segment_bytes: int = SEGMENT_BYTES):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.segment_bytes = segment_bytes
        self._lock = threading.Lock()
        self._owner = _take_ownership(self.directory)
        segments = self._segments()
        self._cursor_segment, self._cursor_offset = self._load_cursor(segments)
        self._write_segment = max(segments[-1] if segments else 1, self._cursor_segment)
        self._repair_tail(self._write_segment)
        self._file = _open_segment(self._path(self._write_segment))
        self._depth = self._count_pending()

    # -- writing ---------------------------------------------------------------------

    def append(self, records: list[dict[str, Any]]) -> None:
        """Write ``records`` and fsync; raises OSError when the disk refuses (full, RO)."""
        if not records:
            return
        data = b"".join(orjson.dumps(r) + b"\n" for r in records)
        with self._lock:
            if self._file.tell() and self._file.tell() + len(data) > self.segment_bytes:
                self._rotate()
            start = self._file.tell()
            try:
                view = memoryview(data)
                while view:
                    written = self._file.write(view)
                    view = view[written or 0 :]
                os.fsync(self._file.fileno())
            except OSError:
                # Never leave half a batch for the reader; the file is unbuffered, so
                # nothing of the failed batch can be written later either.
                with contextlib.suppress(OSError):
                    self._file.truncate(start)
                raise
            self._depth += len(records)

    def _rotate(self) -> None:
        self._file.close()
        self._write_segment += 1
        self._file = _open_segment(self._path(self._write_segment))
        _fsync_dir(self.directory)

    # -- reading ---------------------------------------------------------------------

    @property
    def depth(self) -> int:
        """Events accepted but not yet acknowledged by the Prefect API."""
        return self._depth

    def read_batch(self, limit: int = 100, after: Batch | None = None) -> Batch | None:
        """Up to ``limit`` undelivered records in order, or None when all are delivered.

        ``after``: read the records following that (not yet acknowledged) batch, to send
        ahead while it waits for confirmation. Reading ahead stops at the end of the
        cursor's segment until the batches before it are acknowledged.
        """
        with self._lock:
            while True:
                segment, offset = self._cursor_segment, self._cursor_offset
                if after is not None and after.segment == segment and after.end_offset > offset:
                    offset = after.end_offset
                elif after is not None and after.segment != segment:
                    return None
                path = self._path(segment)
                try:
                    with open(path, "rb") as fh:
                        fh.seek(offset)
                        chunk = fh.read(1024 * 1024)
                except FileNotFoundError:
                    chunk = b""
                if not chunk:
                    if segment >= self._write_segment or offset != self._cursor_offset:
                        return None
                    self._advance_segment_locked(segment + 1)
                    continue
                records: list[dict[str, Any]] = []
                lines = 0
                pos = 0
                while lines < limit:
                    nl = chunk.find(b"\n", pos)
                    if nl < 0:
                        break
                    line = chunk[pos:nl]
                    pos = nl + 1
                    lines += 1
                    try:
                        records.append(orjson.loads(line))
                    except orjson.JSONDecodeError:
                        log.error("spool %s: skipping a corrupt line at byte %d", path, offset)
                if lines == 0:
                    return None  # only a partial line: a write in progress elsewhere
                return Batch(records, segment, offset + pos, lines)

    def ack(self, batch: Batch) -> None:
        """Mark ``batch`` delivered: persist the cursor past it, drop finished segments."""
        with self._lock:
            if batch.segment != self._cursor_segment or batch.end_offset <= self._cursor_offset:
                return
            self._cursor_offset = batch.end_offset
            self._depth = max(0, self._depth - batch.lines)
            self._save_cursor_locked()

    def close(self) -> None:
        """Close the append file (the data is already durable)."""
        with self._lock:
            self._file.close()
            self._owner.close()  # releases the directory lock

    # -- internals -------------------------------------------------------------------

    def _path(self, segment: int) -> Path:
        return self.directory / f"{_PREFIX}{segment:012d}{_SUFFIX}"

    def _segments(self) -> list[int]:
        found = []
        for p in self.directory.glob(f"{_PREFIX}*{_SUFFIX}"):
            try:
                found.append(int(p.name[len(_PREFIX) : -len(_SUFFIX)]))
            except ValueError:
                continue
        return sorted(found)

    def _load_cursor(self, segments: list[int]) -> tuple[int, int]:
        try:
            data = json.loads((self.directory / "cursor.json").read_text())
            return int(data["segment"]), int(data["offset"])
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return (segments[0] if segments else 1), 0

    def _save_cursor_locked(self) -> None:
        tmp = self.directory / "cursor.json.tmp"
        with open(tmp, "w") as fh:
            json.dump({"segment": self._cursor_segment, "offset": self._cursor_offset}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.directory / "cursor.json")

    def _advance_segment_locked(self, segment: int) -> None:
        old = self._cursor_segment
        self._cursor_segment, self._cursor_offset = segment, 0
        self._save_cursor_locked()
        for n in self._segments():
            if n <= old:
                self._path(n).unlink(missing_ok=True)
        _fsync_dir(self.directory)

    def _repair_tail(self, segment: int) -> None:
        """Cut a torn last line (a crash mid-write): it was never acknowledged to anyone."""
        path = self._path(segment)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            log.warning("spool %s: dropping a torn line of %d bytes", path, len(data) - keep)
            with open(path, "r+b") as fh:
                fh.truncate(keep)
                fh.flush()
                os.fsync(fh.fileno())

    def _count_pending(self) -> int:
        count = 0
        for n in self._segments():
            if n < self._cursor_segment:
                continue
            with open(self._path(n), "rb") as fh:
                if n == self._cursor_segment:
                    fh.seek(self._cursor_offset)
                while chunk := fh.read(1 << 20):
                    count += chunk.count(b"\n")
        return count


def _open_segment(path: Path) -> io.FileIO:
    """A segment opened for unbuffered appends (a failed write leaves nothing pending)."""
    return io.FileIO(path, "ab")


def _take_ownership(directory: Path) -> IO[str]:
    """Lock the spool directory for this process; two writers would interleave segments."""
    handle = open(directory / ".lock", "a+")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise ConfigError(
            f"spool {directory} is in use by {holder}; give each bridge its own --spool-dir"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}\n")
    handle.flush()
    return handle


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
