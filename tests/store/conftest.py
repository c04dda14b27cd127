"""Store fixtures: a migrated, empty database per test on both backends, and extra Store objects on it."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from bot.store.audit import GENESIS_HASH
from bot.store.migrate import upgrade
from bot.store.models import AUDIT_HEAD, metadata
from bot.store.store import Store

OpenStore = Callable[[], Awaitable[Store]]


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once per session; each test gets a copy (faster than migrating)."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    asyncio.run(upgrade(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture(scope="session")
def pg_migrated(postgres_url: str) -> str:
    """The session's PostgreSQL database, migrated to head once."""
    asyncio.run(upgrade(postgres_url))
    return postgres_url


@pytest.fixture
def schema_url(db_url: str, request: pytest.FixtureRequest) -> str:
    """`db_url` with the schema at head (a copy of the template for SQLite; rows may remain on PostgreSQL)."""
    if db_url.startswith("sqlite"):
        database = make_url(db_url).database
        assert database is not None
        shutil.copyfile(request.getfixturevalue("sqlite_template"), database)
        return db_url
    url: str = request.getfixturevalue("pg_migrated")
    return url


@pytest.fixture
async def migrated_url(schema_url: str) -> str:
    """`db_url` with the schema at head and every table empty."""
    if schema_url.startswith("postgresql"):
        store = await Store.open(schema_url)
        try:
            async with store.engine.begin() as conn:  # DELETE is much faster than TRUNCATE on tiny tables
                for table in reversed(metadata.sorted_tables):
                    await conn.execute(table.delete())
                # as the migration leaves it: the audit chain head at the genesis (a missing head means tampering)
                await conn.execute(AUDIT_HEAD.insert().values(id=1, last_id=0, last_hash=GENESIS_HASH))
        finally:
            await store.close()
    return schema_url


@pytest.fixture
async def open_store(migrated_url: str) -> AsyncIterator[OpenStore]:
    """Open more Store objects on the test database (like other replicas); all are closed at the end."""
    opened: list[Store] = []

    async def _open() -> Store:
        store = await Store.open(migrated_url)
        opened.append(store)
        return store

    yield _open
    for store in opened:
        await store.close()


@pytest.fixture
async def store(open_store: OpenStore) -> Store:
    """A Store on a migrated, empty database."""
    return await open_store()


@pytest.fixture
def fresh_pg_url() -> Iterator[str]:
    """A PostgreSQL database of its own for this test (never migrated), dropped afterwards."""
    from tests.conftest import fresh_pg_database

    yield from fresh_pg_database("ipd_test_mig")
