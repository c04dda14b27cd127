"""The outbox worker against the fake Slack Web API (real slack_sdk client) and the real Store on SQLite."""

from __future__ import annotations

import asyncio
import contextlib
import time

from slack_sdk.web.async_client import AsyncWebClient

from bot.model import OutboxKind, OutboxMessage
from bot.slack.outbox import PARENT_EVENT, OutboxWorker
from bot.store.store import Store
from testkit.slack.web_api import FakeSlackApi
from tests.slack.conftest import CHANNEL, incident, open_incident, rows
from tests.store import queries


def worker(store: Store, client: AsyncWebClient, name: str = "w1", **kw: object) -> OutboxWorker:
    """A worker with fast pacing and short backoffs, as tests and benches use it."""
    options: dict[str, object] = {
        "rate_per_channel": None,
        "backoff_base_s": 0.05,
        "backoff_max_s": 0.2,
        "wait_parent_s": 0.05,
        "poll_interval": 0.05,
    }
    options.update(kw)
    return OutboxWorker(store, client, worker_id=name, **options)  # type: ignore[arg-type]


async def test_parent_then_replies_in_one_thread_in_order(
    store: Store, client: AsyncWebClient, fake: FakeSlackApi
) -> None:
    """A parent and its replies land as one thread, replies in id order, and the thread is stored."""
    await open_incident(store, "k1", ("parent", "diagnosis", "fact 1", "fact 2"))
    w = worker(store, client)
    assert await w.drain(5) == 4
    threads = fake.threads()
    assert len(threads) == 1
    assert threads[0].parent.text == "parent"
    assert [r.text for r in threads[0].replies] == ["diagnosis", "fact 1", "fact 2"]
    assert threads[0].parent.metadata == {
        "event_type": PARENT_EVENT,
        "event_payload": {"incident_key": "k1", "outbox_id": 1},
    }
    stored = await store.get_incident("k1")
    assert stored is not None
    assert stored.thread_ts == threads[0].parent.ts
    assert (w.sent, w.retries, w.failures) == (4, 0, 0)


async def test_many_incidents_each_get_their_own_ordered_thread(
    store: Store, client: AsyncWebClient, fake: FakeSlackApi
) -> None:
    """Rows of several incidents interleave across incidents but stay ordered within each."""
    for i in range(6):
        await open_incident(store, f"k{i}", ("parent", "r1", "r2"))
    await worker(store, client, batch_size=7).drain(10)
    threads = fake.threads()
    assert len(threads) == 6
    for t in threads:
        assert [r.text for r in t.replies] == ["r1", "r2"]
        key = t.parent.metadata["event_payload"]["incident_key"] if t.parent.metadata else None
        assert key is not None
        assert (await store.get_incident(key)).thread_ts == t.parent.ts  # type: ignore[union-attr]


async def test_update_parent_edits_the_parent(store: Store, client: AsyncWebClient, fake: FakeSlackApi) -> None:
    """UPDATE_PARENT edits the thread's parent with chat.update; earlier updates of one batch are folded."""
    await open_incident(store, "k1", ("parent", "diagnosis"))
    await store.enqueue(rows("k1", (OutboxKind.UPDATE_PARENT, "parent v2"), (OutboxKind.UPDATE_PARENT, "parent v3")))
    await worker(store, client).drain(5)
    (thread,) = fake.threads()
    assert thread.parent.text == "parent v3"
    assert len(fake.calls_to("chat.update")) == 1


async def test_reply_waits_for_a_parent_that_is_rate_limited(
    store: Store, client: AsyncWebClient, fake: FakeSlackApi
) -> None:
    """A 429 with Retry-After pauses the parent; its replies wait and follow it, never fail or go first."""
    fake.rate_limit("chat.postMessage", retry_after=1)
    await open_incident(store, "k1", ("parent", "diagnosis"))
    w = worker(store, client)
    started = time.monotonic()
    await w.drain(10)
    elapsed = time.monotonic() - started
    posts = fake.calls_to("chat.postMessage")
    assert len(posts) == 3  # the refused parent, the parent, the reply
    assert posts[1].at - posts[0].at >= 0.9  # Retry-After honoured
    assert elapsed < 5
    (thread,) = fake.threads()
    assert [r.text for r in thread.replies] == ["diagnosis"]
    assert w.rate_limited == 1
    assert w.failures == 0


