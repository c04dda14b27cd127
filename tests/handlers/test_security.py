"""Security through the real Bolt app over signed HTTP: forged, stale and replayed requests, hostile text,
unauthorised and self approvals. Nothing runs, the user gets a clear refusal, and the audit log has its row."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from bot.model import ProposalStatus
from testkit.kube import objects as o
from tests.handlers.conftest import (
    ADMIN,
    REQUESTER,
    STRANGER,
    SlackEndpoint,
    World,
    action_body,
    command_body,
    eventually,
    eventually_async,
    failing_deployment,
    signed_headers,
)


async def _proposal(world: World) -> tuple[str, int]:
    pods = failing_deployment(world.sim, image=f"{world.registry_host}/team/web:v9")
    pod = pods[0]["metadata"]["name"]
    from bot.chatops.grammar import parse
    from bot.flows import Actor, Where

    await world.flows.command(parse(f"delete-pod shop/{pod}"), Actor(REQUESTER), Where("C0ALERTS"))
    (p,) = await world.store.pending_proposals()
    return pod, p.id or 0


async def _two(world: World) -> list[object] | None:
    records = await world.store.list_audit()
    return records if len(records) >= 2 else None


async def test_signed_command_runs_and_answers_ephemerally(world: World, endpoint: SlackEndpoint) -> None:
    """A correctly signed `/imagepull status` is acked and answered with an ephemeral from the flow."""
    body = command_body("status")
    status, _ = await endpoint.post(body, signed_headers(body))
    assert status == 200
    (message,) = await eventually(lambda: world.slack.ephemerals)
    assert message.user == REQUESTER and "prod" in message.text


async def test_forged_signature_changes_nothing(world: World, endpoint: SlackEndpoint) -> None:
    """A delete-pod signed with another secret gets 401: no proposal, no audit row, no message."""
    body = command_body("delete-pod shop/web-x")
    status, _ = await endpoint.post(body, signed_headers(body, secret="not-the-secret"))
    assert status == 401
    await asyncio.sleep(0.2)
    assert world.slack.ephemerals == [] and await world.store.list_audit() == []


async def test_stale_timestamp_is_refused(world: World, endpoint: SlackEndpoint) -> None:
    """A correctly signed request older than five minutes is refused."""
    body = command_body("status")
    status, _ = await endpoint.post(body, signed_headers(body, ts=int(time.time()) - 6 * 60))
    assert status == 401
    await asyncio.sleep(0.2)
    assert world.slack.ephemerals == []


async def test_replayed_request_changes_nothing(world: World, endpoint: SlackEndpoint) -> None:
    """The same signed approval sent twice: the second is refused before any listener runs."""
    _, pid = await _proposal(world)
    body = action_body("imagepull:approve", json.dumps({"proposal": pid}), ADMIN)
    headers = signed_headers(body)
    first, _ = await endpoint.post(body, headers)
    assert first == 200
    await eventually(lambda: world.slack.ephemerals)
    audit_before = len(await world.store.list_audit())
    second, text = await endpoint.post(body, headers)
    assert second == 401 and "replayed" in text
    await asyncio.sleep(0.2)
    assert len(world.slack.ephemerals) == 1
    assert len(await world.store.list_audit()) == audit_before


@pytest.mark.parametrize(
    "text",
    [
        "delete-pod shop/web; rm -rf /",
        "delete-pod shop/$(reboot)",
        "diagnose <!channel>",
        "diagnose <http://evil.example|shop/web>",
        "link-secret shop/default `id`",
        "delete-pod shop/web && curl evil",
        "delete-pod Shop/WEB",
        "scan ../../etc",
    ],
)
async def test_hostile_command_text_runs_nothing(world: World, endpoint: SlackEndpoint, text: str) -> None:
    """Shell metacharacters, mentions and links: a clear refusal, an audit row, no proposal, no echo."""
    world.sim.put(o.namespace("shop"))
    body = command_body(text)
    status, answer = await endpoint.post(body, signed_headers(body))
    assert status == 200
    assert ":warning:" in answer and "Usage" in answer
    assert "<!channel>" not in answer and "rm -rf" not in answer and "<http" not in answer
    records = await eventually_async(world.store.list_audit)
    assert [r.entry.action for r in records] == ["command.refused"]
    assert "rm -rf" not in records[0].entry.result and "<!channel>" not in records[0].entry.result
    assert await world.store.pending_proposals() == []


async def test_unauthorised_approver_click(world: World, endpoint: SlackEndpoint) -> None:
    """A click on Approve by someone without a grant: ephemeral refusal, audit row, proposal still pending."""
    _, pid = await _proposal(world)
    body = action_body("imagepull:approve", json.dumps({"proposal": pid}), STRANGER)
    status, _ = await endpoint.post(body, signed_headers(body))
    assert status == 200
    (refusal,) = await eventually(lambda: world.slack.ephemerals)
    assert refusal.user == STRANGER and "no grant" in refusal.text
    records = await eventually_async(lambda: _two(world))
    assert [r.entry.action for r in records] == ["proposal.created", "proposal.refused"]
    assert records[1].entry.actor_id == STRANGER
    assert (await world.store.get_proposal(pid)).status is ProposalStatus.PENDING  # type: ignore[union-attr]
    assert await world.flows.run_executor_once() == 0


async def test_requester_cannot_approve_under_two_person_rule(world: World, endpoint: SlackEndpoint) -> None:
    """Two-person rule: the requester's own Approve click is refused and audited."""
    world.flows.policy.two_person_rule = True
    pods = failing_deployment(world.sim, image=f"{world.registry_host}/team/web:v9")
    body = command_body(f"delete-pod shop/{pods[0]['metadata']['name']}", user=ADMIN)
    await endpoint.post(body, signed_headers(body))
    (p,) = await eventually_async(world.store.pending_proposals)
    click = action_body("imagepull:approve", json.dumps({"proposal": p.id}), ADMIN)
    await endpoint.post(click, signed_headers(click))
    await eventually(lambda: any("two-person" in m.text for m in world.slack.ephemerals))
    assert (await world.store.get_proposal(p.id or 0)).status is ProposalStatus.PENDING  # type: ignore[union-attr]
    assert [r.entry.action for r in await world.store.list_audit()][-1] == "proposal.refused"


