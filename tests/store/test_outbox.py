"""Outbox: idempotent enqueue, order, retry and failure, leases shared by two workers, thread recording."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from bot.model import OutboxKind
from bot.store.store import Store, utcnow
from tests.store import queries
from tests.store.conftest import OpenStore
from tests.store.factories import incident, message


async def test_enqueue_is_idempotent_by_dedup_key(store: Store) -> None:
    """Enqueueing the same dedup keys twice stores them once."""
    batch = [message("i1", n) for n in range(3)]
    assert await store.enqueue(batch) == 3
    assert await store.enqueue([*batch, message("i1", 3)]) == 1
    assert [m.text for m in await queries.pending_outbox(store)] == ["message 0", "message 1", "message 2", "message 3"]
    assert await store.outbox_counts() == {"pending": 4, "sent": 0, "failed": 0}
    assert await store.enqueue([message("i9", 0), message("i9", 0)]) == 1  # duplicates within one batch too
    assert await store.enqueue([]) == 0


async def test_pending_rows_round_trip_in_id_order(store: Store) -> None:
    """Rows come back in the order enqueued, with blocks, kind and user intact."""
    ephemeral = message("i2", 0, OutboxKind.EPHEMERAL)
    ephemeral = type(ephemeral)(**{**{f: getattr(ephemeral, f) for f in ephemeral.__slots__}, "user": "U9"})
    await store.enqueue([message("i1", 0, OutboxKind.POST_PARENT), ephemeral, message("i1", 1)])
    rows = await queries.pending_outbox(store)
    assert [r.id for r in rows] == sorted(r.id for r in rows if r.id is not None)
    assert [r.kind for r in rows] == [OutboxKind.POST_PARENT, OutboxKind.EPHEMERAL, OutboxKind.REPLY]
    assert rows[1].user == "U9" and rows[0].blocks == message("i1", 0).blocks
    assert len(await queries.pending_outbox(store, limit=2)) == 2


async def test_retry_waits_until_not_before_and_counts_attempts(store: Store) -> None:
    """A retried row is hidden until its time, counts one attempt, and never stores a token in the error."""
    await store.enqueue([message("i1", 0)])
    (row,) = await queries.pending_outbox(store)
    assert row.id is not None
    now = utcnow()
    error = "slack said 500 for Authorization: Bearer xoxb-1234567890-abcdefghijkl"
    assert await store.mark_outbox_retry(row.id, now + timedelta(seconds=30), error)
    assert await queries.pending_outbox(store, now=now) == []
    assert [r.id for r in await queries.pending_outbox(store, now=now + timedelta(seconds=31))] == [row.id]
    assert await store.outbox_attempts(row.id) == 1
    async with store.engine.connect() as conn:
        from sqlalchemy import text

        stored = (await conn.execute(text("SELECT last_error FROM outbox"))).scalar_one()
    assert "xoxb-1234567890" not in stored and "<redacted>" in stored


async def test_failed_and_sent_rows_leave_the_queue(store: Store) -> None:
    """Sent and failed rows are no longer pending; counts reflect them."""
    await store.enqueue([message("i1", 0), message("i1", 1)])
    first, second = await queries.pending_outbox(store)
    assert first.id is not None and second.id is not None
    assert await store.mark_outbox_sent(first.id, "1.0001")
    assert await store.mark_outbox_failed(second.id, "channel_not_found")
    assert await queries.pending_outbox(store) == []
    assert await store.outbox_counts() == {"pending": 0, "sent": 1, "failed": 1}
    assert await queries.outbox_status(store, second.id) == "failed"
    assert await store.outbox_attempts(second.id) == 1
    assert await store.outbox_attempts(999) is None
    assert not await store.mark_outbox_sent(999, "1.0")


async def test_sent_parent_records_the_incident_thread(store: Store) -> None:
    """Marking a POST_PARENT sent stores its ts as the incident's thread, in the same transaction."""
    key = incident().key
    await store.save_incident(incident(), [message(key, 0, OutboxKind.POST_PARENT, channel="C0ALERTS")])
    (parent,) = await queries.pending_outbox(store)
    assert parent.id is not None
    await store.mark_outbox_sent(parent.id, "1700000000.000200")
    loaded = await store.get_incident(key)
    assert loaded is not None and loaded.thread_ts == "1700000000.000200"


