"""Schema migrations: `await upgrade(url)` runs Alembic's `upgrade head` programmatically.

Safe on every start and from several replicas at once: on PostgreSQL the upgrade runs under a session-level
advisory lock, so the second replica waits, then finds the schema at head and does nothing.
The Alembic scripts live in the repository's `migrations/` folder; `migrations_dir()` finds it next to the
source tree, or as an installed top-level `migrations` package.
"""

from __future__ import annotations

import asyncio
import importlib.util
import weakref
from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import pool, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

MIGRATE_LOCK_KEY = 0x1D0C_0D1B
FILE_TEMPLATE = "%%(year)d%%(month).2d%%(day).2d_%%(rev)s_%%(slug)s"

# Alembic's `context` is a module-level proxy: two upgrades in one process must not interleave.
_PROCESS_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


def _process_lock() -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    lock = _PROCESS_LOCKS.get(loop)
    if lock is None:
        lock = _PROCESS_LOCKS[loop] = asyncio.Lock()
    return lock


def migrations_dir() -> Path:
    """The folder holding env.py and versions/: the repository's `migrations/`, or an installed one."""
    candidates = [Path(__file__).resolve().parents[2] / "migrations"]
    spec = importlib.util.find_spec("migrations")
    if spec is not None and spec.submodule_search_locations:
        candidates.extend(Path(p) for p in spec.submodule_search_locations)
    for candidate in candidates:
        if (candidate / "env.py").is_file() and (candidate / "versions").is_dir():
            return candidate
    raise FileNotFoundError(
        "the Alembic migrations folder was not found (looked in: " + ", ".join(str(c) for c in candidates) + ")"
    )


def alembic_config(url: str | None = None) -> Config:
    """An Alembic Config for the migrations folder (no ini file needed); `url` goes in as an attribute."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("file_template", FILE_TEMPLATE)
    config.set_main_option("path_separator", "os")
    config.attributes["configure_logger"] = False
    if url is not None:
        config.attributes["url"] = url  # attributes skip ini interpolation: a '%' in a password is safe
    return config


def head_revision() -> str | None:
    """The newest revision id among the migration scripts."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _upgrade_on(connection: Connection, config: Config, revision: str) -> None:
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def _downgrade_on(connection: Connection, config: Config, revision: str) -> None:
    config.attributes["connection"] = connection
    command.downgrade(config, revision)


def _current_on(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def _lock(conn: AsyncConnection) -> None:
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATE_LOCK_KEY})
        await conn.commit()  # the session-level lock outlives this transaction


async def _unlock(conn: AsyncConnection) -> None:
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATE_LOCK_KEY})
        await conn.commit()


async def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at `url` to `revision` (default: head); idempotent and safe to run concurrently.

    Concurrent upgrades are serialised within a process and, on PostgreSQL, across processes (advisory lock).
    """
    await _run(url, _upgrade_on, revision)


async def migrate(url: str) -> None:
    """Bring the database at `url` to the newest schema (the name docs/ARCHITECTURE.md uses for `upgrade`)."""
    await upgrade(url)


async def downgrade(url: str, revision: str) -> None:
    """Take the database at `url` back to `revision` ("base" drops every table); for development and tests."""
    await _run(url, _downgrade_on, revision)


async def _run(url: str, step: Callable[[Connection, Config, str], None], revision: str) -> None:
    config = alembic_config(url)
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with _process_lock(), engine.connect() as conn:
            await _lock(conn)
            try:
                await conn.run_sync(step, config, revision)
                await conn.commit()
            finally:
                await conn.rollback()  # nothing left after a commit; undoes a failed step's leftovers
                await _unlock(conn)
    finally:
        await engine.dispose()


async def current_revision(url: str) -> str | None:
    """The revision the database at `url` is at (None: never migrated)."""
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_current_on)
    finally:
        await engine.dispose()


def describe(url: str) -> str:
    """The URL with its password hidden, for logs."""
    return make_url(url).render_as_string(hide_password=True)
