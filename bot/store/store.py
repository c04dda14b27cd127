"""The SQL store: incidents, Slack threads, the outbox, proposals and the hash-chained audit log.

One `Store` wraps one `AsyncEngine` (SQLite through aiosqlite, or PostgreSQL through asyncpg). It never migrates:
run `bot.store.migrate.upgrade(url)` first. Several replicas may share one PostgreSQL database:

- outbox rows are claimed with a lease (`claim_outbox`, `SELECT ... FOR UPDATE SKIP LOCKED` under a short
  transaction-scoped advisory lock), so two workers never send the same row and one incident's rows stay in order;
- proposals change state only by compare-and-set (`transition_proposal`), so an approved action runs once;
- audit appends are serialised (`pg_advisory_xact_lock`), so the chain never forks;
- a method whose connection the server dropped (restart, failover, `pg_terminate_backend`) runs again on a new one,
  unless the drop happened while committing: then the outcome is unknown and the error reaches the caller.

On SQLite every writing transaction starts with `BEGIN IMMEDIATE`, which gives the same guarantees for several
`Store` objects (or processes) sharing one file. All timestamps are timezone-aware UTC.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import (
    Table,
    and_,
    case,
    event,
    exists,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection, RowMapping, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.sql import Executable

from bot.model import (
    ActionKind,
    AuditEntry,
    AuditRecord,
    Cause,
    Incident,
    IncidentScope,
    IncidentStatus,
    OutboxKind,
    OutboxMessage,
    Proposal,
    ProposalStatus,
    WorkloadRef,
)
from bot.store import audit as chain
from bot.store.audit import AuditVerification
from bot.store.codec import (
    blocks_from_json,
    cause_from_json,
    diagnosis_from_json,
    diagnosis_to_json,
    str_dict_from_json,
    str_tuple_from_json,
)
from bot.store.models import (
    AUDIT_HEAD,
    AUDIT_LOG,
    INCIDENTS,
    OUTBOX,
    OUTBOX_FAILED,
    OUTBOX_PENDING,
    OUTBOX_SENT,
    OUTBOX_STATUSES,
    PROPOSALS,
    SLACK_THREADS,
    as_utc,
)

# Keys of PostgreSQL advisory locks (any 64-bit integers unique to this application).
AUDIT_LOCK_KEY = 0x1D0C_A0D1
CLAIM_LOCK_KEY = 0x1D0C_0B0C
_AUDIT_HEAD_ID = 1
_VERIFY_PAGE = 1000
_SQLITE_BEGIN_OPTION = "imagepull_sqlite_begin"
_E = TypeVar("_E", bound=Enum)

_ACTION_TARGET_KIND: dict[str, str] = {
    ActionKind.DELETE_POD.value: "pod",
    ActionKind.RECREATE_SECRET.value: "secret",
    ActionKind.LINK_SECRET.value: "serviceaccount",
}


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


_P = ParamSpec("_P")
_R = TypeVar("_R")
DISCONNECT_RETRIES = 4
# Set by `_retry_disconnects` for one call: becomes True once that call's transaction starts committing.
_COMMITTING: ContextVar[list[bool] | None] = ContextVar("_COMMITTING", default=None)
log = logging.getLogger(__name__)


def _retry_disconnects(fn: Callable[_P, Awaitable[_R]]) -> Callable[_P, Awaitable[_R]]:
    """Run a store method again when its connection was lost before its transaction began to commit."""

    @functools.wraps(fn)
    async def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        attempt = 0
        while True:
            committing = [False]
            token = _COMMITTING.set(committing)
            try:
                return await fn(*args, **kwargs)
            except DBAPIError as exc:
                # A lost commit may have been applied: only the caller can tell whether a retry is safe.
                if not exc.connection_invalidated or committing[0] or attempt >= DISCONNECT_RETRIES:
                    raise
                log.warning("store.%s: database connection lost (%s), retrying", fn.__name__, type(exc.orig).__name__)
            finally:
                _COMMITTING.reset(token)
            await asyncio.sleep(0.05 * 2**attempt)
            attempt += 1

    return wrapper


def _enum_or(enum_type: type[_E], value: Any, default: _E) -> _E:
    try:
        return enum_type(value)
    except ValueError:
        return default


def make_engine(url: str, *, echo: bool = False) -> AsyncEngine:
    """Create the engine for `url` (sqlite+aiosqlite or postgresql+asyncpg) with the store's connection set-up."""
    backend = make_url(url).get_backend_name()
    if backend not in {"sqlite", "postgresql"}:
        raise ValueError(f"unsupported database backend {backend!r}: use sqlite+aiosqlite or postgresql+asyncpg")
    if backend == "sqlite":
        engine = create_async_engine(url, echo=echo, connect_args={"timeout": 30})
        _configure_sqlite(engine)
        return engine
    return create_async_engine(url, echo=echo, pool_pre_ping=True)


