"""The outbox table: Slack writes recorded in the same transaction as the change that caused them.

Several workers (on several replicas) share the table. Rows are claimed with a lease (`claim_outbox`,
`SELECT ... FOR UPDATE SKIP LOCKED` under a short transaction-scoped advisory lock), so two workers never send the
same row and one incident's rows stay in order; `mark_outbox_*` ends the lease, and an expired lease makes the row
claimable again. A message is enqueued once per dedup_key.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import and_, case, exists, func, insert, or_, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.model import OutboxKind, OutboxMessage
from bot.store import audit as chain
from bot.store.codec import blocks_from_json, enum_or
from bot.store.engine import Database, retry_disconnects, utcnow
from bot.store.models import (
    OUTBOX,
    OUTBOX_FAILED,
    OUTBOX_PENDING,
    OUTBOX_SENT,
    OUTBOX_STATUSES,
    SLACK_PACE,
    as_utc,
)

# Key of the PostgreSQL advisory lock that makes claimers take turns (any 64-bit integer unique to this application).
CLAIM_LOCK_KEY = 0x1D0C_0B0C
# The same for reservations of Slack's pace (slack_pace).
PACE_LOCK_KEY = 0x1D0C_0BAC


class ThreadRecorder(Protocol):
    """Records an incident's Slack thread inside the caller's transaction (`incidents_repo.SlackThreadsRepo`)."""

    async def set_thread_in(self, conn: AsyncConnection, incident_key: str, channel: str, ts: str) -> bool:
        """Record (channel, ts) as the thread of the incident; False if there is no such incident."""
        ...


class OutboxRepo:
    """The outbox; every public method is one transaction."""

    def __init__(self, db: Database, threads: ThreadRecorder) -> None:
        self._db = db
        self._threads = threads

    @retry_disconnects
    async def enqueue(self, messages: Sequence[OutboxMessage]) -> int:
        """Record Slack writes; a message whose dedup_key is already stored is skipped. Returns how many were new."""
        rows = outbox_values(messages, utcnow())
        if not rows:
            return 0
        async with self._db.write() as conn:
            return await self.enqueue_in(conn, rows)

    async def enqueue_in(self, conn: AsyncConnection, rows: list[dict[str, Any]]) -> int:
        """Insert `outbox_values` rows inside the caller's writing transaction; returns how many were new."""
        # One multi-row INSERT: ids follow the caller's order, rows whose dedup_key exists return nothing.
        stmt = self._db.insert_ignoring(OUTBOX, ["dedup_key"]).returning(OUTBOX.c.id)
        return len((await conn.execute(stmt, rows)).all())

    @retry_disconnects
    async def claim_outbox(
        self, limit: int, worker_id: str, lease_s: float, now: datetime | None = None
    ) -> list[OutboxMessage]:
        """Lease up to `limit` due rows to `worker_id` for `lease_s` seconds, in id order; safe across replicas.

        A row is left alone while an earlier pending row of the same incident waits for its retry time or is leased
        by another worker, so one incident's messages are always sent in order by one worker. `mark_outbox_*`
        ends the lease; an expired lease makes the row claimable again (the worker crashed).
        """
        now = now or utcnow()
        earlier = OUTBOX.alias("earlier")
        blocked = exists().where(
            earlier.c.incident_key == OUTBOX.c.incident_key,
            earlier.c.status == OUTBOX_PENDING,
            earlier.c.id < OUTBOX.c.id,
            or_(
                earlier.c.not_before > now,
                and_(earlier.c.claimed_until > now, earlier.c.claimed_by != worker_id),
            ),
        )
        stmt = (
            select(OUTBOX)
            .where(claimable(now), ~blocked)
            .order_by(OUTBOX.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True, of=OUTBOX)
        )
        async with self._db.write() as conn:
            await self._db.advisory_xact_lock(conn, CLAIM_LOCK_KEY)  # claimers take turns: the check above holds
            rows = (await conn.execute(stmt)).mappings().all()
            if rows:
                await conn.execute(
                    update(OUTBOX)
                    .where(OUTBOX.c.id.in_([r["id"] for r in rows]))
                    .values(
                        claimed_by=worker_id,
                        claimed_until=now + timedelta(seconds=lease_s),
                        # A pending row claimed before, with no attempt recorded, was taken by a worker that died
                        # mid-send: count that attempt so the next worker reconciles before it posts again.
                        attempts=case(
                            (and_(OUTBOX.c.claimed_by.is_not(None), OUTBOX.c.attempts == 0), 1),
                            else_=OUTBOX.c.attempts,
                        ),
                    )
                )
        return [outbox_from_row(r) for r in rows]

    @retry_disconnects
    async def release_claims(self, worker_id: str) -> int:
        """Give back the pending rows a previous run of `worker_id` had claimed (a restarted container keeps its
        identity): they are claimable at once instead of when the lease ends, and count an attempt, because that
        run may have reached Slack before it died. Returns how many rows were released."""
        async with self._db.write() as conn:
            result = await conn.execute(
                update(OUTBOX)
                .where(OUTBOX.c.claimed_by == worker_id, OUTBOX.c.status == OUTBOX_PENDING)
                .values(
                    claimed_by=None,
                    claimed_until=None,
                    attempts=case((OUTBOX.c.attempts == 0, 1), else_=OUTBOX.c.attempts),
                )
            )
        return int(result.rowcount or 0)

    @retry_disconnects
    async def outbox_attempts(self, outbox_id: int) -> int | None:
        """How many failed attempts a row has had (None if no such row)."""
        async with self._db.read() as conn:
            return (await conn.execute(select(OUTBOX.c.attempts).where(OUTBOX.c.id == outbox_id))).scalar()

    @retry_disconnects
    async def mark_outbox_sent(self, outbox_id: int, ts: str | None, now: datetime | None = None) -> bool:
        """Mark a row sent with the message ts Slack returned; a sent parent also records the incident's thread."""
        now = now or utcnow()
        async with self._db.write() as conn:
            row = (
                await conn.execute(
                    select(OUTBOX.c.kind, OUTBOX.c.incident_key, OUTBOX.c.channel).where(OUTBOX.c.id == outbox_id)
                )
            ).first()
            if row is None:
                return False
            await conn.execute(
                update(OUTBOX)
                .where(OUTBOX.c.id == outbox_id)
                .values(status=OUTBOX_SENT, sent_ts=ts, sent_at=now, claimed_by=None, claimed_until=None)
            )
            if row.kind == OutboxKind.POST_PARENT.value and ts:
                await self._threads.set_thread_in(conn, row.incident_key, row.channel, ts)
        return True

    @retry_disconnects
    async def mark_outbox_retry(self, outbox_id: int, not_before: datetime, error: str) -> bool:
        """Count a failed attempt and keep the row pending until `not_before` (the error is scrubbed of secrets)."""
        return await self._mark_attempt(
            outbox_id, status=OUTBOX_PENDING, not_before=as_utc(not_before), last_error=chain.scrub_error(error)
        )

    @retry_disconnects
    async def mark_outbox_failed(self, outbox_id: int, error: str) -> bool:
        """Count a last failed attempt and give up on the row (the error is scrubbed of secrets)."""
        return await self._mark_attempt(outbox_id, status=OUTBOX_FAILED, last_error=chain.scrub_error(error))

    async def _mark_attempt(self, outbox_id: int, **values: Any) -> bool:
        stmt = (
            update(OUTBOX)
            .where(OUTBOX.c.id == outbox_id)
            .values(attempts=OUTBOX.c.attempts + 1, claimed_by=None, claimed_until=None, **values)
        )
        async with self._db.write() as conn:
            return (await conn.execute(stmt)).rowcount == 1

    @retry_disconnects
    async def outbox_counts(self) -> dict[str, int]:
        """Row counts by outbox status (every status present, zero if none)."""
        stmt = select(OUTBOX.c.status, func.count()).group_by(OUTBOX.c.status)
        async with self._db.read() as conn:
            rows = (await conn.execute(stmt)).all()
        counts = dict.fromkeys(OUTBOX_STATUSES, 0)
        for status, n in rows:
            counts[status] = int(n)
        return counts


