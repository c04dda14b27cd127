"""Chaos: the watches are down while pods recover and fail, and the history expires (410 Gone) before they return."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from tests.chaos.conftest import World, check_invariants, running_bot, settled, wait_for


async def test_recoveries_during_a_410_gap_are_reported_once(
    world_factory: Callable[[str], Awaitable[World]], sqlite_db: str
) -> None:
    """A relist after 410 Gone resolves what recovered in the gap and opens what started failing, once each."""
    world = await world_factory(sqlite_db)
    world.fail("shop", "api", replicas=2)
    world.fail("billing", "ledger")
    world.fail("data", "etl")
    async with running_bot(world.settings()) as runner:
        assert runner.bot is not None
        store = runner.bot.store
        await wait_for(
            lambda: settled(world, store, open_={"api", "ledger", "etl"}, resolved=set()), 10, "incidents posted"
        )
        watcher = runner.bot.watcher
        assert watcher is not None
        # The streams go down and stay down for a few reconnects; meanwhile the world moves on.
        faults = world.cluster.faults
        faults.fail_next(3, 500, path_prefix="/api/v1/pods")
        faults.fail_next(3, 503, path_prefix="/api/v1/events")
        assert faults.drop_watches() >= 2
        world.fix("shop", "api")  # recovered in the gap
        world.fix("billing", "ledger")  # recovered in the gap
        world.fail("web", "frontend")  # started failing in the gap
        assert world.kubelet is not None
        for pod in world.kubelet.pods[("data", "etl")]:  # deleted in the gap; its ReplicaSet replaces it
            world.cluster.delete("Pod", "data", pod["metadata"]["name"])
        faults.expire_history()  # every resourceVersion the bot holds is now too old
        await wait_for(
            lambda: settled(world, store, open_={"etl", "frontend"}, resolved={"api", "ledger"}),
            15,
            "the gap reconciled after 410 Gone",
        )
        assert watcher.relists >= 1, "the watcher never saw 410 Gone"
        assert runner.failed() is None
        incidents = await check_invariants(world, store)
        etl = next(i for i in incidents if i.workload.name == "etl")
        assert etl.pods_seen >= 2, "the replacement pod joined the open incident"