def _configure_sqlite(engine: AsyncEngine) -> None:
    """Take over SQLite's transaction control so that writers begin with BEGIN IMMEDIATE (serialised)."""

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None  # the driver emits no BEGIN; `_on_begin` does
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get(_SQLITE_BEGIN_OPTION, "IMMEDIATE")
        conn.exec_driver_sql(f"BEGIN {'DEFERRED' if mode == 'DEFERRED' else 'IMMEDIATE'}")


class Store:
    """Async access to the bot's tables; every public method is one transaction."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._read_engine = engine.execution_options(**{_SQLITE_BEGIN_OPTION: "DEFERRED"})
        self.dialect: str = engine.dialect.name

    @classmethod
    async def open(cls, url: str, *, echo: bool = False) -> Store:
        """Connect to `url` (runs no migration; raises if the database cannot be reached)."""
        store = cls(make_engine(url, echo=echo))
        try:
            async with store._read_engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except BaseException:
            await store.close()
            raise
        return store

    async def close(self) -> None:
        """Close every pooled connection."""
        await self._engine.dispose()

    @property
    def engine(self) -> AsyncEngine:
        """The underlying engine (for tests and health checks)."""
        return self._engine

    async def ping(self, timeout: float = 2.0) -> bool:
        """Tell whether the database answers `SELECT 1` within `timeout` seconds (for /readyz)."""
        try:
            async with asyncio.timeout(timeout), self._read_engine.connect() as conn:
                return bool((await conn.execute(text("SELECT 1"))).scalar_one() == 1)
        except (SQLAlchemyError, OSError, TimeoutError):
            return False

    # ---- transactions ----

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        async with self._engine.begin() as conn:
            yield conn
            committing = _COMMITTING.get()
            if committing is not None:
                committing[0] = True  # leaving the block commits: a connection lost now leaves the outcome unknown

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        async with self._read_engine.connect() as conn:
            yield conn

    async def _read_first(self, stmt: Executable) -> RowMapping | None:
        async with self._read() as conn:
            return (await conn.execute(stmt)).mappings().first()

    async def _read_all(self, stmt: Executable) -> Sequence[RowMapping]:
        async with self._read() as conn:
            return (await conn.execute(stmt)).mappings().all()

    @property
    def _pg(self) -> bool:
        return self.dialect == "postgresql"

    async def _advisory_xact_lock(self, conn: AsyncConnection, key: int) -> None:
        if self._pg:
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})

    def _insert_ignoring(self, table: Table, conflict_columns: Sequence[str]) -> Any:
        """`INSERT ... ON CONFLICT (cols) DO NOTHING` (same SQL on SQLite and PostgreSQL)."""
        dialect_insert = pg_dialect.insert if self._pg else sqlite_dialect.insert
        return dialect_insert(table).on_conflict_do_nothing(index_elements=list(conflict_columns))

    # ---- incidents ----

    @_retry_disconnects
    async def save_incident(self, incident: Incident, outbox: Sequence[OutboxMessage] = ()) -> Incident:
        """Insert or update `incident` by key and enqueue `outbox` in one transaction; return it as stored.

        The channel and thread_ts that `set_thread` recorded are never overwritten (the outbox worker owns them),
        and snooze and mute only grow (any replica may set them from Slack while the leader saves its own copy):
        the returned incident carries the stored id, channel, thread_ts, snoozed_until and muted.
        """
        now = utcnow()
        values = _incident_values(incident, now)
        rows = _outbox_values(outbox, now)
        async with self._write() as conn:
            existing = await self._incident_for_update(conn, incident.key)
            row_id: int | None = None
            if existing is None:
                stmt = self._insert_ignoring(INCIDENTS, ["key"]).values(**values).returning(INCIDENTS.c.id)
                row_id = (await conn.execute(stmt)).scalar_one_or_none()
                if row_id is None:  # another replica inserted it meanwhile
                    existing = await self._incident_for_update(conn, incident.key)
            if existing is not None:
                row_id = existing.id
                if existing.thread_ts is not None:  # set_thread recorded the thread: keep it
                    values["channel"], values["thread_ts"] = existing.channel, existing.thread_ts
                values["muted"] = bool(values["muted"] or existing.muted)
                stored_snooze = _opt_utc(existing.snoozed_until)
                if stored_snooze is not None and (
                    values["snoozed_until"] is None or values["snoozed_until"] < stored_snooze
                ):
                    values["snoozed_until"] = stored_snooze
                await conn.execute(update(INCIDENTS).where(INCIDENTS.c.id == row_id).values(**values))
            if rows:
                await self._enqueue(conn, rows)
        return dataclasses.replace(
            incident,
            id=row_id,
            channel=values["channel"],
            thread_ts=values["thread_ts"],
            muted=values["muted"],
            snoozed_until=values["snoozed_until"],
        )

    async def _incident_for_update(self, conn: AsyncConnection, key: str) -> Any:
        stmt = (
            select(
                INCIDENTS.c.id, INCIDENTS.c.channel, INCIDENTS.c.thread_ts, INCIDENTS.c.muted, INCIDENTS.c.snoozed_until
            )
            .where(INCIDENTS.c.key == key)
            .with_for_update()
        )
        return (await conn.execute(stmt)).first()

    @_retry_disconnects
    async def get_incident(self, key: str) -> Incident | None:
        """The incident with this key, or None."""
        row = await self._read_first(select(INCIDENTS).where(INCIDENTS.c.key == key))
        return None if row is None else _incident_from_row(row)

    @_retry_disconnects
    async def get_incident_by_id(self, incident_id: int) -> Incident | None:
        """The incident with this id, or None."""
        row = await self._read_first(select(INCIDENTS).where(INCIDENTS.c.id == incident_id))
        return None if row is None else _incident_from_row(row)

    @_retry_disconnects
    async def open_incidents(self, cluster: str | None = None) -> list[Incident]:
        """Every open incident (of one cluster, if given), oldest first; what the incident book reloads on start."""
        stmt = select(INCIDENTS).where(INCIDENTS.c.status == IncidentStatus.OPEN.value).order_by(INCIDENTS.c.id)
        if cluster is not None:
            stmt = stmt.where(INCIDENTS.c.cluster == cluster)
        return [_incident_from_row(r) for r in await self._read_all(stmt)]

    @_retry_disconnects
    async def recent_incidents(self, limit: int = 20, cluster: str | None = None) -> list[Incident]:
        """Open incidents (most recently seen first), then the most recently resolved ones, at most `limit`."""
        is_resolved = case((INCIDENTS.c.status == IncidentStatus.OPEN.value, 0), else_=1)
        recency = func.coalesce(INCIDENTS.c.resolved_at, INCIDENTS.c.last_seen, INCIDENTS.c.updated_at)
        stmt = select(INCIDENTS).order_by(is_resolved, recency.desc(), INCIDENTS.c.id.desc()).limit(limit)
        if cluster is not None:
            stmt = stmt.where(INCIDENTS.c.cluster == cluster)
        return [_incident_from_row(r) for r in await self._read_all(stmt)]

    @_retry_disconnects
    async def count_incidents(self) -> dict[tuple[IncidentStatus, Cause], int]:
        """Incident counts by (status, cause), for metrics."""
        stmt = select(INCIDENTS.c.status, INCIDENTS.c.cause, func.count()).group_by(
            INCIDENTS.c.status, INCIDENTS.c.cause
        )
        async with self._read() as conn:
            rows = (await conn.execute(stmt)).all()
        counts: dict[tuple[IncidentStatus, Cause], int] = {}
        for status, cause, n in rows:
            key = (_enum_or(IncidentStatus, status, IncidentStatus.OPEN), cause_from_json(cause))
            counts[key] = counts.get(key, 0) + int(n)
        return counts

    @_retry_disconnects
    async def set_thread(self, incident_key: str, channel: str, ts: str) -> bool:
        """Record the Slack thread of an incident (its channel and thread_ts); idempotent; False if no incident."""
        async with self._write() as conn:
            return await self._set_thread(conn, incident_key, channel, ts)

    async def _set_thread(self, conn: AsyncConnection, incident_key: str, channel: str, ts: str) -> bool:
        existing = await self._incident_for_update(conn, incident_key)
        if existing is None:
            return False
        now = utcnow()
        if (existing[1], existing[2]) != (channel, ts):
            await conn.execute(
                update(INCIDENTS)
                .where(INCIDENTS.c.id == existing[0])
                .values(channel=channel, thread_ts=ts, updated_at=now)
            )
        await conn.execute(
            self._insert_ignoring(SLACK_THREADS, ["channel", "ts"]).values(
                incident_id=existing[0], channel=channel, ts=ts, created_at=now
            )
        )
        return True

    @_retry_disconnects
    async def incident_threads(self, incident_key: str) -> list[tuple[str, str]]:
        """Every (channel, ts) thread recorded for an incident, oldest first."""
        stmt = (
            select(SLACK_THREADS.c.channel, SLACK_THREADS.c.ts)
            .join(INCIDENTS, INCIDENTS.c.id == SLACK_THREADS.c.incident_id)
            .where(INCIDENTS.c.key == incident_key)
            .order_by(SLACK_THREADS.c.id)
        )
        async with self._read() as conn:
            return [(r.channel, r.ts) for r in (await conn.execute(stmt)).all()]

    # ---- outbox ----

    @_retry_disconnects
    async def enqueue(self, messages: Sequence[OutboxMessage]) -> int:
        """Record Slack writes; a message whose dedup_key is already stored is skipped. Returns how many were new."""
        rows = _outbox_values(messages, utcnow())
        if not rows:
            return 0
        async with self._write() as conn:
            return await self._enqueue(conn, rows)

    async def _enqueue(self, conn: AsyncConnection, rows: list[dict[str, Any]]) -> int:
        # One multi-row INSERT: ids follow the caller's order, rows whose dedup_key exists return nothing.
        stmt = self._insert_ignoring(OUTBOX, ["dedup_key"]).returning(OUTBOX.c.id)
        return len((await conn.execute(stmt, rows)).all())

    def _claimable(self, now: datetime) -> Any:
        return and_(
            OUTBOX.c.status == OUTBOX_PENDING,
            OUTBOX.c.not_before <= now,
            or_(OUTBOX.c.claimed_until.is_(None), OUTBOX.c.claimed_until <= now),
        )

    @_retry_disconnects
    async def pending_outbox(self, limit: int = 50, now: datetime | None = None) -> list[OutboxMessage]:
        """Pending rows due at `now` (and not leased by a worker), in id order."""
        now = now or utcnow()
        stmt = select(OUTBOX).where(self._claimable(now)).order_by(OUTBOX.c.id).limit(limit)
        return [_outbox_from_row(r) for r in await self._read_all(stmt)]

    @_retry_disconnects
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
            .where(self._claimable(now), ~blocked)
            .order_by(OUTBOX.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True, of=OUTBOX)
        )
        async with self._write() as conn:
            await self._advisory_xact_lock(conn, CLAIM_LOCK_KEY)  # claimers take turns: the check above holds
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
        return [_outbox_from_row(r) for r in rows]

    @_retry_disconnects
    async def release_claims(self, worker_id: str) -> int:
        """Give back the pending rows a previous run of `worker_id` had claimed (a restarted container keeps its
        identity): they are claimable at once instead of when the lease ends, and count an attempt, because that
        run may have reached Slack before it died. Returns how many rows were released."""
        async with self._write() as conn:
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

    @_retry_disconnects
    async def outbox_attempts(self, outbox_id: int) -> int | None:
        """How many failed attempts a row has had (None if no such row)."""
        async with self._read() as conn:
            return (await conn.execute(select(OUTBOX.c.attempts).where(OUTBOX.c.id == outbox_id))).scalar()

    @_retry_disconnects
    async def outbox_status(self, outbox_id: int) -> str | None:
        """The row's status ("pending", "sent", "failed"), or None if no such row."""
        async with self._read() as conn:
            return (await conn.execute(select(OUTBOX.c.status).where(OUTBOX.c.id == outbox_id))).scalar()

    @_retry_disconnects
    async def mark_outbox_sent(self, outbox_id: int, ts: str | None, now: datetime | None = None) -> bool:
        """Mark a row sent with the message ts Slack returned; a sent parent also records the incident's thread."""
        now = now or utcnow()
        async with self._write() as conn:
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
                await self._set_thread(conn, row.incident_key, row.channel, ts)
        return True

    @_retry_disconnects
    async def mark_outbox_retry(self, outbox_id: int, not_before: datetime, error: str) -> bool:
        """Count a failed attempt and keep the row pending until `not_before` (the error is scrubbed of secrets)."""
        return await self._mark_attempt(
            outbox_id, status=OUTBOX_PENDING, not_before=as_utc(not_before), last_error=chain.scrub_error(error)
        )

    @_retry_disconnects
    async def mark_outbox_failed(self, outbox_id: int, error: str) -> bool:
        """Count a last failed attempt and give up on the row (the error is scrubbed of secrets)."""
        return await self._mark_attempt(outbox_id, status=OUTBOX_FAILED, last_error=chain.scrub_error(error))

    async def _mark_attempt(self, outbox_id: int, **values: Any) -> bool:
        stmt = (
            update(OUTBOX)
            .where(OUTBOX.c.id == outbox_id)
            .values(attempts=OUTBOX.c.attempts + 1, claimed_by=None, claimed_until=None, **values)
        )
        async with self._write() as conn:
            return (await conn.execute(stmt)).rowcount == 1

    @_retry_disconnects
    async def outbox_counts(self) -> dict[str, int]:
        """Row counts by outbox status (every status present, zero if none)."""
        stmt = select(OUTBOX.c.status, func.count()).group_by(OUTBOX.c.status)
        async with self._read() as conn:
            rows = (await conn.execute(stmt)).all()
        counts = dict.fromkeys(OUTBOX_STATUSES, 0)
        for status, n in rows:
            counts[status] = int(n)
        return counts

    # ---- proposals ----

    @_retry_disconnects
    async def create_proposal(self, proposal: Proposal, audit: AuditEntry | None = None) -> Proposal:
        """Store a new proposal (and, if given, its audit row in the same transaction); returns it with its id.

        Raises ValueError when params look like a secret. An `audit` entry without a proposal_id gets the new id.
        """
        chain.check_params(proposal.params, "proposal params")
        if audit is not None:
            chain.check_params(audit.params)
        values = _proposal_values(proposal)
        async with self._write() as conn:
            new_id = (await conn.execute(insert(PROPOSALS).values(**values).returning(PROPOSALS.c.id))).scalar_one()
            if audit is not None:
                if audit.proposal_id is None:
                    audit = dataclasses.replace(audit, proposal_id=new_id)
                await self._append_audit(conn, audit)
        return dataclasses.replace(proposal, id=new_id)

    @_retry_disconnects
    async def get_proposal(self, proposal_id: int) -> Proposal | None:
        """The proposal with this id, or None."""
        row = await self._read_first(select(PROPOSALS).where(PROPOSALS.c.id == proposal_id))
        return None if row is None else _proposal_from_row(row)

    @_retry_disconnects
    async def pending_proposals(self) -> list[Proposal]:
        """Every proposal still waiting for a decision, oldest first."""
        stmt = select(PROPOSALS).where(PROPOSALS.c.status == ProposalStatus.PENDING.value).order_by(PROPOSALS.c.id)
        return [_proposal_from_row(r) for r in await self._read_all(stmt)]

    @_retry_disconnects
    async def transition_proposal(
        self,
        proposal_id: int,
        expected: ProposalStatus,
        new: ProposalStatus,
        *,
        decided_by: str | None = None,
        result: str | None = None,
        now: datetime | None = None,
        audit: AuditEntry | None = None,
    ) -> Proposal | None:
        """Atomically move a proposal from `expected` to `new`; None if its status was not `expected`.

        This compare-and-set (`UPDATE ... WHERE id = ? AND status = ?`) is what lets exactly one approver, on any
        replica, win. Leaving PENDING records `decided_at`; `decided_by` and `result` are kept unless given.
        `audit`, if given, is appended in the same transaction (and only if the transition happened).
        """
        if audit is not None:
            chain.check_params(audit.params)
        now = now or utcnow()
        values: dict[str, Any] = {"status": new.value}
        if decided_by is not None:
            values["decided_by"] = decided_by
        if result is not None:
            values["result"] = chain.scrub_error(result)
        if expected == ProposalStatus.PENDING and new != ProposalStatus.PENDING:
            values["decided_at"] = now
        stmt = (
            update(PROPOSALS)
            .where(PROPOSALS.c.id == proposal_id, PROPOSALS.c.status == expected.value)
            .values(**values)
        )
        async with self._write() as conn:
            if (await conn.execute(stmt)).rowcount != 1:
                return None
            row = (await conn.execute(select(PROPOSALS).where(PROPOSALS.c.id == proposal_id))).mappings().one()
            if audit is not None:
                if audit.proposal_id is None:
                    audit = dataclasses.replace(audit, proposal_id=proposal_id)
                await self._append_audit(conn, audit)
        return _proposal_from_row(row)

    @_retry_disconnects
    async def expire_proposals(self, now: datetime | None = None, *, audit: bool = False) -> int:
        """Mark pending proposals whose expiry has passed as expired; returns how many.

        With `audit=True` each expiry also appends a "proposal.expired" row by actor "bot" in the same transaction.
        """
        now = now or utcnow()
        due = select(PROPOSALS).where(PROPOSALS.c.status == ProposalStatus.PENDING.value, PROPOSALS.c.expires_at <= now)
        async with self._write() as conn:
            rows = (await conn.execute(due.order_by(PROPOSALS.c.id).with_for_update())).mappings().all()
            if not rows:
                return 0
            ids = [r["id"] for r in rows]
            result = await conn.execute(
                update(PROPOSALS)
                .where(PROPOSALS.c.id.in_(ids), PROPOSALS.c.status == ProposalStatus.PENDING.value)
                .values(status=ProposalStatus.EXPIRED.value, decided_at=now)
            )
            if audit:
                for row in rows:
                    proposal = _proposal_from_row(row)
                    await self._append_audit(
                        conn,
                        AuditEntry(
                            actor_id="bot",
                            actor_name="imagepull-doctor",
                            action="proposal.expired",
                            target=proposal_target(proposal),
                            params={"action": proposal.action.value},
                            result="expired",
                            at=now,
                            proposal_id=proposal.id,
                            incident_key=proposal.incident_key,
                        ),
                    )
            return int(result.rowcount)

    # ---- audit ----

    @_retry_disconnects
    async def append_audit(self, entry: AuditEntry) -> AuditRecord:
        """Append one hash-chained audit row; raises ValueError when its params look like a secret."""
        chain.check_params(entry.params)
        async with self._write() as conn:
            return await self._append_audit(conn, entry)

    async def _append_audit(self, conn: AsyncConnection, entry: AuditEntry) -> AuditRecord:
        chain.check_params(entry.params)
        # Serialise appenders: an advisory lock on PostgreSQL; on SQLite BEGIN IMMEDIATE already holds the write lock.
        await self._advisory_xact_lock(conn, AUDIT_LOCK_KEY)
        head = (
            await conn.execute(select(AUDIT_HEAD.c.last_id, AUDIT_HEAD.c.last_hash).where(AUDIT_HEAD.c.id == 1))
        ).first()
        if head is not None:
            last_id, last_hash = int(head.last_id), str(head.last_hash)
        else:
            last = (
                await conn.execute(select(AUDIT_LOG.c.id, AUDIT_LOG.c.hash).order_by(AUDIT_LOG.c.id.desc()).limit(1))
            ).first()
            last_id, last_hash = (0, chain.GENESIS_HASH) if last is None else (int(last.id), str(last.hash))
        entry = dataclasses.replace(entry, at=as_utc(entry.at))
        record = chain.make_record(entry, last_id + 1, last_hash)
        await conn.execute(insert(AUDIT_LOG).values(**_audit_values(record)))
        moved = await conn.execute(
            update(AUDIT_HEAD).where(AUDIT_HEAD.c.id == _AUDIT_HEAD_ID).values(last_id=record.id, last_hash=record.hash)
        )
        if moved.rowcount == 0:
            await conn.execute(insert(AUDIT_HEAD).values(id=_AUDIT_HEAD_ID, last_id=record.id, last_hash=record.hash))
        return record

    @_retry_disconnects
    async def list_audit(self, since: datetime | None = None, limit: int = 100) -> list[AuditRecord]:
        """Audit rows in id order: the first `limit` at or after `since`, or (without `since`) the newest `limit`."""
        if since is not None:
            stmt = select(AUDIT_LOG).where(AUDIT_LOG.c.at >= since).order_by(AUDIT_LOG.c.id).limit(limit)
        else:
            stmt = select(AUDIT_LOG).order_by(AUDIT_LOG.c.id.desc()).limit(limit)
        rows = await self._read_all(stmt)
        records = [_audit_from_row(r) for r in rows]
        return records if since is not None else records[::-1]

    @_retry_disconnects
    async def verify_audit(self) -> AuditVerification:
        """Walk the whole chain in one consistent snapshot and report the first edited, deleted or reordered row."""
        verifier = chain.ChainVerifier()
        async with self._read() as conn:
            if self._pg:
                await conn.execution_options(isolation_level="REPEATABLE READ")
            head_row = (
                await conn.execute(select(AUDIT_HEAD.c.last_id, AUDIT_HEAD.c.last_hash).where(AUDIT_HEAD.c.id == 1))
            ).first()
            after = -1  # ids are >= 1; -1 also lets a tampered id 0 or below show up
            while not verifier.broken:
                stmt = select(AUDIT_LOG).where(AUDIT_LOG.c.id > after).order_by(AUDIT_LOG.c.id).limit(_VERIFY_PAGE)
                rows = (await conn.execute(stmt)).mappings().all()
                for row in rows:
                    verifier.feed(_audit_from_row(row))
                if len(rows) < _VERIFY_PAGE:
                    break
                after = rows[-1]["id"]
        head = None if head_row is None else (int(head_row.last_id), str(head_row.last_hash))
        return verifier.finish(head)


