"""The App Home tab through the real Bolt app: an `app_home_opened` event (Events API, signed JSON) publishes a
view with the open incidents, the latent failures and the proposals this user may approve now."""

from __future__ import annotations

import json

from bot.chatops.grammar import parse
from bot.chatops.port import Actor, Where
from tests.handlers.conftest import (
    ADMIN,
    REQUESTER,
    STRANGER,
    SlackEndpoint,
    World,
    eventually,
    failing_deployment,
    signed_headers,
    store_incident,
)


def home_opened(user: str) -> str:
    event = {"type": "app_home_opened", "user": user, "channel": "D0HOME", "tab": "home", "event_ts": "1.0"}
    body = {
        "token": "unused",
        "team_id": "TFAKE001",
        "api_app_id": "AFAKE001",
        "event": event,
        "type": "event_callback",
        "event_id": f"Ev{user}",
        "event_time": 1,
    }
    return json.dumps(body)


async def test_home_tab_shows_incidents_and_the_proposals_this_user_may_approve(
    world: World, endpoint: SlackEndpoint
) -> None:
    pods = failing_deployment(world.sim, image=f"{world.registry_host}/team/web:v9")
    await store_incident(world, pods[0]["metadata"]["name"])
    await world.flows.command(parse(f"delete-pod shop/{pods[0]['metadata']['name']}"), Actor(REQUESTER), Where("C0A"))
    for user in (ADMIN, STRANGER):
        body = home_opened(user)
        status, _ = await endpoint.post(body, {**signed_headers(body), "Content-Type": "application/json"})
        assert status == 200
    views = await eventually(lambda: world.slack.home_views if len(world.slack.home_views) == 2 else None)
    by_user = {v["user_id"]: json.dumps(v["blocks"]) for v in views}
    assert "Open incidents:* 1" in by_user[ADMIN] and "Proposals waiting for your approval:* 1" in by_user[ADMIN]
    assert "delete_pod" in by_user[ADMIN]
    assert "Proposals waiting for your approval:* 0" in by_user[STRANGER]
