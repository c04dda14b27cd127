"""Slack's per-channel pace holds across replicas: the pace is reserved in the shared database (issue 17, point 8).

Slack allows about one message per second per channel (short bursts tolerated). Two outbox workers, as on two
replicas, share one store: together they keep the pace, where each used to keep its own and send twice as fast.
"""

from __future__ import annotations

import asyncio
import itertools

from slack_sdk.web.async_client import AsyncWebClient

from bot.store.store import Store
from testkit.slack.web_api import FakeSlackApi
from tests.slack.conftest import open_incident
from tests.slack.test_outbox import worker

RATE = 2.0  # messages per second in this test (Slack: 1); the gaps scale with it


async def test_two_replicas_together_keep_one_channel_pace(
    store: Store, client: AsyncWebClient, fake: FakeSlackApi
) -> None:
    for i in range(6):
        await open_incident(store, f"k{i}", ("parent",))
    a = worker(store, client, "replica-a", rate_per_channel=RATE, burst=1, batch_size=3)
    b = worker(store, client, "replica-b", rate_per_channel=RATE, burst=1, batch_size=3)
    await asyncio.gather(a.drain(20), b.drain(20))
    assert a.sent and b.sent  # both replicas sent
    times = sorted(c.at for c in fake.calls_to("chat.postMessage"))
    assert len(times) == 6
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    # Slots are reserved exactly 1/RATE apart; the HTTP calls that use them jitter on a loaded machine. Two
    # processes with a bucket each sent pairs a few milliseconds apart.
    assert min(gaps) >= 0.4 / RATE, f"faster than the channel's pace: {gaps}"
    assert times[-1] - times[0] >= 0.9 * (len(times) - 1) / RATE, f"faster than the channel's pace: {gaps}"


async def test_reservations_follow_a_cell_rate(store: Store) -> None:
    """A burst of 3 goes at once, then one slot per interval, for every caller of the store."""
    delays = [await store.pace.reserve("C1", 1.0, 3, now=100.0) for _ in range(5)]
    assert delays == [0.0, 0.0, 0.0, 1.0, 2.0]
    assert await store.pace.reserve("C1", 1.0, 3, now=110.0) == 0.0  # the bucket refilled
