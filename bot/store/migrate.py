"""Schema migrations: `await upgrade(url)` runs Alembic's `upgrade head` programmatically.

Safe on every start and from several replicas at once: on PostgreSQL the upgrade runs under a session-level
advisory lock, so the second replica waits, then finds the schema at head and does nothing.
A database already at head (every restart and failover once the Helm hook or a first replica migrated) is found so by
reading `alembic_version` and the scripts' revision lines, without importing Alembic: it costs about 12 MB of
resident memory for the life of the process and a tenth of a second at start.
The Alembic scripts live in the repository's `migrations/` folder; `migrations_dir()` finds it next to the
source tree, or as an installed top-level `migrations` package.
"""

from __future__ import annotations

import asyncio
import importlib.util
import re
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import exc, pool, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

if TYPE_CHECKING:
    from alembic.config import Config

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
    from alembic.config import Config  # imported here: only a migration needs Alembic

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
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


_REVISION_LINE = re.compile(r"""^(down_)?revision\b[^=]*=\s*(.+)$""", re.MULTILINE)
_REVISION_ID = re.compile(r"""["']([0-9A-Za-z_]+)["']""")


def script_heads(versions: Path | None = None) -> set[str]:
    """The head revisions of the scripts in `versions/`, read from their `revision = "..."` and
    `down_revision = ...` lines (the form `alembic revision` writes) without importing Alembic."""
    folder = versions or migrations_dir() / "versions"
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in folder.glob("*.py"):
        for down, value in _REVISION_LINE.findall(script.read_text(encoding="utf-8")):
            ids = set(_REVISION_ID.findall(value))
            (parents if down else revisions).update(ids)
    return revisions - parents


def _upgrade_on(connection: Connection, config: Config, revision: str) -> None:
    from alembic import command

    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def _downgrade_on(connection: Connection, config: Config, revision: str) -> None:
    from alembic import command

    config.attributes["connection"] = connection
    command.downgrade(config, revision)


def _current_on(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


async def _stored_revisions(url: str) -> set[str]:
    """The revisions `alembic_version` holds (empty when the table does not exist yet)."""
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(text("SELECT version_num FROM alembic_version"))
            return {str(row[0]) for row in rows}
    except exc.DBAPIError:
        return set()
    finally:
        await engine.dispose()


async def at_head(url: str) -> bool:
    """Whether the database at `url` is at the scripts' single head, read without Alembic."""
    heads = script_heads()
    return len(heads) == 1 and await _stored_revisions(url) == heads


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
    A database already at head is left alone without importing Alembic.
    """
    if revision == "head" and await at_head(url):
        return
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
