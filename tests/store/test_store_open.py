"""Opening the store: unsupported URLs are refused, an unreachable server fails fast, ping reports health."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket

import asyncpg
import pytest
from sqlalchemy import text

from bot.store.engine import PG_MAX_OVERFLOW, PG_POOL_SIZE
from bot.store.migrate import upgrade
from bot.store.store import Store, make_engine
from tests.conftest import PG_HOST, PG_PORT, PG_USER
from tests.store import factories
from tests.store.conftest import OpenStore


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_unsupported_backend_is_refused() -> None:
    """Only SQLite and PostgreSQL are supported."""
    with pytest.raises(ValueError, match="unsupported database backend"):
        make_engine("mysql+aiomysql://u@127.0.0.1/db")


async def test_open_fails_when_the_server_is_down() -> None:
    """Store.open connects once, so a wrong URL fails at start rather than at the first incident."""
    with pytest.raises(ConnectionRefusedError):
        await Store.open(f"postgresql+asyncpg://postgres@127.0.0.1:{_closed_port()}/nowhere")


async def test_ping_is_false_when_the_server_is_down() -> None:
    """ping() answers False, without raising, when the database cannot be reached."""
    store = Store(make_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{_closed_port()}/nowhere"))
    try:
        assert await store.ping(timeout=2) is False
    finally:
        await store.close()


async def test_ten_replicas_stay_within_the_pool_bound_under_concurrent_saves(
    migrated_url: str, open_store: OpenStore
) -> None:
    """Ten stores on one database (ten bots) saving incidents and outbox rows, twelve saves at a time each: every save
    lands, and on PostgreSQL the server never sees more connections from them than ten pools' bound. With
    SQLAlchemy's default pool (up to 15 each) the 120 savers would ask for more than PostgreSQL's default
    max_connections of 100 and fail."""
    stores = [await open_store() for _ in range(10)]
    peak = 0
    postgres = migrated_url.startswith("postgresql")

    async def count_connections() -> int:
        async with stores[0].engine.connect() as conn:
            database = migrated_url.rsplit("/", 1)[1]
            rows = await conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE datname = :d"), {"d": database})
            return int(rows.scalar_one())

    async def saves(n: int, store: Store) -> None:
        for i in range(8):
            key = f"c{n}/shop/deployment/api{i}/app/ghcr.io/acme/api:v1/auth"
            inc = factories.incident(key, cluster=f"c{n}")
            await store.save_incident(inc, [factories.message(key, 0)])

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, await count_connections())
            await asyncio.sleep(0.01)

    watcher = asyncio.create_task(watch()) if postgres else None
    try:
        await asyncio.gather(*(saves(n, s) for n, s in enumerate(stores) for _ in range(12)))
    finally:
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
    for n, store in enumerate(stores):
        assert len(await store.open_incidents(f"c{n}")) == 8
    if postgres:
        assert 10 <= peak <= 10 * (PG_POOL_SIZE + PG_MAX_OVERFLOW)


@pytest.mark.integration
async def test_a_full_server_is_waited_for_not_failed(postgres_url: str) -> None:
    """PostgreSQL refusing a new connection (SQLSTATE 53300, its connection limit reached: other bots, other apps
    on the server) is waited for: nothing ran yet, so the save is tried again once a slot is free, and lands."""
    database = postgres_url.rsplit("/", 1)[1]
    role = f"ipd_limited_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database=database, timeout=5)
    store: Store | None = None
    held: asyncpg.Connection | None = None
    try:
        await upgrade(postgres_url)
        await admin.execute(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 1')
        await admin.execute(f'GRANT ALL ON ALL TABLES IN SCHEMA public TO "{role}"')
        await admin.execute(f'GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO "{role}"')
        store = await Store.open(f"postgresql+asyncpg://{role}@{PG_HOST}:{PG_PORT}/{database}")
        await store.engine.dispose()  # no pooled connection: the save must open one
        held = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=role, database=database, timeout=5)
        key = "full/shop/deployment/api/app/ghcr.io/acme/api:v1/auth"
        save = asyncio.create_task(store.save_incident(factories.incident(key, cluster="full")))
        await asyncio.sleep(0.5)
        assert not save.done()  # refused (the role's one connection is taken) and waiting, not failed
        await held.close()
        held = None
        await asyncio.wait_for(save, 20)
        assert len(await store.open_incidents("full")) == 1
    finally:
        if held is not None:
            await held.close()
        if store is not None:
            await store.close()
        await admin.execute(f'REASSIGN OWNED BY "{role}" TO {PG_USER}')
        await admin.execute(f'DROP OWNED BY "{role}"')
        await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        await admin.close()
