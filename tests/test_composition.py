"""The composition root (Bot): Lease naming, leading without HA, stepping down when the Lease is taken and
leading again with a reloaded book, and the metered Slack client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.composition import Bot, book_settings
from testkit.kube import objects as k8s
from tests.e2e_world import (
    TOKEN,
    World,
    bot_settings,
    incident_of,
    not_found,
    running,
    settled,
    until,
    world_for,
)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    """One simulated world per test."""
    async with world_for(tmp_path / "world") as w:
        yield w


def _url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"


async def test_lease_is_named_per_cluster_and_book_is_per_cluster(world: World, tmp_path: Path) -> None:
    settings = bot_settings(world, _url(tmp_path), cluster="prod-eu", ha=True, routes={"prod-eu/*": "#eu"})
    bot = await Bot.create(settings)
    try:
        elector = bot.make_elector()
        assert elector.name == "imagepull-doctor-prod-eu" and elector.identity == "bot-a"
        assert elector.retry_s < elector.renew_deadline_s < elector.lease_duration_s
        assert book_settings(settings).cluster == "prod-eu"
        assert bot.cluster == "prod-eu"
    finally:
        await bot.close()


async def test_without_ha_the_bot_leads_at_once_and_takes_no_lease(world: World, tmp_path: Path) -> None:
    api = f"{world.host}/shop/api:v1.5.0"
    world.kubelet.workload("shop", "api", api, not_found(api))
    async with running(bot_settings(world, _url(tmp_path), ha=False)) as bot:
        await until(lambda: settled_with_one(bot), what="incident posted")
        assert bot.is_leader.is_set() and bot.terms == 1
    assert world.cluster.list("Lease") == []


async def settled_with_one(bot: Bot) -> bool:
    return len(await bot.store.open_incidents(bot.cluster)) == 1 and await settled(bot)


async def test_losing_the_lease_stops_the_watcher_and_leading_again_reloads_the_book(
    world: World, tmp_path: Path
) -> None:
    api = f"{world.host}/shop/api:v1.5.0"
    world.kubelet.workload("shop", "api", api, not_found(api))
    async with running(bot_settings(world, _url(tmp_path), ha=True)) as bot:
        await until(lambda: settled_with_one(bot), what="incident posted")
        first = await incident_of(bot, "api")
        assert first is not None and bot.terms == 1

        # another replica takes the Lease (e.g. this one was partitioned): this one must stop leading
        world.cluster.put(k8s.lease("imagepull-doctor-e2e", "default", holder="intruder", duration_s=2))

        async def stepped_down() -> bool:
            return not bot.is_leader.is_set()

        await until(stepped_down, timeout=10, what="the bot stepped down")
        assert "imagepull_leader 0.0" in bot.metrics.render().decode().splitlines()
        watcher = bot.watcher
        assert watcher is not None
        # while it follows, the failure gets a new pod; the intruder's Lease then expires
        world.kubelet.add_pod("shop", "api")

        async def leads_again() -> bool:
            return bot.is_leader.is_set() and bot.terms == 2 and bot.watcher is not watcher

        await until(leads_again, timeout=15, what="the bot leads again")

        async def extended() -> bool:
            inc = await incident_of(bot, "api")
            return inc is not None and inc.pods_seen == 2 and await settled(bot)

        await until(extended, what="the same incident extended")
        again = await incident_of(bot, "api")
        assert again is not None and again.key == first.key and again.thread_ts == first.thread_ts
    assert len(world.slack.threads()) == 1


async def test_the_given_slack_client_is_metered(world: World, tmp_path: Path) -> None:
    given = AsyncWebClient(token=TOKEN, base_url=world.slack.url)
    bot = await Bot.create(bot_settings(world, _url(tmp_path)), slack=given)
    try:
        await bot.slack.auth_test()
        text = bot.metrics.render().decode()
        assert 'imagepull_slack_calls_total{method="auth.test",result="ok"} 1.0' in text
        assert bot.slack.base_url == given.base_url and bot.slack.token == given.token
    finally:
        await bot.close()
