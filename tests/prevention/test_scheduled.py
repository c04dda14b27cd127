"""The scheduled scan in the running bot: the leader posts one "at risk" thread, edits nothing when nothing changed,
and closes it when the risk is fixed (the pure rules are in test_threads.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.model import IncidentScope, IncidentStatus
from testkit.kube import objects as k8s
from tests.e2e_world import World, bot_settings, running, until, world_for


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with world_for(tmp_path / "world") as w:
        yield w


def _running_deployment(world: World, namespace: str, name: str, image: str, digest: str) -> None:
    world.cluster.put(k8s.namespace(namespace))
    world.cluster.put(k8s.service_account("default", namespace))
    deploy = k8s.deployment(name, namespace, image, 1)
    rs = k8s.replicaset(deploy)
    pod = k8s.set_running(k8s.pod_for(rs, 0, node_name="node-a"), name)
    for status in pod["status"]["containerStatuses"]:
        status["imageID"] = f"{image.rsplit(':', 1)[0]}@{digest}"  # what the running container pulled
    for obj in (deploy, rs, pod):
        world.cluster.put(obj)


async def test_the_leader_posts_an_at_risk_thread_and_closes_it_when_fixed(world: World, tmp_path: Path) -> None:
    image = f"{world.host}/shop/legacy:0.9.0"
    digest = world.registry.add_image("shop/legacy", "0.9.0")
    world.registry.remove_tag("shop/legacy", "0.9.0")  # the registry's retention deleted it; the pods run on
    _running_deployment(world, "shop", "legacy", image, digest)
    settings = bot_settings(world, f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}")
    settings.prevention.first_after_s = 0.1
    settings.prevention.interval_s = 3600
    async with running(settings) as bot:

        async def thread_posted() -> bool:
            return any(
                i.scope is IncidentScope.FINDINGS and i.thread_ts for i in await bot.store.open_incidents(bot.cluster)
            )

        await until(thread_posted, what="the at-risk thread posted")
        (parent,) = world.slack.threads("#alerts")
        assert "1 workload(s) at risk" in str(parent.parent.blocks) and "deployment/legacy" in str(parent.parent.blocks)
        assert bot.book.open_incidents() == [], "the forecast is no incident of the watcher's book"
        report = await bot.scan_and_post()  # the same risk again: nothing new to say
        assert report.by_risk() == {"tag_gone": 1}
        world.registry.add_image("shop/legacy", "0.9.0")  # pushed again
        await bot.scan_and_post()

        async def closed() -> bool:
            threads = [
                i for i in await bot.store.recent_incidents(cluster=bot.cluster) if i.scope is IncidentScope.FINDINGS
            ]
            return bool(threads) and threads[0].status is IncidentStatus.RESOLVED and await _idle(bot)

        await until(closed, what="the thread closed")
        (thread,) = world.slack.threads("#alerts")
        assert [r.text for r in thread.replies] == [
            ":white_check_mark: 1 finding(s) fixed before a pod failed. Closing this thread."
        ]
        assert "No workload at risk" in thread.parent.text


async def _idle(bot: object) -> bool:
    counts = await bot.store.outbox_counts()  # type: ignore[attr-defined]
    return bool(counts.get("pending", 0) == 0)


async def test_the_weekly_report_goes_once_to_every_route_channel(world: World, tmp_path: Path) -> None:
    world.slack.add_channel("pay")
    settings = bot_settings(world, f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}", routes={"e2e/pay": "#pay"})
    settings.prevention.enabled = False
    async with running(settings) as bot:
        assert await bot.post_weekly_report() == 2
        assert await bot.post_weekly_report() == 0, "the same ISO week: nothing more"

        async def both_posted() -> bool:
            return len(world.slack.threads("#alerts")) == 1 and len(world.slack.threads("#pay")) == 1

        await until(both_posted, what="one report per channel")
        (thread,) = world.slack.threads("#pay")
        assert "Image pull report" in thread.parent.text and "last 7 days" in thread.parent.text
        assert bot.book.open_incidents() == []
