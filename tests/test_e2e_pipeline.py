"""End to end: the real bot (run_bot) on the simulated API server, simulated registries, the fake Slack Web API and
SQLite. Only the kubelet is played (by the harness in tests/e2e_world.py: pod statuses and events with containerd's
texts).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.composition import Bot
from bot.model import Cause, IncidentScope, IncidentStatus
from tests.e2e_world import (
    World,
    bot_settings,
    incident_of,
    not_found,
    replies_of,
    running,
    settled,
    too_many_requests,
    until,
    world_for,
)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    """One simulated world per test."""
    async with world_for(tmp_path / "world") as w:
        yield w


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A new SQLite file (the bot migrates it)."""
    return f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"


# ---- tests ----


async def test_one_thread_per_incident_then_updates_resolution_and_relapse(world: World, sqlite_url: str) -> None:
    api = f"{world.host}/shop/api:v1.5.0"
    world.kubelet.workload("shop", "api", api, not_found(api), replicas=2)
    async with running(bot_settings(world, sqlite_url)) as bot:
        await until(lambda: _has_thread(bot, "api"), what="api thread posted")
        await until(lambda: settled(bot), what="outbox drained")
        inc = await incident_of(bot, "api")
        assert inc is not None and inc.cause is Cause.TAG_NOT_FOUND
        [thread] = world.threads_by_incident()[inc.key]
        assert thread.channel == world.slack.channel_id("#alerts") and len(thread.replies) == 1  # the diagnosis
        assert "1.5.0" in thread.replies[0].text  # the nearest existing tag is suggested

        # more pods of the same workload: the parent is edited, no reply per pod
        edits = thread.parent.edits
        for _ in range(3):
            world.kubelet.add_pod("shop", "api")

        async def parent_counts_five() -> bool:
            current = await incident_of(bot, "api")
            return current is not None and current.pods_seen == 5 and thread.parent.edits > edits

        await until(parent_counts_five, what="parent updated for 5 pods")
        await until(lambda: settled(bot), what="outbox drained")
        assert len(world.threads_by_incident()[inc.key][0].replies) == 1
        assert len(world.slack.threads()) == 1

        # the tag is pushed, the containers start: parent says resolved, one closing reply
        world.kubelet.start("shop", "api")

        async def resolved() -> bool:
            current = await incident_of(bot, "api")
            return current is not None and current.status is IncidentStatus.RESOLVED and await settled(bot)

        await until(resolved, what="incident resolved")
        replies = replies_of(world, inc)
        assert len(replies) == 2 and "Resolved" in replies[1]
        assert "resolved" in thread.parent.text.lower()

        # relapse within the window: the SAME thread reopens
        world.kubelet.fail("shop", "api")

        async def reopened() -> bool:
            current = await incident_of(bot, "api")
            return current is not None and current.status is IncidentStatus.OPEN and current.reopened == 1

        await until(reopened, what="incident reopened")
        await until(lambda: settled(bot), what="outbox drained")
        again = await incident_of(bot, "api")
        assert again is not None and again.key == inc.key and again.thread_ts == inc.thread_ts
        assert len(world.slack.threads()) == 1
        assert len(replies_of(world, inc)) == 3
        assert "resolved" not in thread.parent.text.lower()


async def _has_thread(bot: Bot, workload: str) -> bool:
    inc = await incident_of(bot, workload)
    return inc is not None and inc.thread_ts is not None


async def test_registry_storm_gives_one_registry_thread(world: World, sqlite_url: str) -> None:
    for ns, name in (("cache", "redis"), ("data", "postgres"), ("search", "elastic")):
        image = f"{world.hub_host}/library/{name}:7"
        world.kubelet.workload(ns, name, image, too_many_requests(image, world.hub_host))
    async with running(bot_settings(world, sqlite_url)) as bot:

        async def one_registry_thread() -> bool:
            incidents = await bot.store.open_incidents(bot.cluster)
            return len(incidents) == 1 and incidents[0].thread_ts is not None and await settled(bot)

        await until(one_registry_thread, what="one registry incident posted")
        [inc] = await bot.store.open_incidents(bot.cluster)
        assert inc.scope is IncidentScope.REGISTRY and inc.cause is Cause.RATE_LIMITED
        assert sorted(inc.affected) == [
            "cache/deployment/redis",
            "data/deployment/postgres",
            "search/deployment/elastic",
        ]
        assert len(world.slack.threads()) == 1
        assert world.hub_host in world.slack.threads()[0].parent.text


async def test_channel_routing_per_cluster_and_namespace(world: World, sqlite_url: str) -> None:
    for ns in ("billing", "web", "shop"):
        image = f"{world.host}/{ns}/app:9.9.9"
        world.kubelet.workload(ns, "app", image, not_found(image))
    routes = {"e2e/billing": "#billing-oncall", "*/web": "#web-team", "other/*": "#elsewhere"}
    async with running(bot_settings(world, sqlite_url, routes=routes)) as bot:

        async def three_posted() -> bool:
            incidents = await bot.store.open_incidents(bot.cluster)
            return len(incidents) == 3 and await settled(bot)

        await until(three_posted, what="three incidents posted")
        channels = {i.namespace: i.channel for i in await bot.store.open_incidents(bot.cluster)}
        cid = world.slack.channel_id  # routes are resolved to channel IDs at start-up
        assert channels == {"billing": cid("#billing-oncall"), "web": cid("#web-team"), "shop": cid("#alerts")}
        posted = {t.channel for t in world.slack.threads()}
        assert posted == {cid("#billing-oncall"), cid("#web-team"), cid("#alerts")}
        assert all(len(ts) == 1 for ts in world.threads_by_incident().values())


async def test_restart_continues_threads_and_resolves_what_recovered_meanwhile(world: World, sqlite_url: str) -> None:
    api, cart = f"{world.host}/shop/api:v1.5.0", f"{world.host}/shop/cart:2.0.1"
    world.kubelet.workload("shop", "api", api, not_found(api))
    world.kubelet.workload("shop", "cart", cart, not_found(cart), replicas=2)
    settings = bot_settings(world, sqlite_url)
    async with running(settings) as bot:

        async def both_posted() -> bool:
            incidents = await bot.store.open_incidents(bot.cluster)
            return len(incidents) == 2 and await settled(bot)

        await until(both_posted, what="two incidents posted")
        before = {i.workload.name: i for i in await bot.store.open_incidents(bot.cluster)}
    assert len(world.slack.threads()) == 2

    world.kubelet.start("shop", "cart")  # fixed while no bot was running
    posts_before = len(world.slack.calls_to("chat.postMessage"))

    async with running(settings) as bot:

        async def cart_resolved() -> bool:
            inc = await incident_of(bot, "cart")
            return inc is not None and inc.status is IncidentStatus.RESOLVED and await settled(bot)

        await until(cart_resolved, what="cart resolved after the restart")
        await asyncio.sleep(1.5)  # a few ticks: nothing else may be posted
        await until(lambda: settled(bot), what="outbox drained")
        api_now = await incident_of(bot, "api")
        assert api_now is not None and api_now.status is IncidentStatus.OPEN
        assert api_now.key == before["api"].key and api_now.thread_ts == before["api"].thread_ts
    assert len(world.slack.threads()) == 2  # no new thread for either incident
    cart_replies = replies_of(world, before["cart"])
    assert len(cart_replies) == 2 and "Resolved" in cart_replies[1]
    assert len(replies_of(world, before["api"])) == 1
    new_posts = world.slack.calls_to("chat.postMessage")[posts_before:]
    assert [c.payload.get("thread_ts") for c in new_posts] == [before["cart"].thread_ts]
