"""Chaos: Slack answers 429 with Retry-After, 500s, and fails after performing a post (a parent and a reply)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from tests.chaos.conftest import World, audit, check_invariants, running_bot, settled, wait_for


async def test_slack_faults_never_duplicate_a_thread_or_reply(
    world_factory: Callable[[str], Awaitable[World]], chaos_db: str
) -> None:
    """Crashes after send on a parent and on its reply are reconciled; 429 and 500 are retried; nothing twice."""
    world = await world_factory(chaos_db)
    slack = world.slack
    # The first incident's parent and then its diagnosis reply are stored by Slack but answered with a 500.
    slack.crash_after_send("chat.postMessage", times=2)
    world.fail("shop", "api")
    async with running_bot(world.settings()) as runner:
        assert runner.bot is not None
        store = runner.bot.store
        await wait_for(lambda: settled(world, store, open_={"api"}, resolved=set()), 10, "api posted")
        assert len(slack.calls_to("conversations.history")) >= 1, "the parent was not reconciled"
        assert len(slack.calls_to("conversations.replies")) >= 1, "the reply was not reconciled"
        await audit(store, "chaos.checkpoint", "api")
        # Now throttling and server errors on every write method, and a crash on an edit.
        slack.rate_limit("chat.postMessage", times=1, retry_after=1)
        slack.server_error("chat.postMessage", times=1, status=500)
        slack.server_error("chat.update", times=1, status=503)
        slack.crash_after_send("chat.update", times=1)
        slack.rate_limit("conversations.history", times=1, retry_after=1)
        world.fail("billing", "ledger")
        world.fix("shop", "api")
        await wait_for(lambda: settled(world, store, open_={"ledger"}, resolved={"api"}), 15, "after 429/500s")
        assert runner.bot.outbox.rate_limited >= 1
        assert runner.failed() is None
        await audit(store, "chaos.checkpoint", "ledger")
        await check_invariants(world, store)
        statuses = [c for c in slack.calls if c.method in ("chat.postMessage", "chat.update")]
        assert len(statuses) >= 8, "the faults were not all consumed"
