"""Small thread-pool helpers shared by the Kubernetes client, the S3 store and the steps.

Backups and drills make thousands of independent API and S3 calls; running them on a
bounded pool is what keeps a backup of a few thousand objects in seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = ["DEFAULT_WORKERS", "chunks", "parallel_map"]

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_WORKERS = 8
"""Parallel API/S3 calls when a caller does not say."""


def parallel_map(fn: Callable[[T], R], items: Sequence[T], workers: int) -> list[R]:
    """``[fn(x) for x in items]`` on a thread pool; the first exception propagates."""
    if len(items) <= 1 or workers <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        return list(pool.map(fn, items))


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of ``items`` of at most ``size`` elements."""
    for i in range(0, len(items), size):
        yield items[i : i + size]
