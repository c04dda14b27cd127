"""Point 5 (Medium): approvals do not expire and are not pinned.

Through the real Slack app: a delete-pod is proposed and approved while no executor runs. (1) The pod is replaced
by a new, healthy pod of the same name before an executor runs: the new pod is not deleted. (2) Three days pass
before an executor runs: the approval has expired and nothing is deleted. (3) A request forwarded to a cluster
that has no bot expires too.
"""

from __future__ import annotations

import copy
import json
import uuid
from datetime import timedelta

from bot.model import ProposalStatus
from testkit.kube import objects as o
from tests.handlers.conftest import (
    ADMIN,
    SlackEndpoint,
    World,
    action_body,
    command_body,
    eventually,
    eventually_async,
    failing_deployment,
    signed_headers,
)


async def _approved_delete(world: World, endpoint: SlackEndpoint) -> tuple[str, int]:
    pod = failing_deployment(world.sim, image=f"{world.registry_host}/team/web:v9")[0]["metadata"]["name"]
    body = command_body(f"delete-pod shop/{pod}")
    assert (await endpoint.post(body, signed_headers(body)))[0] == 200
    (proposal,) = await eventually_async(world.store.pending_proposals)
    click = action_body("imagepull:approve", json.dumps({"proposal": proposal.id}), ADMIN)
    assert (await endpoint.post(click, signed_headers(click)))[0] == 200
    await eventually(lambda: len(world.slack.ephemerals) >= 2)
    stored = await world.store.get_proposal(proposal.id or 0)
    assert stored is not None and stored.status is ProposalStatus.APPROVED
    return pod, proposal.id or 0


async def test_a_new_pod_of_the_same_name_is_not_deleted(world: World, endpoint: SlackEndpoint) -> None:
    pod, pid = await _approved_delete(world, endpoint)
    old = world.sim.get("Pod", "shop", pod)
    assert old is not None
    new = copy.deepcopy(old)
    new["metadata"] = {k: v for k, v in new["metadata"].items() if k != "resourceVersion"}
    new["metadata"]["uid"] = str(uuid.uuid4())
    world.sim.delete("Pod", "shop", pod)
    world.sim.put(o.set_running(new, "web"))
    await world.flows.run_executor_once()
    survivor = world.sim.get("Pod", "shop", pod)
    assert survivor is not None and survivor["metadata"]["uid"] == new["metadata"]["uid"]
    done = await world.store.get_proposal(pid)
    assert done is not None and done.status is ProposalStatus.FAILED


async def test_an_approval_not_run_in_time_expires(world: World, endpoint: SlackEndpoint) -> None:
    pod, pid = await _approved_delete(world, endpoint)
    later = world.flows.clock() + timedelta(days=3)
    world.flows.clock = lambda: later
    await world.flows.run_executor_once()
    assert world.sim.get("Pod", "shop", pod) is not None
    expired = await world.store.get_proposal(pid)
    assert expired is not None and expired.status is ProposalStatus.EXPIRED
    assert any(r.entry.action == "proposal.expired" for r in await world.store.list_audit())


async def test_a_request_forwarded_to_a_cluster_without_a_bot_expires(world: World, endpoint: SlackEndpoint) -> None:
    body = command_body("diagnose shop/web-1 --cluster ghost")
    assert (await endpoint.post(body, signed_headers(body)))[0] == 200
    await eventually(lambda: world.slack.ephemerals)
    later = world.flows.clock() + timedelta(days=3)
    world.flows.clock = lambda: later
    await world.flows.run_executor_once()  # the executor of cluster "prod" runs; nobody serves "ghost"
    request = await world.store.get_proposal(1)  # the only proposal of this fresh database
    assert request is not None and request.cluster == "ghost" and request.status is ProposalStatus.EXPIRED
