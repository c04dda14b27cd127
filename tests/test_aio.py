"""bot.aio.cancel_and_wait: the tasks end, and the waiter's own cancellation is never swallowed."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from bot.aio import cancel_and_wait


async def _slow_to_stop(stopping: asyncio.Event) -> None:
    """A task that takes a moment to clean up when cancelled (closing a connection, say)."""
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        stopping.set()
        await asyncio.sleep(0.2)
        raise


async def test_the_tasks_are_cancelled_and_waited_for() -> None:
    stopping = asyncio.Event()
    task = asyncio.create_task(_slow_to_stop(stopping))
    await asyncio.sleep(0)
    await cancel_and_wait(task)
    assert task.cancelled() and stopping.is_set()


async def test_a_cancellation_of_the_waiter_is_raised_not_swallowed() -> None:
    """The waiter is cancelled while the task it cancelled is still cleaning up: it must end cancelled. (With
    `suppress(CancelledError)` around the await it went on, and a loop around it went on for ever.)"""
    stopping = asyncio.Event()
    rounds = 0

    async def supervisor() -> None:
        nonlocal rounds
        while True:  # restarts its child after each stop, as the leader loop does
            rounds += 1
            child = asyncio.create_task(_slow_to_stop(stopping))
            await asyncio.sleep(0)
            await cancel_and_wait(child)

    outer = asyncio.create_task(supervisor())
    await stopping.wait()  # the supervisor now waits for its child to finish stopping
    outer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(outer, 5)
    assert outer.cancelled() and rounds == 1


async def test_errors_are_raised_unless_swallowed() -> None:
    async def fails() -> None:
        raise ValueError("boom")

    task = asyncio.create_task(fails())
    await asyncio.sleep(0)
    with pytest.raises(ValueError, match="boom"):
        await cancel_and_wait(task)
    task = asyncio.create_task(fails())
    await asyncio.sleep(0)
    await cancel_and_wait(task, swallow_errors=True)
