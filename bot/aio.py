"""Cancelling tasks without swallowing one's own cancellation.

`with contextlib.suppress(asyncio.CancelledError): await task` after `task.cancel()` also swallows a cancellation of
the task that waits, when one arrives during that await: the waiter then carries on (in a loop: for ever), and
whatever cancelled it (a shutdown, an event loop closing its remaining tasks) waits for it in vain. Python 3.11's
`Task.cancelling()` tells the two apart: the cancelled task's own CancelledError is expected, the waiter's is raised.
"""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(*tasks: asyncio.Future[Any], swallow_errors: bool = False) -> None:
    """Cancel `tasks` and wait until each has ended; with `swallow_errors`, what they raised is dropped too.

    A cancellation of the calling task during the wait is raised, never swallowed."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
        except Exception:
            if not swallow_errors:
                raise
