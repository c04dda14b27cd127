"""Block Kit as Slack validates it: block ids unique in a message, per-field limits (issue 17, point 3)."""

from __future__ import annotations

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack import render
from testkit.slack.web_api import FakeSlackApi
from tests.slack.conftest import CHANNEL, incident
from tests.slack.test_render import DIAGNOSIS


def _two_containers() -> list[dict[str, object]]:
    """What `/imagepull diagnose deploy/web` answers for a workload with two failing containers."""
    blocks: list[dict[str, object]] = []
    for container in ("web", "sidecar"):
        inc = incident(f"prod|shop|Deployment/web|{container}|reg.example/web:v9|tag_not_found", container=container)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"container {container}"}})
        blocks.extend(render.render_diagnosis(inc, DIAGNOSIS).blocks)
    return blocks


async def test_two_containers_answer_is_accepted(client: AsyncWebClient, fake: FakeSlackApi) -> None:
    """Both diagnoses carry buttons; their actions blocks have different ids, so Slack takes the message."""
    blocks = _two_containers()
    actions = [b for b in blocks if b["type"] == "actions"]
    assert len(actions) == 2 and actions[0]["block_id"] != actions[1]["block_id"]
    await client.chat_postMessage(channel=CHANNEL, text="diagnosis", blocks=blocks)


async def test_the_fake_refuses_what_slack_refuses(client: AsyncWebClient, fake: FakeSlackApi) -> None:
    """Repeated block ids, a section over 3000 characters, a button label over 75, text over 40,000."""
    section = {"type": "section", "block_id": "same", "text": {"type": "mrkdwn", "text": "x"}}
    long_section = {"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}
    button = {"type": "button", "action_id": "a", "text": {"type": "plain_text", "text": "b" * 76}}
    twice = {"type": "button", "action_id": "a", "text": {"type": "plain_text", "text": "ok"}}
    cases = [
        ([section, section], "invalid_blocks"),
        ([long_section], "invalid_blocks"),
        ([{"type": "actions", "elements": [button]}], "invalid_blocks"),
        ([{"type": "actions", "elements": [twice, twice]}], "invalid_blocks"),
    ]
    for blocks, error in cases:
        with pytest.raises(SlackApiError) as refused:
            await client.chat_postMessage(channel=CHANNEL, text="t", blocks=blocks)
        assert refused.value.response["error"] == error
        assert refused.value.response["response_metadata"]["messages"][0].startswith("[ERROR]")
    with pytest.raises(SlackApiError) as too_long:
        await client.chat_postMessage(channel=CHANNEL, text="x" * 40_001)
    assert too_long.value.response["error"] == "msg_too_long"


def test_unique_block_ids_suffixes_repeats() -> None:
    """An answer assembled from parts never repeats a block id."""
    blocks = [{"type": "divider", "block_id": "x"}, {"type": "divider", "block_id": "x"}, {"type": "divider"}]
    assert [b.get("block_id") for b in render.unique_block_ids(blocks)] == ["x", "x.2", None]
