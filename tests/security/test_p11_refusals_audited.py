"""Point 11 (Low): some refusals left no audit row.

Through the real Slack app (signed requests): an approval of an unknown proposal, malformed buttons, a malformed
form, typed-credential form errors, and the losing side of two concurrent approvals. Each refusal is audited.
"""

from __future__ import annotations

import asyncio
import json

from bot.chatops.port import SecretDefaults
from handlers.modals import recreate_secret_view
from tests.handlers.conftest import (
    ADMIN,
    OPS_MEMBER,
    SlackEndpoint,
    World,
    action_body,
    command_body,
    eventually_async,
    failing_deployment,
    signed_headers,
)
from tests.security.conftest import submission


async def _post(endpoint: SlackEndpoint, body: str) -> None:
    assert (await endpoint.post(body, signed_headers(body)))[0] == 200


async def _refusals(world: World, n: int) -> list[str]:
    async def enough() -> list[str] | None:
        rows = [r.entry.result for r in await world.store.list_audit(limit=500) if "refused" in r.entry.action]
        return rows if len(rows) >= n else None

    result: list[str] = await eventually_async(enough)
    return result


async def test_every_refusal_leaves_an_audit_row(world: World, endpoint: SlackEndpoint) -> None:
    await _post(endpoint, action_body("imagepull:approve", json.dumps({"proposal": 9999}), ADMIN))
    await _post(endpoint, action_body("imagepull:approve", "not json", ADMIN))
    await _post(endpoint, action_body("imagepull:snooze", json.dumps({"nothing": 1}), ADMIN))
    view = recreate_secret_view(SecretDefaults("prod", "shop"), "C0ALERTS")
    typed = {"secret": "Bad Name", "server": "https://x/", "username": "", "password": ""}
    await _post(endpoint, submission(view, typed, OPS_MEMBER))
    broken = {**view, "private_metadata": "{not json"}
    await _post(endpoint, submission(broken, {"secret": "regcred"}, OPS_MEMBER))
    await _post(endpoint, action_body("imagepull:snooze", json.dumps({"incident": "no-such-incident"}), ADMIN))
    refusals = await _refusals(world, 6)
    assert any("unknown incident" in r for r in refusals)
    assert any("no such proposal" in r for r in refusals)
    assert sum("malformed button" in r for r in refusals) == 2
    assert any("recreate-secret form: invalid" in r for r in refusals)
    assert any("malformed form" in r for r in refusals)


async def test_the_losing_concurrent_approval_is_audited(world: World, endpoint: SlackEndpoint) -> None:
    pod = failing_deployment(world.sim, image=f"{world.registry_host}/team/web:v9")[0]["metadata"]["name"]
    await _post(endpoint, command_body(f"delete-pod shop/{pod}"))
    (proposal,) = await eventually_async(world.store.pending_proposals)
    clicks = [action_body("imagepull:approve", json.dumps({"proposal": proposal.id}), u) for u in (ADMIN, OPS_MEMBER)]
    await asyncio.gather(*(_post(endpoint, c) for c in clicks))

    async def decided() -> list[str] | None:
        rows = [r.entry.action for r in await world.store.list_audit() if r.entry.proposal_id == proposal.id]
        return rows if len(rows) >= 3 else None

    actions = await eventually_async(decided)
    assert actions.count("proposal.approved") == 1 and actions.count("proposal.refused") == 1, actions
