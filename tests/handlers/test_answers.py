"""Answers reach the user where the bot cannot post, and modals open within the trigger_id's 3 seconds
(issue 17, points 2 and 4), through the real Bolt app over signed HTTP against the fake Slack."""

from __future__ import annotations

import json

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError

from bot.model import ProposalStatus
from testkit.kube import objects as o
from tests.handlers.conftest import (
    CHANNEL,
    REQUESTER,
    SlackEndpoint,
    World,
    action_body,
    command_body,
    eventually,
    eventually_async,
    signed_headers,
    store_incident,
)

DM = "D0DIRECT1"  # a direct message between the user and someone else: Slack refuses the bot's posts there


async def test_command_in_a_direct_message_is_answered_through_response_url(
    world: World, endpoint: SlackEndpoint
) -> None:
    """`/imagepull status` typed in a DM: chat.postEphemeral would answer channel_not_found; the response_url works."""
    body = command_body("status", channel=DM, response_url=world.slack.response_url(DM, REQUESTER))
    status, _ = await endpoint.post(body, signed_headers(body))
    assert status == 200
    (answer,) = await eventually(lambda: world.slack.responses)
    assert answer.user == REQUESTER and "prod" in answer.text
    assert world.slack.calls_to("chat.postEphemeral") == []


async def test_button_in_a_channel_without_the_bot_is_answered(world: World, endpoint: SlackEndpoint) -> None:
    """A click in a channel the bot left: the refusal still reaches the user (response_url of the click)."""
    outside = world.slack.add_channel("outside", member=False, private=True)
    url = world.slack.response_url(outside, REQUESTER)
    body = action_body("imagepull:snooze", json.dumps({"incident": "nope"}), REQUESTER, outside, response_url=url)
    await endpoint.post(body, signed_headers(body))
    (answer,) = await eventually(lambda: world.slack.responses)
    assert answer.user == REQUESTER and answer.channel == outside


async def test_errors_are_answered_through_response_url(world: World, endpoint: SlackEndpoint) -> None:
    """An unknown error in a DM: the user still gets the error id (Bolt's respond in the global error handler)."""
    url = world.slack.response_url(DM, REQUESTER)
    body = command_body("recreate-secret shop/regcred", channel=DM, response_url=url, trigger_id="never-issued")
    await endpoint.post(body, signed_headers(body))
    (answer,) = await eventually(lambda: world.slack.responses)
    assert "error id" in answer.text


async def test_proposal_from_a_direct_message_goes_to_the_namespace_channel(
    world: World, endpoint: SlackEndpoint
) -> None:
    """A proposal made in a DM has no thread: its approval message goes to the routed channel, and the user is
    told where."""
    world.sim.put(o.namespace("shop"))
    world.sim.put(o.service_account("default", "shop"))
    world.sim.put(o.docker_config_secret("regcred", "shop", {"reg.example": {"username": "u", "password": "p"}}))
    url = world.slack.response_url(DM, REQUESTER)
    body = command_body("link-secret shop/default regcred", channel=DM, response_url=url)
    await endpoint.post(body, signed_headers(body))
    (answer,) = await eventually(lambda: world.slack.responses)
    (proposal,) = await eventually_async(world.store.pending_proposals)
    assert proposal.status is ProposalStatus.PENDING
    assert proposal.params["channel"] != DM
    assert "waiting for approval in" in answer.text


async def test_the_fake_response_url_expires_after_30_minutes_and_5_uses(world: World) -> None:
    """What Slack documents for response_url: up to 5 answers within 30 minutes."""
    url = world.slack.response_url(CHANNEL, REQUESTER)
    async with aiohttp.ClientSession() as s:
        statuses = []
        for _ in range(6):
            async with s.post(url, json={"text": "hi"}) as r:
                statuses.append((r.status, await r.text()))
        assert statuses[:5] == [(200, "ok")] * 5 and statuses[5] == (404, "used_url")
        late = world.slack.response_url(CHANNEL, REQUESTER)
        world.slack.age_response_urls(30 * 60 + 1)
        async with s.post(late, json={"text": "hi"}) as r:
            assert (r.status, await r.text()) == (404, "expired_url")


async def test_recreate_button_opens_the_modal_before_slow_reads(world: World, endpoint: SlackEndpoint) -> None:
    """The Kubernetes API answers slowly (longer than the trigger_id lives): the loading modal opens at once with
    the trigger_id, and the form replaces it through views.update."""
    world.slack.trigger_ttl_s = 0.5  # Slack: 3 s; shortened so the test is quick, the API is slower still
    incident = await store_incident(world, "web-abc")
    world.sim.faults.latency_s = 1.0
    value = json.dumps({"incident": incident.key})
    body = action_body("imagepull:recreate_secret", value, REQUESTER, trigger_id=world.slack.trigger_id())
    await endpoint.post(body, signed_headers(body))
    (view,) = await eventually(lambda: [v for v in world.slack.views if v.get("callback_id")], timeout=15)
    assert json.loads(view["private_metadata"])["namespace"] == "shop"
    methods = [c.method for c in world.slack.calls if c.method.startswith("views.")]
    assert methods == ["views.open", "views.update"]
    assert "callback_id" not in world.slack.view_calls[0]["view"]  # the loading state


async def test_the_fake_refuses_a_late_or_reused_trigger_id(world: World) -> None:
    """views.open with an expired trigger (3 s) answers expired_trigger_id; a second use is refused too."""
    view = {"type": "modal", "title": {"type": "plain_text", "text": "t"}, "blocks": []}
    fresh = world.slack.trigger_id()
    await world.client.views_open(trigger_id=fresh, view=view)
    world.slack.trigger_ttl_s = 0.0
    for trigger, error in ((world.slack.trigger_id(), "expired_trigger_id"), (fresh, "invalid_trigger_id")):
        with pytest.raises(SlackApiError) as refused:
            await world.client.views_open(trigger_id=trigger, view=view)
        assert refused.value.response["error"] == error