async def test_two_workers_never_claim_the_same_row(open_store: OpenStore) -> None:
    """Two Store objects (two replicas) claiming concurrently split the rows without overlap."""
    first, second = await open_store(), await open_store()
    await first.enqueue([message(f"i{n}", 0) for n in range(40)])

    async def drain(store: Store, worker: str) -> list[int]:
        got: list[int] = []
        while batch := await store.claim_outbox(3, worker, lease_s=60):
            got.extend(m.id for m in batch if m.id is not None)
            await asyncio.sleep(0)
        return got

    a, b = await asyncio.gather(drain(first, "w1"), drain(second, "w2"))
    assert not set(a) & set(b)
    assert len(a) + len(b) == 40


async def test_claim_keeps_one_incident_in_order_with_one_worker(store: Store) -> None:
    """Later rows of an incident are not leased to another worker while an earlier one is in flight."""
    await store.enqueue([message("i1", 0, OutboxKind.POST_PARENT), message("i1", 1), message("i2", 0)])
    first = await store.claim_outbox(1, "w1", lease_s=60)
    assert [m.dedup_key for m in first] == [message("i1", 0, OutboxKind.POST_PARENT).dedup_key]
    other = await store.claim_outbox(10, "w2", lease_s=60)
    assert [m.incident_key for m in other] == ["i2"]
    mine = await store.claim_outbox(10, "w1", lease_s=60)
    assert [m.dedup_key for m in mine] == [message("i1", 1).dedup_key]


async def test_rows_wait_behind_an_earlier_retry(store: Store) -> None:
    """A reply is not claimed while its incident's earlier row waits for its retry time."""
    await store.enqueue([message("i1", 0), message("i1", 1)])
    (head,) = await store.claim_outbox(1, "w1", lease_s=60)
    assert head.id is not None
    now = utcnow()
    await store.mark_outbox_retry(head.id, now + timedelta(seconds=10), "ratelimited")
    assert await store.claim_outbox(10, "w1", lease_s=60, now=now) == []
    later = await store.claim_outbox(10, "w1", lease_s=60, now=now + timedelta(seconds=11))
    assert [m.id for m in later] == [head.id, head.id + 1]


async def test_an_expired_lease_is_claimable_again(store: Store) -> None:
    """A worker that died holding a lease loses it when the lease expires."""
    await store.enqueue([message("i1", 0)])
    now = utcnow()
    (row,) = await store.claim_outbox(5, "w1", lease_s=30, now=now)
    assert await store.claim_outbox(5, "w2", lease_s=30, now=now + timedelta(seconds=10)) == []
    assert await queries.pending_outbox(store, now=now + timedelta(seconds=10)) == []
    assert row.id is not None and await store.outbox_attempts(row.id) == 0
    again = await store.claim_outbox(5, "w2", lease_s=30, now=now + timedelta(seconds=31))
    assert [m.id for m in again] == [row.id]
    # The dead worker may have reached Slack: the take-over counts as an attempt, so the next sender reconciles.
    assert await store.outbox_attempts(row.id) == 1


async def test_a_restarted_worker_releases_its_own_claims(store: Store) -> None:
    """Rows claimed by a run that died are claimable at once by the same identity, counted as one attempt."""
    await store.enqueue([message("i1", 0), message("i2", 0)])
    now = utcnow()
    claimed = await store.claim_outbox(5, "pod-a", lease_s=60, now=now)
    assert len(claimed) == 2
    assert await store.claim_outbox(5, "pod-b", lease_s=60, now=now) == []
    assert await store.release_claims("pod-b") == 0
    assert await store.release_claims("pod-a") == 2
    again = await store.claim_outbox(5, "pod-a", lease_s=60, now=now)
    assert sorted(m.id or 0 for m in again) == sorted(m.id or 0 for m in claimed)
    assert [await store.outbox_attempts(m.id or 0) for m in again] == [1, 1]
