"""TTL LRU cache and coalescing of concurrent computations."""

from __future__ import annotations

import asyncio

import pytest

from bot.registry.cache import CoalescingCache, TTLCache


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_ttl_expiry_and_lru_eviction() -> None:
    """Entries expire after the TTL; the least recently used goes first when full."""
    clock = Clock()
    cache: TTLCache[str, int] = TTLCache(ttl_s=10, maxsize=2, clock=clock)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now the most recent
    cache.put("c", 3)
    assert cache.get("b") is None
    assert cache.get("a") == 1
    clock.now = 10.0
    assert cache.get("a") is None
    assert len(cache) == 1


async def test_coalescing_runs_once() -> None:
    """Concurrent misses for one key share one computation; later calls hit the cache."""
    calls = 0
    gate = asyncio.Event()

    async def compute() -> int:
        nonlocal calls
        calls += 1
        await gate.wait()
        return 42

    cache: CoalescingCache[str, int] = CoalescingCache(ttl_s=60)
    waiters = [asyncio.ensure_future(cache.get_or_compute("k", compute)) for _ in range(10)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*waiters)
    assert calls == 1
    assert [v for v, _ in results] == [42] * 10
    assert sum(1 for _, shared in results if not shared) == 1
    assert await cache.get_or_compute("k", compute) == (42, True)


async def test_cancelled_waiter_does_not_cancel_the_others() -> None:
    """One caller giving up leaves the shared computation running for the rest."""
    gate = asyncio.Event()

    async def compute() -> str:
        await gate.wait()
        return "done"

    cache: CoalescingCache[str, str] = CoalescingCache(ttl_s=60)
    first = asyncio.ensure_future(cache.get_or_compute("k", compute))
    second = asyncio.ensure_future(cache.get_or_compute("k", compute))
    await asyncio.sleep(0)
    first.cancel()
    gate.set()
    assert await second == ("done", True)
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_failure_is_not_cached() -> None:
    """An exception reaches every waiter and the next call computes again."""
    attempts = 0

    async def compute() -> int:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise RuntimeError("boom")
        return 7

    cache: CoalescingCache[str, int] = CoalescingCache(ttl_s=60)
    with pytest.raises(RuntimeError):
        await cache.get_or_compute("k", compute)
    assert await cache.get_or_compute("k", compute) == (7, False)
