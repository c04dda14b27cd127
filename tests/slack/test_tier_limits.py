"""Slack's Tier rate limits, modelled by the fake, and what the bot does about them (issue 17, point 9).

chat.update and conversations.history/replies are Tier 3 (50+ per minute), users.info Tier 4 (100+),
usergroups.users.list Tier 2 (20+): beyond that Slack answers HTTP 429 with Retry-After.
"""

from __future__ import annotations

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.flows.users import UserDirectory
from testkit.slack.web_api import TIER_LIMITS, FakeSlackApi
from tests.slack.conftest import CHANNEL


def test_the_documented_tiers() -> None:
    assert TIER_LIMITS["chat.update"] == 50 and TIER_LIMITS["conversations.history"] == 50
    assert TIER_LIMITS["conversations.replies"] == 50 and TIER_LIMITS["users.info"] == 100
    assert TIER_LIMITS["usergroups.users.list"] == 20


async def test_the_fake_answers_429_with_retry_after_past_the_tier(client: AsyncWebClient, fake: FakeSlackApi) -> None:
    cid = fake.channel_id(CHANNEL)
    for _ in range(50):
        await client.conversations_history(channel=cid)
    with pytest.raises(SlackApiError) as limited:
        await client.conversations_history(channel=cid)
    assert limited.value.response.status_code == 429
    assert limited.value.response["error"] == "ratelimited"
    assert 1 <= int(limited.value.response.headers["Retry-After"]) <= 60
    assert fake.throttled == {"conversations.history": 1}


async def test_a_rate_limited_group_lookup_is_waited_out_not_cached_as_empty(fake: FakeSlackApi) -> None:
    """Two group lookups within Tier 2's window: the second gets 429; the bot waits Retry-After and gets the
    members, instead of caching "no members" and refusing an allowed approver for five minutes."""
    fake.tier_limits["usergroups.users.list"] = 1
    fake.tier_window_s = 1.0
    fake.groups.update({"S_OPS": ["U_OPS"], "S_DEV": ["U_OPS", "U_DEV"]})
    users = UserDirectory(AsyncWebClient(token="xoxb-test-not-a-real-token", base_url=fake.url))
    assert await users.principals("U_OPS", ["S_OPS", "S_DEV"]) == {"U_OPS", "S_OPS", "S_DEV"}
    assert fake.throttled == {"usergroups.users.list": 1}


async def test_a_rate_limited_name_lookup_is_retried(fake: FakeSlackApi) -> None:
    fake.tier_limits["users.info"] = 1
    fake.tier_window_s = 1.0
    fake.users["U2"] = {"id": "U2", "name": "bob", "profile": {"display_name": "Bob"}}
    users = UserDirectory(AsyncWebClient(token="xoxb-test-not-a-real-token", base_url=fake.url))
    assert await users.name("U1") == "u1"
    assert await users.name("U2") == "Bob"
