"""Point 1 (High): copying any Secret across namespaces.

A user granted only `dev:recreate_secret` asks to copy `payments/db-password` (an Opaque database password) into
`dev`; a second `dev`-only user approves. Nothing may be copied: the proposal is refused at once (only pull secrets
are ever copied) and, were it stored, approving needs the grant on the source namespace too.
"""

from __future__ import annotations

import json

from bot.chatops.port import Actor
from bot.model import ActionKind, Proposal, ProposalStatus
from testkit.kube import objects as o
from tests.handlers.conftest import SlackEndpoint, World, action_body, command_body, eventually, signed_headers
from tests.security.conftest import grant

DEV1, DEV2 = "U_DEV1", "U_DEV2"


async def _post(endpoint: SlackEndpoint, body: str) -> None:
    status, _ = await endpoint.post(body, signed_headers(body))
    assert status == 200


async def test_opaque_secret_of_another_namespace_is_never_copied(world: World, endpoint: SlackEndpoint) -> None:
    grant(world, {DEV1: ["dev:recreate_secret"], DEV2: ["dev:recreate_secret"]})
    world.sim.put(o.namespace("dev"))
    world.sim.put(o.namespace("payments"))
    world.sim.put(o.opaque_secret("db-password", "payments", {"password": "hunter2-db"}))
    await _post(endpoint, command_body("recreate-secret dev/stolen --from payments/db-password", user=DEV1))
    await eventually(lambda: world.slack.ephemerals)
    for p in await world.store.pending_proposals():  # whatever was stored, the second dev user approves it
        await _post(endpoint, action_body("imagepull:approve", json.dumps({"proposal": p.id}), DEV2))
        await eventually(lambda: len(world.slack.ephemerals) >= 2)
    await world.flows.run_executor_once()
    assert world.sim.get("Secret", "dev", "stolen") is None
    records = await world.store.list_audit()
    assert any(r.entry.action == "proposal.refused" for r in records)


async def test_copying_a_pull_secret_needs_the_grant_on_the_source_namespace(world: World) -> None:
    """Even a pull secret: a `dev`-only approver may not take it out of `payments`."""
    grant(world, {DEV1: ["dev:recreate_secret"], DEV2: ["dev:recreate_secret"]})
    world.sim.put(o.namespace("dev"))
    world.sim.put(o.namespace("payments"))
    world.sim.put(o.docker_config_secret("pull", "payments", {"r.example": {"username": "u", "password": "pw-pay"}}))
    now = world.flows.ctx.now()
    from datetime import timedelta

    proposal = Proposal(
        action=ActionKind.RECREATE_SECRET,
        cluster="prod",
        namespace="dev",
        target="stolen",
        params={"mode": "copy", "from": "payments/pull", "channel": "C0ALERTS", "threaded": "no"},
        requested_by=DEV1,
        requested_by_name="dev1",
        created_at=now,
        expires_at=now + timedelta(minutes=5),
    )
    stored = await world.store.create_proposal(proposal)
    reply = await world.flows.approve(stored.id or 0, Actor(DEV2, "dev2"))
    assert not reply.ok and "payments" in reply.text
    assert (await world.store.get_proposal(stored.id or 0)).status is ProposalStatus.PENDING  # type: ignore[union-attr]
    grant(world, {DEV2: ["dev:recreate_secret", "payments:recreate_secret"]})
    reply = await world.flows.approve(stored.id or 0, Actor(DEV2, "dev2"))
    assert reply.ok
    await world.flows.run_executor_once()
    assert world.sim.get("Secret", "dev", "stolen") is not None
