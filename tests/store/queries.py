"""Read-only queries that only tests need, run on `store.engine` (the product's `Store` does not offer them)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.model import Cause, Incident, IncidentStatus, OutboxMessage
from bot.store.codec import cause_from_json, enum_or
from bot.store.engine import reading, utcnow
from bot.store.incidents_repo import incident_from_row
from bot.store.models import INCIDENTS, OUTBOX, SLACK_THREADS
from bot.store.outbox_repo import claimable, outbox_from_row
from bot.store.store import Store


@asynccontextmanager
async def _read(store: Store) -> AsyncIterator[AsyncConnection]:
    """A read-only connection, like the store's own readers (BEGIN DEFERRED on SQLite)."""
    async with reading(store.engine).connect() as conn:
        yield conn


async def get_incident_by_id(store: Store, incident_id: int) -> Incident | None:
    """The incident with this id, or None."""
    async with _read(store) as conn:
        row = (await conn.execute(select(INCIDENTS).where(INCIDENTS.c.id == incident_id))).mappings().first()
    return None if row is None else incident_from_row(row)


async def count_incidents(store: Store) -> dict[tuple[IncidentStatus, Cause], int]:
    """Incident counts by (status, cause)."""
    stmt = select(INCIDENTS.c.status, INCIDENTS.c.cause, func.count()).group_by(INCIDENTS.c.status, INCIDENTS.c.cause)
    async with _read(store) as conn:
        rows = (await conn.execute(stmt)).all()
    counts: dict[tuple[IncidentStatus, Cause], int] = {}
    for status, cause, n in rows:
        key = (enum_or(IncidentStatus, status, IncidentStatus.OPEN), cause_from_json(cause))
        counts[key] = counts.get(key, 0) + int(n)
    return counts


async def incident_threads(store: Store, incident_key: str) -> list[tuple[str, str]]:
    """Every (channel, ts) thread recorded for an incident, oldest first."""
    stmt = (
        select(SLACK_THREADS.c.channel, SLACK_THREADS.c.ts)
        .join(INCIDENTS, INCIDENTS.c.id == SLACK_THREADS.c.incident_id)
        .where(INCIDENTS.c.key == incident_key)
        .order_by(SLACK_THREADS.c.id)
    )
    async with _read(store) as conn:
        return [(r.channel, r.ts) for r in (await conn.execute(stmt)).all()]


async def pending_outbox(store: Store, limit: int = 50, now: datetime | None = None) -> list[OutboxMessage]:
    """Pending rows due at `now` (and not leased by a worker), in id order."""
    now = now or utcnow()
    stmt = select(OUTBOX).where(claimable(now)).order_by(OUTBOX.c.id).limit(limit)
    async with _read(store) as conn:
        return [outbox_from_row(r) for r in (await conn.execute(stmt)).mappings().all()]


async def outbox_status(store: Store, outbox_id: int) -> str | None:
    """The row's status ("pending", "sent", "failed"), or None if no such row."""
    async with _read(store) as conn:
        status: str | None = (await conn.execute(select(OUTBOX.c.status).where(OUTBOX.c.id == outbox_id))).scalar()
    return status