async def test_server_errors_are_retried(store: Store, client: AsyncWebClient, fake: FakeSlackApi) -> None:
    """HTTP 500 twice, then success: the row is sent once, after reconciling, and counted as retried."""
    fake.server_error("chat.postMessage", times=2)
    await open_incident(store, "k1", ("parent",))
    w = worker(store, client)
    await w.drain(10)
    assert len(fake.threads()) == 1
    assert w.retries == 2
    assert await queries.outbox_status(store, 1) == "sent"


async def test_crash_after_send_makes_no_second_thread(
    store: Store, client: AsyncWebClient, fake: FakeSlackApi
) -> None:
    """Slack stored the parent but the answer was lost: the retry finds it by metadata and adopts its ts."""
    fake.crash_after_send("chat.postMessage", mode="close")
    await open_incident(store, "k1", ("parent", "diagnosis"))
    w = worker(store, client)
    await w.drain(10)
    threads = fake.threads()
    assert len(threads) == 1
    assert [r.text for r in threads[0].replies] == ["diagnosis"]
    assert (await store.get_incident("k1")).thread_ts == threads[0].parent.ts  # type: ignore[union-attr]
    assert w.reconciled == 1
    history = fake.calls_to("conversations.history")
    assert history
    assert history[-1].payload["include_all_metadata"] in {"1", "true", True}


async def test_crash_after_reply_makes_no_second_reply(
    store: Store, client: AsyncWebClient, fake: FakeSlackApi
) -> None:
    """A reply whose answer was lost (HTTP 500 after storing) is found in the thread's replies, not re-posted."""
    await open_incident(store, "k1", ("parent",))
    w = worker(store, client)
    await w.drain(5)
    fake.crash_after_send("chat.postMessage")
    await store.enqueue(rows("k1", (OutboxKind.REPLY, "late fact")))
    await w.drain(5)
    (thread,) = fake.threads()
    assert [r.text for r in thread.replies] == ["late fact"]
    assert fake.calls_to("conversations.replies")


async def test_worker_crash_before_commit_is_reconciled_on_restart(
    store: Store, client: AsyncWebClient, fake: FakeSlackApi
) -> None:
    """A worker that died after Slack's answer left its row pending (attempts 0): the next worker adopts it."""
    await open_incident(store, "k1", ("parent", "diagnosis"))
    (parent_row, _) = await store.claim_outbox(10, "dead-worker", lease_s=0.0)
    # What the dead worker did before it died: the post reached Slack, nothing reached the database.
    await client.chat_postMessage(
        channel=CHANNEL,
        text="parent",
        metadata={"event_type": PARENT_EVENT, "event_payload": {"incident_key": "k1", "outbox_id": parent_row.id}},
    )
    await asyncio.sleep(0.01)  # the lease ran out
    w = worker(store, client, name="w2")
    await w.drain(5)
    (thread,) = fake.threads()
    assert [r.text for r in thread.replies] == ["diagnosis"]
    assert w.reconciled == 1


async def test_thread_continues_after_restart(store: Store, client: AsyncWebClient, fake: FakeSlackApi) -> None:
    """A new worker on the same store replies in the thread the previous worker started."""
    await open_incident(store, "k1", ("parent", "diagnosis"))
    await worker(store, client, name="first").drain(5)
    await store.enqueue(rows("k1", (OutboxKind.REPLY, "resolved"), (OutboxKind.UPDATE_PARENT, "parent resolved")))
    second = worker(store, client, name="second")
    await second.drain(5)
    (thread,) = fake.threads()
    assert thread.parent.text == "parent resolved"
    assert [r.text for r in thread.replies] == ["diagnosis", "resolved"]


