"""Hands the watcher's observations to slow consumers without ever making the watcher wait.

The watcher records what it sees (`put` is synchronous and never blocks); a bounded pool of workers delivers each
observation to the pipeline (classification, inspection reads, a registry probe of up to 5 s). Observations are
queued per pod: one pod's observations are delivered in order by one worker at a time, different pods in parallel.
A failure still waiting in the queue is replaced by a newer failure of the same container (coalescing), so a pod
that flips faster than it can be diagnosed costs one diagnosis, and memory stays bounded by the failing containers.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from bot.model import PullFailure, Recovery

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, pod)


class ObservationQueue:
    """Per-pod ordered, per-container coalesced delivery of PullFailure and Recovery to async callbacks."""

    def __init__(
        self,
        on_failure: Callable[[PullFailure], Awaitable[None]],
        on_recovery: Callable[[Recovery], Awaitable[None]],
        *,
        workers: int = 4,
        name: str = "observations",
    ) -> None:
        self._on_failure = on_failure
        self._on_recovery = on_recovery
        self._workers = max(1, workers)
        self._name = name
        self._pending: dict[Key, deque[PullFailure | Recovery]] = {}
        self._busy: set[Key] = set()
        self._ready: asyncio.Queue[Key] = asyncio.Queue()
        self._idle = asyncio.Event()
        self._idle.set()
        self.delivered = 0
        self.coalesced = 0
        self.in_flight = 0

    @property
    def pending(self) -> int:
        """Observations waiting for a worker."""
        return sum(len(q) for q in self._pending.values())

    def put(self, item: PullFailure | Recovery) -> None:
        """Record one observation; returns at once."""
        key = (item.namespace, item.pod)
        queue = self._pending.get(key)
        if queue is None:
            queue = self._pending[key] = deque()
            if key not in self._busy:
                self._ready.put_nowait(key)
        if isinstance(item, PullFailure):
            for i, old in enumerate(queue):
                if isinstance(old, PullFailure) and old.container == item.container and old.pod_uid == item.pod_uid:
                    # Still waiting: only the newest text matters; keep its place so the order with recoveries holds.
                    queue[i] = item
                    self.coalesced += 1
                    self._idle.clear()
                    return
        queue.append(item)
        self._idle.clear()

    async def join(self) -> None:
        """Wait until every observation recorded so far (and any recorded meanwhile) has been delivered."""
        await self._idle.wait()

    async def run(self) -> None:
        """Deliver until cancelled."""
        async with asyncio.TaskGroup() as tg:
            for i in range(self._workers):
                tg.create_task(self._worker(), name=f"{self._name}-{i}")

    async def _worker(self) -> None:
        while True:
            key = await self._ready.get()
            self._busy.add(key)
            try:
                while True:
                    queue = self._pending.get(key)
                    if not queue:
                        self._pending.pop(key, None)
                        break
                    item = queue.popleft()
                    self.in_flight += 1
                    try:
                        await self._deliver(item)
                    finally:
                        self.in_flight -= 1
            finally:
                self._busy.discard(key)
                if key in self._pending:  # put() while the last delivery was being cancelled
                    self._ready.put_nowait(key)
                if not self._pending and not self._busy:
                    self._idle.set()

    async def _deliver(self, item: PullFailure | Recovery) -> None:
        try:
            if isinstance(item, PullFailure):
                await self._on_failure(item)
            else:
                await self._on_recovery(item)
            self.delivered += 1
        except Exception:
            log.exception(
                "%s: delivering %s for %s/%s failed", self._name, type(item).__name__, item.namespace, item.pod
            )