# ---- row <-> dataclass ----


def proposal_target(proposal: Proposal) -> str:
    """The audit target of a proposal: "cluster/namespace/kind/name"."""
    kind = _ACTION_TARGET_KIND.get(proposal.action.value, proposal.action.value)
    return f"{proposal.cluster}/{proposal.namespace}/{kind}/{proposal.target}"


def _opt_utc(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


def _incident_values(incident: Incident, now: datetime) -> dict[str, Any]:
    return {
        "key": incident.key,
        "cluster": incident.cluster,
        "namespace": incident.namespace,
        "workload_kind": incident.workload.kind,
        "workload_name": incident.workload.name,
        "container": incident.container,
        "image": incident.image,
        "registry": incident.registry,
        "cause": incident.cause.value,
        "scope": incident.scope.value,
        "status": incident.status.value,
        "pods": list(incident.pods),
        "pods_seen": incident.pods_seen,
        "affected": list(incident.affected),
        "first_seen": _opt_utc(incident.first_seen),
        "last_seen": _opt_utc(incident.last_seen),
        "resolved_at": _opt_utc(incident.resolved_at),
        "diagnosis": None if incident.diagnosis is None else diagnosis_to_json(incident.diagnosis),
        "channel": incident.channel,
        "thread_ts": incident.thread_ts,
        "posted_facts": list(incident.posted_facts),
        "snoozed_until": _opt_utc(incident.snoozed_until),
        "muted": incident.muted,
        "parent_key": incident.parent_key,
        "reopened": incident.reopened,
        "updated_at": now,
    }


def _incident_from_row(row: RowMapping) -> Incident:
    diagnosis = row["diagnosis"]
    return Incident(
        key=row["key"],
        cluster=row["cluster"],
        namespace=row["namespace"],
        workload=WorkloadRef(kind=row["workload_kind"], name=row["workload_name"]),
        container=row["container"],
        image=row["image"],
        registry=row["registry"],
        cause=cause_from_json(row["cause"]),
        scope=_enum_or(IncidentScope, row["scope"], IncidentScope.WORKLOAD),
        status=_enum_or(IncidentStatus, row["status"], IncidentStatus.OPEN),
        id=row["id"],
        pods=str_tuple_from_json(row["pods"]),
        pods_seen=row["pods_seen"],
        affected=str_tuple_from_json(row["affected"]),
        first_seen=row["first_seen"],
        last_seen=row["last_seen"],
        resolved_at=row["resolved_at"],
        diagnosis=None if diagnosis is None else diagnosis_from_json(diagnosis),
        channel=row["channel"],
        thread_ts=row["thread_ts"],
        posted_facts=str_tuple_from_json(row["posted_facts"]),
        snoozed_until=row["snoozed_until"],
        muted=bool(row["muted"]),
        parent_key=row["parent_key"],
        reopened=row["reopened"],
    )


def _outbox_values(messages: Iterable[OutboxMessage], now: datetime) -> list[dict[str, Any]]:
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


def _outbox_from_row(row: RowMapping) -> OutboxMessage:
    return OutboxMessage(
        kind=_enum_or(OutboxKind, row["kind"], OutboxKind.REPLY),
        incident_key=row["incident_key"],
        channel=row["channel"],
        text=row["text"],
        blocks=blocks_from_json(row["blocks"]),
        dedup_key=row["dedup_key"],
        user=row["user"],
        id=row["id"],
    )


def _proposal_values(p: Proposal) -> dict[str, Any]:
    return {
        "action": p.action.value,
        "cluster": p.cluster,
        "namespace": p.namespace,
        "target": p.target,
        "params": dict(p.params),
        "requested_by": p.requested_by,
        "requested_by_name": p.requested_by_name,
        "created_at": as_utc(p.created_at),
        "expires_at": as_utc(p.expires_at),
        "incident_key": p.incident_key,
        "status": p.status.value,
        "decided_by": p.decided_by,
        "decided_at": _opt_utc(p.decided_at),
        "result": p.result,
    }


def _proposal_from_row(row: RowMapping) -> Proposal:
    return Proposal(
        action=ActionKind(row["action"]),
        cluster=row["cluster"],
        namespace=row["namespace"],
        target=row["target"],
        params=str_dict_from_json(row["params"]),
        requested_by=row["requested_by"],
        requested_by_name=row["requested_by_name"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        incident_key=row["incident_key"],
        status=ProposalStatus(row["status"]),
        decided_by=row["decided_by"],
        decided_at=row["decided_at"],
        result=row["result"],
        id=row["id"],
    )


def _audit_values(record: AuditRecord) -> dict[str, Any]:
    e = record.entry
    return {
        "id": record.id,
        "at": e.at,
        "actor_id": e.actor_id,
        "actor_name": e.actor_name,
        "action": e.action,
        "target": e.target,
        "params": dict(e.params),
        "result": e.result,
        "proposal_id": e.proposal_id,
        "incident_key": e.incident_key,
        "prev_hash": record.prev_hash,
        "hash": record.hash,
    }


def _audit_from_row(row: RowMapping) -> AuditRecord:
    entry = AuditEntry(
        actor_id=row["actor_id"],
        actor_name=row["actor_name"],
        action=row["action"],
        target=row["target"],
        # The raw mapping (not filtered) so that a tampered non-string value still changes the hash.
        params=dict(row["params"]) if isinstance(row["params"], dict) else {"": repr(row["params"])},
        result=row["result"],
        at=row["at"],
        proposal_id=row["proposal_id"],
        incident_key=row["incident_key"],
    )
    return AuditRecord(entry=entry, id=row["id"], prev_hash=row["prev_hash"], hash=row["hash"])


__all__ = ["AuditVerification", "Store", "make_engine", "proposal_target", "utcnow"]