async def test_permanent_error_marks_the_row_failed(store: Store, client: AsyncWebClient, fake: FakeSlackApi) -> None:
    """channel_not_found is permanent: the row fails with the code (no token), replies wait, nothing is posted."""
    fake.missing_channels.add("#gone")
    await store.save_incident(
        incident("k1", channel="#gone"),
        rows("k1", (OutboxKind.POST_PARENT, "parent"), channel="#gone"),
    )
    w = worker(store, client)
    await w.drain(5)
    assert w.failures == 1
    assert await queries.outbox_status(store, 1) == "failed"
    assert fake.threads() == []
    async with store.engine.connect() as conn:
        from sqlalchemy import text

        (error,) = (await conn.execute(text("SELECT last_error FROM outbox WHERE id = 1"))).one()
    assert "channel_not_found" in error
    assert "xoxb" not in error


async def test_invalid_token_fails_without_leaking_it(store: Store, fake: FakeSlackApi) -> None:
    """invalid_auth is permanent and the token appears in no stored error."""
    bad = AsyncWebClient(token="xoxb-wrong-secret-value", base_url=fake.url)
    await open_incident(store, "k1", ("parent",))
    w = worker(store, bad)
    await w.drain(5)
    assert await queries.outbox_status(store, 1) == "failed"
    async with store.engine.connect() as conn:
        from sqlalchemy import text

        (error,) = (await conn.execute(text("SELECT last_error FROM outbox WHERE id = 1"))).one()
    assert "invalid_auth" in error
    assert "wrong-secret" not in error


async def test_retries_stop_after_max_attempts(store: Store, client: AsyncWebClient, fake: FakeSlackApi) -> None:
    """A row that keeps failing with 5xx is marked failed after max_attempts."""
    fake.server_error("chat.postMessage", times=100)
    await open_incident(store, "k1", ("parent",))
    w = worker(store, client, max_attempts=3)
    await w.drain(10)
    assert await queries.outbox_status(store, 1) == "failed"
    assert w.failures == 1


async def test_timeouts_are_retried(store: Store, fake: FakeSlackApi) -> None:
    """A hanging answer times out client-side; the retry reconciles and the thread exists once."""
    slow = AsyncWebClient(token="xoxb-test-not-a-real-token", base_url=fake.url, timeout=1)
    fake.delay("chat.postMessage", 1.5)
    await open_incident(store, "k1", ("parent",))
    await worker(store, slow).drain(10)
    assert len(fake.threads()) == 1


async def test_ephemeral_goes_to_one_user(store: Store, client: AsyncWebClient, fake: FakeSlackApi) -> None:
    """EPHEMERAL rows use chat.postEphemeral with the row's user."""
    await store.save_incident(incident("k1"))
    fake.add_channel("private-room", id="C123")
    await store.enqueue(
        [
            OutboxMessage(
                kind=OutboxKind.EPHEMERAL,
                incident_key="k1",
                channel="C123",
                text="only you",
                dedup_key="e1",
                user="U42",
            )
        ]
    )
    await worker(store, client).drain(5)
    assert [(m.channel, m.user, m.text) for m in fake.ephemerals] == [("C123", "U42", "only you")]


async def test_channel_pacing_spreads_a_burst(store: Store, client: AsyncWebClient, fake: FakeSlackApi) -> None:
    """With 20 messages/s and a burst of 2, six parents take at least 0.2 s."""
    for i in range(6):
        await open_incident(store, f"k{i}", ("parent",))
    w = worker(store, client, rate_per_channel=20.0, burst=2)
    started = time.monotonic()
    await w.drain(5)
    assert time.monotonic() - started >= 0.19
    assert len(fake.threads()) == 6


async def test_run_sends_rows_stored_while_running(store: Store, client: AsyncWebClient, fake: FakeSlackApi) -> None:
    """run() polls the store: a row stored while it runs is sent, and the task cancels cleanly."""
    w = worker(store, client)
    task = asyncio.create_task(w.run())
    await open_incident(store, "k1", ("parent", "diagnosis"))
    w.notify()
    for _ in range(100):
        if w.sent == 2:
            break
        await asyncio.sleep(0.02)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert w.sent == 2
    assert len(fake.threads()) == 1