def claimable(now: datetime) -> Any:
    """The condition of a row a worker may claim at `now`: pending, due, and not leased (or its lease expired)."""
    return and_(
        OUTBOX.c.status == OUTBOX_PENDING,
        OUTBOX.c.not_before <= now,
        or_(OUTBOX.c.claimed_until.is_(None), OUTBOX.c.claimed_until <= now),
    )


# ---- row <-> dataclass ----


def outbox_values(messages: Iterable[OutboxMessage], now: datetime) -> list[dict[str, Any]]:
    """The new, pending outbox rows of `messages`, due at `now`."""
    rows: list[dict[str, Any]] = []
    for m in messages:
        rows.append(
            {
                "kind": m.kind.value,
                "incident_key": m.incident_key,
                "channel": m.channel,
                "text": m.text,
                "blocks": [dict(b) for b in m.blocks],
                # An empty dedup_key cannot be deduplicated: give it a unique one rather than drop the message.
                "dedup_key": m.dedup_key or f"auto:{uuid.uuid4().hex}",
                "user": m.user,
                "status": OUTBOX_PENDING,
                "attempts": 0,
                "not_before": now,
                "created_at": now,
            }
        )
    return rows


def outbox_from_row(row: RowMapping) -> OutboxMessage:
    """The message of an outbox row (with its id)."""
    return OutboxMessage(
        kind=enum_or(OutboxKind, row["kind"], OutboxKind.REPLY),
        incident_key=row["incident_key"],
        channel=row["channel"],
        text=row["text"],
        blocks=blocks_from_json(row["blocks"]),
        dedup_key=row["dedup_key"],
        user=row["user"],
        id=row["id"],
    )


__all__ = ["CLAIM_LOCK_KEY", "OutboxRepo", "ThreadRecorder", "claimable", "outbox_from_row", "outbox_values"]


class PaceRepo:
    """Slack's pace shared across replicas: each send reserves a slot of its bucket (a channel ID, or "chat.update")."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @retry_disconnects
    async def reserve(self, bucket: str, interval_s: float, burst: int, now: float | None = None) -> float:
        """Reserve the next slot of `bucket` (one message per `interval_s`, bursts of `burst`); return how many
        seconds the caller waits before sending. Reservations of every replica are serialised in the database."""
        async with self._db.write() as conn:
            await self._db.advisory_xact_lock(conn, PACE_LOCK_KEY)
            # Read the clock once the lock is held: a caller that waited for another replica's transaction must
            # not reserve from the moment it started waiting.
            at = time.time() if now is None else now
            stored = (await conn.execute(select(SLACK_PACE.c.next_at).where(SLACK_PACE.c.bucket == bucket))).first()
            tat = max(float(stored[0]) if stored is not None else at, at) + interval_s
            if stored is None:
                await conn.execute(insert(SLACK_PACE).values(bucket=bucket, next_at=tat))
            else:
                await conn.execute(update(SLACK_PACE).where(SLACK_PACE.c.bucket == bucket).values(next_at=tat))
        slot = tat - max(1, burst) * interval_s  # when this send may go (wall clock)
        # The wait counts from now, after the commit, so that a slow transaction does not make the send late and
        # bunch it up with the next replica's.
        return max(0.0, slot - (time.time() if now is None else at))
