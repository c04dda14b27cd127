"""Channels are IDs: start-up resolves names, joins public channels, reports the unusable ones (issue 17, point 1).

The fake answers as Slack does: `conversations.history` / `.replies` refuse a `#name` (channel_not_found) and a
channel the bot is not in (not_in_channel), even when `chat:write.public` lets it post there.
"""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.channels import ChannelDirectory
from bot.store.store import Store
from testkit.inprocess import BotInProcess
from testkit.loopback import serve_on_loopback
from testkit.slack.web_api import ALL_SCOPES, FakeSlackApi
from tests.e2e_world import bot_settings, world_for
from tests.slack.conftest import CHANNEL, open_incident
from tests.slack.test_outbox import worker


async def test_crash_after_send_with_a_channel_name_is_reconciled_by_id(
    store: Store, client: AsyncWebClient, fake: FakeSlackApi
) -> None:
    """Rows name the channel (`#imagepull-alerts`); Slack's history needs the ID: one parent, found and adopted."""
    fake.crash_after_send("chat.postMessage", mode="close")
    await open_incident(store, "k1", ("parent", "diagnosis"))
    w = worker(store, client)
    await w.drain(10)
    (thread,) = fake.threads(CHANNEL)
    assert [r.text for r in thread.replies] == ["diagnosis"]
    assert w.reconciled == 1
    cid = fake.channel_id(CHANNEL)
    assert {c.payload["channel"] for c in fake.calls_to("conversations.history")} == {cid}
    stored = await store.get_incident("k1")
    assert stored is not None and (stored.channel, stored.thread_ts) == (cid, thread.parent.ts)


async def test_the_fake_refuses_names_and_non_members_on_history(client: AsyncWebClient, fake: FakeSlackApi) -> None:
    """What real Slack answers: a name is channel_not_found, a channel the bot is not in is not_in_channel."""
    outside = fake.add_channel("outside", member=False)
    posted = await client.chat_postMessage(channel="#outside", text="chat:write.public lets the bot post")
    assert posted["channel"] == outside
    for channel, error in (("#outside", "channel_not_found"), (outside, "not_in_channel")):
        with pytest.raises(SlackApiError) as refused:
            await client.conversations_history(channel=channel)
        assert refused.value.response["error"] == error


async def test_directory_resolves_joins_and_reports(fake: FakeSlackApi) -> None:
    """Names become IDs; a public channel without the bot is joined; private, archived and unknown ones are
    reported with the one thing to do."""
    alerts = fake.channel_id(CHANNEL)
    public = fake.add_channel("platform", member=False)
    private = fake.add_channel("secret-ops", private=True, member=False)
    archived = fake.add_channel("old-alerts", archived=True)
    client = AsyncWebClient(token="xoxb-test-not-a-real-token", base_url=fake.url)
    directory = ChannelDirectory(client)
    report = await directory.check([CHANNEL, "#platform", "#secret-ops", archived, "#nowhere"])
    assert report.ids == {CHANNEL: alerts, "#platform": public, archived: archived}
    assert fake.channels[public].bot_member  # joined (channels:join)
    assert set(report.problems) == {"#secret-ops", archived, "#nowhere"}
    assert "/invite @imagepull-doctor in #secret-ops" in report.problems["#secret-ops"].fix
    assert report.problems[archived].reason == "archived"
    assert not report.ok
    assert directory.id_of("#platform") == public and private not in report.ids.values()


async def test_without_channels_join_the_operator_is_told_to_invite(tmp_path: Path) -> None:
    """No `channels:join` scope: the public channel is reported with the /invite command, not silently used."""
    async with FakeSlackApi(scopes=ALL_SCOPES - {"channels:join"}) as fake:
        fake.add_channel("platform", member=False)
        directory = ChannelDirectory(AsyncWebClient(token="x", base_url=fake.url))
        report = await directory.check(["#platform"])
        (problem,) = report.problems.values()
        assert "missing_scope" in problem.reason and "/invite @imagepull-doctor in #platform" in problem.fix


async def test_startup_routes_by_id_and_readyz_names_unusable_channels(tmp_path: Path) -> None:
    """The running bot stores channel IDs on incidents and /readyz says which configured channels it cannot use."""
    async with world_for(tmp_path / "w") as world:
        world.slack.add_channel("private-team", private=True, member=False)
        settings = bot_settings(
            world, f"sqlite+aiosqlite:///{tmp_path / 'b.db'}", routes={"e2e/billing": "#private-team"}
        )
        runner = BotInProcess(settings)
        await runner.start()
        try:
            bot = runner.bot
            assert bot.book._s.default_channel == world.slack.channel_id("#alerts")  # type: ignore[attr-defined]
            runner_app, port = await serve_on_loopback(bot.health())
            try:
                async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/readyz") as r:
                    status, body = r.status, json.loads(await r.text())
            finally:
                await runner_app.cleanup()
            assert status == 503 and body["checks"]["slack_channels"] is False
            assert "#private-team" in body["slack_channels"]["unusable"]
            assert "/invite @imagepull-doctor" in body["slack_channels"]["unusable"]["#private-team"]
        finally:
            await runner.stop()
