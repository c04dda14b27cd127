"""A small TTL LRU cache whose concurrent misses for one key share a single computation."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    """Least-recently-used cache of at most `maxsize` entries, each valid for `ttl_s` seconds."""

    def __init__(self, ttl_s: float, maxsize: int = 1024, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.maxsize = maxsize
        self._clock = clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> V | None:
        """The live value for `key`, or None (an expired entry is dropped)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if self._clock() >= expires:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        """Store `value` for `key`, evicting the least recently used entry when full."""
        if self.ttl_s <= 0 or self.maxsize <= 0:
            return
        self._entries[key] = (self._clock() + self.ttl_s, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.maxsize:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Forget every entry."""
        self._entries.clear()


class CoalescingCache(Generic[K, V]):
    """A TTLCache in front of an async computation: one computation per key at a time, shared by all waiters."""

    def __init__(self, ttl_s: float, maxsize: int = 1024, clock: Callable[[], float] = time.monotonic) -> None:
        self.cache: TTLCache[K, V] = TTLCache(ttl_s, maxsize, clock)
        self._inflight: dict[K, asyncio.Task[V]] = {}
        self.computations = 0  # values computed (neither cached nor joined)

    async def get_or_compute(
        self, key: K, compute: Callable[[], Awaitable[V]], *, fresh: bool = False
    ) -> tuple[V, bool]:
        """The value for `key` and whether it was shared (cached or coalesced) rather than computed here.

        With `fresh`, a cached value is ignored (a computation already running is still joined). A waiter
        that is cancelled does not cancel the shared computation of the others.
        """
        if not fresh:
            hit = self.cache.get(key)
            if hit is not None:
                return hit, True
        task = self._inflight.get(key)
        shared = task is not None
        if task is None:
            self.computations += 1
            task = asyncio.ensure_future(self._run(key, compute))
            self._inflight[key] = task
        return await asyncio.shield(task), shared

    async def _run(self, key: K, compute: Callable[[], Awaitable[V]]) -> V:
        try:
            value = await compute()
            self.cache.put(key, value)
            return value
        finally:
            self._inflight.pop(key, None)

    async def close(self) -> None:
        """Cancel computations still running and forget the cache."""
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.cache.clear()
