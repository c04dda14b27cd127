"""Chaos: PostgreSQL terminates the bot's connections again and again while incidents open and resolve."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import asyncpg
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from bot.store.store import Store
from tests.chaos.conftest import World, audit, check_invariants, running_bot, settled, wait_for

pytestmark = pytest.mark.integration

KILL = (
    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
)


async def _killer(db_url: str, every_s: float, killed: list[int]) -> None:
    url = make_url(db_url)
    conn = await asyncpg.connect(host=url.host, port=url.port, user=url.username, database=url.database)
    try:
        while True:
            await asyncio.sleep(every_s)
            killed.append(int(await conn.fetchval(KILL)))
    finally:
        await conn.close()


async def test_terminated_connections_lose_nothing(
    world_factory: Callable[[str], Awaitable[World]], pg_db: str
) -> None:
    """pg_terminate_backend on every bot connection, repeatedly: incidents, replies and audit rows all survive."""
    world = await world_factory(pg_db)
    world.fail("shop", "api", replicas=2)
    async with running_bot(world.settings()) as runner:
        assert runner.bot is not None
        store = runner.bot.store
        await wait_for(lambda: settled(world, store, open_={"api"}, resolved=set()), 10, "api posted")
        killed: list[int] = []
        killer = asyncio.create_task(_killer(pg_db, 0.05, killed))
        try:
            world.fail("billing", "ledger", replicas=2)
            world.fail("web", "frontend")
            for n in range(5):
                await _audit_once(store, f"row-{n}")
                await asyncio.sleep(0.1)
            world.fix("shop", "api")
            world.fail("batch", "worker")
            await wait_for(lambda: _any(killed), 5, "a connection was terminated")
            world.fix("web", "frontend")
            await wait_for(
                lambda: settled(world, store, open_={"ledger", "worker"}, resolved={"api", "frontend"}),
                15,
                "every change stored and posted despite terminated connections",
            )
        finally:
            killer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await killer
        assert sum(killed) >= 3, f"too few connections terminated: {killed}"
        assert runner.failed() is None
        await check_invariants(world, store)
        rows = await store.list_audit(limit=100)
        assert [r.entry.target for r in rows if r.entry.action == "chaos.during_kills"] == [
            f"row-{n}" for n in range(5)
        ]


async def _audit_once(store: Store, target: str) -> None:
    """Append an audit row as a careful flow does: the store retries lost connections itself; a commit whose answer
    was lost surfaces as an error, and then the row is looked for before it is written again."""
    while True:
        try:
            await audit(store, "chaos.during_kills", target)
            return
        except DBAPIError:
            rows = await store.list_audit(limit=1000)
            if any(r.entry.target == target for r in rows):
                return


async def _any(killed: list[int]) -> bool:
    return sum(killed) > 0
