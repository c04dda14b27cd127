"""The store's engine and transactions: connection set-up, retry on a lost connection, and `Database`.

Every repository (incidents_repo, outbox_repo, proposals_repo, audit_repo) runs its SQL through one `Database`:

- each public repository method is one transaction, `Database.write()` for writers and `Database.read()` for
  readers, and is wrapped in `retry_disconnects`: a method whose connection the server dropped (restart, failover,
  `pg_terminate_backend`) runs again on a new one, unless the drop happened while committing: then the outcome is
  unknown and the error reaches the caller;
- on SQLite every writing transaction starts with `BEGIN IMMEDIATE` (readers with `BEGIN DEFERRED`), which gives
  several `Store` objects (or processes) sharing one file the guarantees PostgreSQL gives with row locks and
  transaction-scoped advisory locks (`Database.advisory_xact_lock`, a no-op on SQLite);
- all timestamps are timezone-aware UTC (`utcnow`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import Table, event, text
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection, RowMapping, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.sql import Executable

_SQLITE_BEGIN_OPTION = "imagepull_sqlite_begin"
DISCONNECT_RETRIES = 4
CONNECT_RETRIES = 10  # a refused new connection (the server is full) is waited for about 15 s in all

_P = ParamSpec("_P")
_R = TypeVar("_R")
# Set by `retry_disconnects` for one call: becomes True once that call's transaction starts committing.
_COMMITTING: ContextVar[list[bool] | None] = ContextVar("_COMMITTING", default=None)
log = logging.getLogger(__name__)


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def retry_disconnects(fn: Callable[_P, Awaitable[_R]]) -> Callable[_P, Awaitable[_R]]:
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
                if _refused_connection(exc) and attempt < CONNECT_RETRIES:
                    # PostgreSQL refused a new connection (max_connections reached, SQLSTATE 53300): nothing ran
                    # yet, so waiting for a slot and trying again is always safe.
                    log.warning("store.%s: the database has no free connection, retrying", fn.__name__)
                    await asyncio.sleep(min(0.1 * 2**attempt, 2.0))
                    attempt += 1
                    continue
                # A lost commit may have been applied: only the caller can tell whether a retry is safe.
                if not exc.connection_invalidated or committing[0] or attempt >= DISCONNECT_RETRIES:
                    raise
                log.warning("store.%s: database connection lost (%s), retrying", fn.__name__, type(exc.orig).__name__)
            finally:
                _COMMITTING.reset(token)
            await asyncio.sleep(0.05 * 2**attempt)
            attempt += 1

    return wrapper


def _refused_connection(exc: DBAPIError) -> bool:
    """Whether PostgreSQL refused to open a connection because it has too many (SQLSTATE 53300)."""
    orig = exc.orig
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return code == "53300" or "too many clients" in str(orig)


# Connections one bot holds on PostgreSQL at most: the pipeline's saves are serialised, the outbox worker, the
# executor and Slack handlers take one each for a moment. SQLAlchemy's default (5 + 10 overflow) would let ten bots
# sharing one server open 150 connections, past PostgreSQL's default max_connections of 100; with this, 60.
PG_POOL_SIZE = 4
PG_MAX_OVERFLOW = 2
PG_POOL_TIMEOUT_S = 30


def make_engine(url: str, *, echo: bool = False) -> AsyncEngine:
    """Create the engine for `url` (sqlite+aiosqlite or postgresql+asyncpg) with the store's connection set-up."""
    backend = make_url(url).get_backend_name()
    if backend not in {"sqlite", "postgresql"}:
        raise ValueError(f"unsupported database backend {backend!r}: use sqlite+aiosqlite or postgresql+asyncpg")
    if backend == "sqlite":
        engine = create_async_engine(url, echo=echo, hide_parameters=True, connect_args={"timeout": 30})
        _configure_sqlite(engine)
        return engine
    return create_async_engine(
        url,
        echo=echo,
        hide_parameters=True,
        pool_pre_ping=True,
        pool_size=PG_POOL_SIZE,
        max_overflow=PG_MAX_OVERFLOW,
        pool_timeout=PG_POOL_TIMEOUT_S,
    )


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


def reading(engine: AsyncEngine) -> AsyncEngine:
    """`engine` for read-only connections: on SQLite their transactions begin DEFERRED (no write lock)."""
    return engine.execution_options(**{_SQLITE_BEGIN_OPTION: "DEFERRED"})


class Database:
    """One engine and the transaction helpers the repositories share."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._read_engine = reading(engine)
        self.dialect: str = engine.dialect.name

    async def check(self) -> None:
        """Run `SELECT 1`; raises if the database cannot be reached."""
        async with self._read_engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def close(self, drain_s: float = 5.0) -> None:
        """Close every pooled connection, after waiting up to `drain_s` for connections still in use to come back.

        A Slack listener runs after its ack as a task nobody awaits; closing the pool under its feet would leave its
        connection to be garbage-collected unclosed (aiosqlite's thread then calls into a closed loop)."""
        deadline = time.monotonic() + drain_s
        while self._checked_out() and time.monotonic() < deadline:  # noqa: ASYNC110 (the pool has no event)
            await asyncio.sleep(0.02)
        await self.engine.dispose()  # the read engine shares this pool

    def _checked_out(self) -> int:
        checkedout = getattr(self.engine.pool, "checkedout", None)  # NullPool and StaticPool have no count
        return int(checkedout()) if callable(checkedout) else 0

    async def ping(self, timeout: float = 2.0) -> bool:
        """Tell whether the database answers `SELECT 1` within `timeout` seconds."""
        try:
            async with asyncio.timeout(timeout), self._read_engine.connect() as conn:
                return bool((await conn.execute(text("SELECT 1"))).scalar_one() == 1)
        except (SQLAlchemyError, OSError, TimeoutError):
            return False

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A writing transaction (BEGIN IMMEDIATE on SQLite), committed when the block ends without an error."""
        async with self.engine.begin() as conn:
            yield conn
            committing = _COMMITTING.get()
            if committing is not None:
                committing[0] = True  # leaving the block commits: a connection lost now leaves the outcome unknown

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only connection (BEGIN DEFERRED on SQLite)."""
        async with self._read_engine.connect() as conn:
            yield conn

    async def read_first(self, stmt: Executable) -> RowMapping | None:
        """The first row of `stmt`, or None."""
        async with self.read() as conn:
            return (await conn.execute(stmt)).mappings().first()

    async def read_all(self, stmt: Executable) -> Sequence[RowMapping]:
        """Every row of `stmt`."""
        async with self.read() as conn:
            return (await conn.execute(stmt)).mappings().all()

    @property
    def pg(self) -> bool:
        """True on PostgreSQL."""
        return self.dialect == "postgresql"

    async def advisory_xact_lock(self, conn: AsyncConnection, key: int) -> None:
        """Take a transaction-scoped advisory lock on PostgreSQL; on SQLite BEGIN IMMEDIATE already serialises."""
        if self.pg:
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})

    def insert_ignoring(self, table: Table, conflict_columns: Sequence[str]) -> Any:
        """`INSERT ... ON CONFLICT (cols) DO NOTHING` (same SQL on SQLite and PostgreSQL)."""
        dialect_insert = pg_dialect.insert if self.pg else sqlite_dialect.insert
        return dialect_insert(table).on_conflict_do_nothing(index_elements=list(conflict_columns))


__all__ = ["DISCONNECT_RETRIES", "Database", "make_engine", "reading", "retry_disconnects", "utcnow"]
