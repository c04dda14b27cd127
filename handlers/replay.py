"""A Bolt middleware that refuses a signed HTTP request seen before (same signature and timestamp).

Bolt already refuses forged signatures and timestamps older than five minutes (Slack's request signing:
https://api.slack.com/authentication/verifying-requests-from-slack); within those five minutes a captured request
could be sent again, to this replica or another. Its signature is remembered for slightly longer than that window,
in this process and in SQL (shared by every replica, `FlowsPort.first_delivery`), so a replay is refused with 401
before any listener runs. Socket Mode requests carry no signature: their envelopes are deduplicated by envelope id
in `bot.slack.bolt_app.run_socket_mode`.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.response import BoltResponse

WINDOW_S = 6 * 60.0  # Bolt accepts timestamps up to 5 minutes old
MAX_ENTRIES = 100_000


class ReplayCache:
    """Signatures seen in the last `window_s` seconds."""

    def __init__(self, window_s: float = WINDOW_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._window_s = window_s
        self._clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()

    def first_time(self, key: str) -> bool:
        """Record `key`; True unless it was seen within the window."""
        now = self._clock()
        while self._seen:
            oldest, at = next(iter(self._seen.items()))
            if now - at <= self._window_s and len(self._seen) < MAX_ENTRIES:
                break
            self._seen.pop(oldest)
        if key in self._seen:
            return False
        self._seen[key] = now
        return True


def _header(headers: dict[str, Any], name: str) -> str:
    value = headers.get(name)
    if isinstance(value, (list, tuple)):
        value = value[0] if value else ""
    return str(value or "")


def register(app: Any, flows: object, cache: ReplayCache | None = None) -> ReplayCache:
    """Install the replay guard as a global middleware of `app`; returns its cache."""
    seen = cache or ReplayCache()

    async def refuse_replays(req: Any, resp: Any, next: Callable[[], Awaitable[None]]) -> Any:
        signature = _header(req.headers, "x-slack-signature")
        stamp = _header(req.headers, "x-slack-request-timestamp")
        if signature:
            key = f"sig:{stamp}:{signature}"
            if not seen.first_time(key):
                return BoltResponse(status=401, body="replayed request")
            shared = getattr(flows, "first_delivery", None)
            if shared is not None and not await shared(key, WINDOW_S):
                return BoltResponse(status=401, body="replayed request")
        await next()
        return resp

    app.middleware(refuse_replays)
    return seen