async def test_approve_click_decides_and_updates_the_message(world: World, endpoint: SlackEndpoint) -> None:
    """An allowed click approves, the executor runs once, and the proposal message loses its buttons."""
    posted = await world.client.chat_postMessage(channel="C0ALERTS", text="proposal")
    pod, pid = await _proposal(world)
    body = action_body("imagepull:approve", json.dumps({"proposal": pid}), ADMIN, ts=str(posted["ts"]))
    await endpoint.post(body, signed_headers(body))
    await eventually(lambda: world.slack.calls_to("chat.update"))
    assert await world.flows.run_executor_once() == 1
    assert world.sim.terminating("shop", pod)  # deleted: Terminating for its grace period
    message = world.slack.find("C0ALERTS", str(posted["ts"]))
    assert message is not None and "approved" in message.text
    assert all(b.get("type") != "actions" for b in message.blocks)


async def test_recreate_secret_button_opens_a_private_modal(world: World, endpoint: SlackEndpoint) -> None:
    """The Recreate pull secret button opens the modal; its metadata holds names only."""
    from tests.handlers.conftest import store_incident

    incident = await store_incident(world, "web-abc")
    value = json.dumps({"incident": incident.key})
    body = action_body("imagepull:recreate_secret", value, REQUESTER, trigger_id=world.slack.trigger_id())
    await endpoint.post(body, signed_headers(body))
    (view,) = await eventually(lambda: [v for v in world.slack.views if v.get("callback_id")])
    meta = json.loads(view["private_metadata"])
    assert meta["namespace"] == "shop" and meta["cluster"] == "prod"
    assert {b.get("block_id") for b in view["blocks"]} >= {"secret", "source", "server", "username", "password"}
