"""Chaos: the pod and event watches are dropped again and again while pods fail and recover."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from tests.chaos.conftest import World, check_invariants, running_bot, settled, wait_for


async def test_dropped_watches_lose_no_failure_and_no_recovery(
    world_factory: Callable[[str], Awaitable[World]], sqlite_db: str
) -> None:
    """Every failure and recovery that happens around dropped watch streams is posted once."""
    world = await world_factory(sqlite_db)
    world.fail("shop", "api", replicas=2)
    world.fail("billing", "ledger")
    async with running_bot(world.settings()) as runner:
        assert runner.bot is not None
        store = runner.bot.store
        await wait_for(
            lambda: settled(world, store, open_={"api", "ledger"}, resolved=set()), 10, "first incidents posted"
        )
        # Drop the streams, change the world while they reconnect, drop them again.
        assert world.cluster.faults.drop_watches() >= 2
        world.fix("shop", "api")
        world.fail("web", "frontend")
        world.cluster.faults.drop_watches()
        world.fail("batch", "worker")
        world.cluster.faults.drop_watches()
        world.fix("billing", "ledger")
        await wait_for(
            lambda: settled(world, store, open_={"frontend", "worker"}, resolved={"api", "ledger"}),
            15,
            "recoveries and new failures across dropped watches",
        )
        assert runner.failed() is None
        assert runner.bot.watcher is not None and runner.bot.watcher.restarts >= 2
        await check_invariants(world, store)
