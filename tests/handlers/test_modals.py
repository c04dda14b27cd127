"""The recreate-secret modal over signed HTTP: the form opens from the command, a submission proposes or refuses."""

from __future__ import annotations

import json
from urllib.parse import urlencode

from bot.flows import SecretDefaults
from handlers.modals import recreate_secret_view
from testkit.kube import objects as o
from tests.handlers.conftest import (
    OPS_MEMBER,
    REQUESTER,
    SlackEndpoint,
    World,
    command_body,
    eventually,
    eventually_async,
    signed_headers,
)


def submission(view: dict[str, object], typed: dict[str, str], user: str = REQUESTER) -> str:
    """A view_submission body with `typed` values in the view's input blocks."""
    state = {"values": {block: {"value": {"type": "plain_text_input", "value": v}} for block, v in typed.items()}}
    payload = {
        "type": "view_submission",
        "team": {"id": "TFAKE001"},
        "user": {"id": user},
        "api_app_id": "AFAKE001",
        "view": {**view, "id": "V1", "state": state},
    }
    return urlencode({"payload": json.dumps(payload)})


async def test_command_opens_the_form(world: World, endpoint: SlackEndpoint) -> None:
    """recreate-secret without --from opens the modal, prefilled with the secret and server."""
    body = command_body("recreate-secret shop/regcred --server reg.example.com", trigger_id=world.slack.trigger_id())
    await endpoint.post(body, signed_headers(body))
    (view,) = await eventually(lambda: [v for v in world.slack.views if v.get("callback_id")])
    initial = {b["block_id"]: b["element"].get("initial_value") for b in view["blocks"] if b["type"] == "input"}
    assert initial["secret"] == "regcred" and initial["server"] == "reg.example.com"


async def test_wrong_credentials_are_refused_and_right_ones_proposed(world: World, endpoint: SlackEndpoint) -> None:
    """The registry's 401 refuses the write (ephemeral + audit); accepted ones make a proposal, values unstored."""
    world.sim.put(o.namespace("shop"))
    world.registry.add_image("team/web", "v9")
    world.registry.require_auth("team/*", "robot", "right-pass-9f3k")
    image = f"{world.registry_host}/team/web:v9"
    view = recreate_secret_view(SecretDefaults("prod", "shop", image=image), "C0ALERTS")
    typed = {"secret": "regcred", "source": "", "server": world.registry_host, "username": "robot", "image": image}
    bad = submission(view, {**typed, "password": "wrong-pass-77xq"}, OPS_MEMBER)  # testing needs the grant
    status, _ = await endpoint.post(bad, signed_headers(bad))
    assert status == 200
    (refusal,) = await eventually(lambda: world.slack.ephemerals)
    assert "rejected these credentials (401)" in refusal.text
    assert [r.entry.action for r in await world.store.list_audit()] == ["proposal.refused"]
    good = submission(view, {**typed, "password": "right-pass-9f3k"}, OPS_MEMBER)
    await endpoint.post(good, signed_headers(good))
    (proposal,) = await eventually_async(world.store.pending_proposals)
    assert proposal.params["mode"] == "credentials" and "right-pass" not in json.dumps(proposal.params)
    assert world.flows.vault.holds(proposal.id or 0)


async def test_invalid_form_keeps_the_modal_open_with_errors(world: World, endpoint: SlackEndpoint) -> None:
    """Field errors come back in the ack (response_action=errors), and nothing is proposed."""
    view = recreate_secret_view(SecretDefaults("prod", "shop"), "C0ALERTS")
    body = submission(view, {"secret": "Bad Name", "server": "https://x/", "username": "", "password": ""})
    status, text = await endpoint.post(body, signed_headers(body))
    assert status == 200
    answer = json.loads(text)
    assert answer["response_action"] == "errors" and {"secret", "username", "password"} <= set(answer["errors"])
    assert await world.store.pending_proposals() == []
