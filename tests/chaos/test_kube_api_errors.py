"""Chaos: the Kubernetes API answers 500 and 429 (with Retry-After) to lists, watches, reads and lease writes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from tests.chaos.conftest import World, check_invariants, running_bot, settled, wait_for


async def test_api_errors_delay_but_never_lose_incidents(
    world_factory: Callable[[str], Awaitable[World]], sqlite_db: str
) -> None:
    """500s and 429s at start-up and mid-run: every incident is still posted once and resolved once."""
    world = await world_factory(sqlite_db)
    world.fail("shop", "api", replicas=2)
    world.fail("billing", "ledger")
    faults = world.cluster.faults
    faults.fail_next(2, 500)  # whatever comes first: discovery, the lease, a list
    faults.fail_next(2, 429, path_prefix="/api/v1/pods", retry_after=1)
    faults.fail_next(2, 500, path_prefix="/api/v1/events")
    async with running_bot(world.settings()) as runner:
        assert runner.bot is not None
        store = runner.bot.store
        await wait_for(lambda: settled(world, store, open_={"api", "ledger"}, resolved=set()), 12, "posted")
        # Mid-run: the pod reads of the diagnosis, the lease and the watches fail for a while.
        faults.fail_next(2, 500, path_prefix="/api/v1/namespaces/web")
        faults.fail_next(1, 429, path_prefix="/apis/coordination.k8s.io", retry_after=1)
        faults.fail_next(2, 500, path_prefix="/api/v1/pods")
        faults.drop_watches()
        world.fail("web", "frontend")
        world.fix("shop", "api")
        await wait_for(
            lambda: settled(world, store, open_={"ledger", "frontend"}, resolved={"api"}), 15, "mid-run errors"
        )
        assert faults.injected >= 6, f"only {faults.injected} faults were hit"
        assert runner.bot.is_leader.is_set(), "leadership lost over transient API errors"
        assert runner.failed() is None
        incidents = await check_invariants(world, store)
        frontend = next(i for i in incidents if i.workload.name == "frontend")
        assert frontend.cause.value == "tag_not_found", "a failed pod read degraded the diagnosis for good"
