"""Container output kept for ``GET .../pods/<name>/log`` (kubectl logs, Prefect's worker).

Each container has an append-only buffer; followers wait on an asyncio condition until
the container's stream is closed. Lives on the server's event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

Key = tuple[str, str, str]
MAX_BYTES = 8 * 1024 * 1024


@dataclass
class _Stream:
    data: bytearray = field(default_factory=bytearray)
    closed: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class LogStore:
    """Per-container output buffers with follow support."""

    def __init__(self) -> None:
        self._streams: dict[Key, _Stream] = {}

    def _stream(self, key: Key) -> _Stream:
        return self._streams.setdefault(key, _Stream())

    def append(self, namespace: str, pod: str, container: str, chunk: bytes) -> None:
        s = self._stream((namespace, pod, container))
        s.data.extend(chunk)
        if len(s.data) > MAX_BYTES:
            del s.data[: len(s.data) - MAX_BYTES]
        s.changed.set()
        s.changed = asyncio.Event()

    def close(self, namespace: str, pod: str, container: str) -> None:
        s = self._stream((namespace, pod, container))
        s.closed = True
        s.changed.set()

    def reopen(self, namespace: str, pod: str, container: str) -> None:
        self._stream((namespace, pod, container)).closed = False

    def drop_pod(self, namespace: str, pod: str) -> None:
        for key in [k for k in self._streams if k[:2] == (namespace, pod)]:
            s = self._streams.pop(key)
            s.closed = True
            s.changed.set()

    def read(self, namespace: str, pod: str, container: str) -> bytes:
        s = self._streams.get((namespace, pod, container))
        return bytes(s.data) if s else b""

    async def follow(
        self, namespace: str, pod: str, container: str, start: int
    ) -> AsyncIterator[bytes]:
        """Yield output from byte offset ``start`` until the stream closes."""
        s = self._stream((namespace, pod, container))
        pos = start
        while True:
            if len(s.data) > pos:
                chunk = bytes(s.data[pos:])
                pos = len(s.data)
                yield chunk
                continue
            if s.closed:
                return
            waiter = s.changed
            await waiter.wait()
            s = self._streams.get((namespace, pod, container), s)
