"""The bot in this process, started the one way every bot starts (`bot.runtime.run_bot`), for tests and benchmarks."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from slack_sdk.web.async_client import AsyncWebClient

from bot.composition import Bot
from bot.runtime import Running, run_bot
from bot.settings import Settings


class BotInProcess:
    """`run_bot` as a task of the running loop; `start` returns once every bot task has started."""

    def __init__(self, settings: Settings, *, slack: AsyncWebClient | None = None, bot: Bot | None = None) -> None:
        self.settings = settings
        self._slack = slack
        self._given = bot
        self._stop = asyncio.Event()
        self._task: asyncio.Task[int] | None = None
        self.running: Running | None = None

    @property
    def bot(self) -> Bot:
        assert self.running is not None, "not started"
        return self.running.bot

    async def start(self, *, wait_synced: bool = False, timeout_s: float = 60.0) -> Running:
        """Start the bot; with `wait_synced`, also wait until this replica leads and its watcher has synced."""
        ready = asyncio.Event()

        def on_ready(running: Running) -> None:
            self.running = running
            ready.set()

        self._task = asyncio.create_task(
            run_bot(self.settings, stop=self._stop, slack=self._slack, bot=self._given, on_ready=on_ready),
            name="run_bot",
        )
        deadline = time.monotonic() + timeout_s
        while not ready.is_set() or (wait_synced and not self.synced()):
            if self._task.done():
                self._task.result()  # raises what building the bot raised
                raise RuntimeError(f"the bot stopped before it was ready: {self.failed()!r}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"bot not {'synced' if wait_synced else 'ready'} after {timeout_s}s")
            await asyncio.sleep(0.01)
        assert self.running is not None
        return self.running

    def synced(self) -> bool:
        """This replica leads and its watcher has listed every pod."""
        watcher = self.running.bot.watcher if self.running else None
        return watcher is not None and watcher.synced.is_set()

    def failed(self) -> BaseException | None:
        """Why a bot task ended by itself, if one did (a test fails on it)."""
        if self._task is None or not self._task.done():
            return None
        if self._task.cancelled():
            return asyncio.CancelledError()
        if (error := self._task.exception()) is not None:
            return error
        ended = self.running.ended if self.running else []
        return next((e or RuntimeError(f"{name} ended") for name, e in ended), None)

    async def stop(self) -> int:
        """Ask the bot to stop and wait for it (its clients are closed)."""
        self._stop.set()
        if self._task is None:
            return 0
        try:
            return await self._task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # the caller is being cancelled: never swallow that
            return 1


@contextlib.asynccontextmanager
async def running_bot(
    settings: Settings,
    *,
    slack: AsyncWebClient | None = None,
    bot: Bot | None = None,
    wait_synced: bool = True,
    timeout_s: float = 60.0,
) -> AsyncIterator[BotInProcess]:
    """Run the bot in this process for the duration of the block (by default from the moment its watch synced)."""
    runner = BotInProcess(settings, slack=slack, bot=bot)
    try:
        await runner.start(wait_synced=wait_synced, timeout_s=timeout_s)
        yield runner
    finally:
        await runner.stop()
