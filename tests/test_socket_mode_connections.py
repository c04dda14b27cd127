"""Socket Mode connections do not grow with replicas: only the leader of a cluster holds one (issue 17, point 5).

Slack allows 10 connections per app; every replica of every cluster used to connect with the one app token. Three
replicas of one cluster run here against a fake Socket Mode server that enforces the cap and hands each envelope to
any open connection: one connection, the command answered, and the connection moves when the leader stops.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from testkit.inprocess import BotInProcess
from testkit.slack.socket_mode import FakeSocketMode
from tests.e2e_world import World, bot_settings, until, world_for


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with world_for(tmp_path / "world") as w:
        yield w


async def test_only_the_leader_holds_the_socket(world: World, shared_db: str) -> None:
    async with FakeSocketMode(max_connections=10) as socket:
        world.slack.socket_url = socket.url
        runners: list[BotInProcess] = []
        try:
            for name in ("bot-a", "bot-b", "bot-c"):
                settings = bot_settings(world, shared_db, ha=True, identity=name)
                settings.slack.app_token = SecretStr("xapp-test-not-a-real-token")
                settings.outbox.rate_per_channel = None
                runner = BotInProcess(settings)
                await runner.start()
                runners.append(runner)

            def leaders() -> list[BotInProcess]:
                return [r for r in runners if r.running is not None and r.bot.is_leader.is_set()]

            async def one_leader_one_socket() -> bool:
                return len(leaders()) == 1 and socket.connections == 1

            await until(one_leader_one_socket, what="one leader holding the only connection")
            channel = world.slack.channel_id("#alerts")
            envelope = await socket.send_slash_command("/imagepull", "help", channel_id=channel)
            await socket.wait_ack(envelope, timeout=10)
            assert socket.peak == 1 and socket.refused == 0

            (leader,) = leaders()
            await leader.stop()
            runners.remove(leader)
            await until(one_leader_one_socket, what="the new leader holds the connection")
            assert socket.peak == 1
        finally:
            for runner in runners:
                await runner.stop()


async def test_the_fake_caps_connections_at_ten() -> None:
    """An eleventh connection is closed without hello, as Slack refuses more than 10 per app."""
    import aiohttp

    async with FakeSocketMode() as socket, aiohttp.ClientSession() as session:
        opened = [await session.ws_connect(socket.url) for _ in range(11)]
        hellos = [await ws.receive() for ws in opened]
        assert sum(1 for m in hellos if m.type == aiohttp.WSMsgType.TEXT) == 10
        assert socket.refused == 1 and socket.connections == 10
        for ws in opened:
            await ws.close()
