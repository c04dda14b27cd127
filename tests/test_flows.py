"""Flows end to end on the simulated API server, the SimRegistry, a real SQLite store and the fake Slack API."""
# ruff: noqa: F811  (pytest fixtures imported from tests/handlers/conftest.py are parameters by name)

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import logging
from datetime import timedelta
from pathlib import Path

import pytest

from bot.chatops.grammar import Command, Verb, parse
from bot.flows import Actor, SecretDefaults, Where
from bot.model import ActionKind, OutboxKind, ProposalStatus
from testkit.kube import objects as o
from testkit.kube.apiserver import SimCluster
from tests.handlers.conftest import (  # noqa: F401 - fixtures used by name
    ADMIN,
    CHANNEL,
    OPS_MEMBER,
    REQUESTER,
    SNOOZER,
    STRANGER,
    World,
    failing_deployment,
    sqlite_template,
    store_incident,
    world,
)
from tests.store import queries

WHERE = Where(CHANNEL)


def image(w: World, tag: str = "v9") -> str:
    return f"{w.registry_host}/team/web:{tag}"


async def audit_actions(w: World) -> list[str]:
    return [r.entry.action for r in await w.store.list_audit(limit=1000)]


async def outbox_texts(w: World) -> list[str]:
    return [m.text for m in await queries.pending_outbox(w.store, limit=1000)]


async def propose_delete(w: World, actor: str = REQUESTER) -> tuple[str, int]:
    pods = failing_deployment(w.sim, image=image(w))
    pod = pods[0]["metadata"]["name"]
    reply = await w.flows.command(parse(f"delete-pod shop/{pod}"), Actor(actor), WHERE)
    assert reply.ok, reply.text
    (proposal,) = await w.store.pending_proposals()
    assert proposal.id is not None
    return pod, proposal.id


async def test_delete_pod_proposal_approval_execution_and_audit(world: World) -> None:
    """A controlled pod: dry run, proposal, approval by a granted user, one execution, audit chain intact."""
    w = world
    await store_incident(w, "placeholder")
    pod, pid = await propose_delete(w)
    assert w.sim.get("Pod", "shop", pod) is not None  # the dry run changed nothing
    assert any("Proposal #" in t and "Approve" not in t for t in await outbox_texts(w))
    reply = await w.flows.approve(pid, Actor(ADMIN))
    assert reply.ok and reply.replace_original
    assert await w.flows.run_executor_once() == 1
    assert w.sim.terminating("shop", pod)  # deleted: Terminating for its grace period
    done = await w.store.get_proposal(pid)
    assert done is not None and done.status is ProposalStatus.SUCCEEDED and done.decided_by == ADMIN
    assert await audit_actions(w) == ["proposal.created", "proposal.approved", "action.executed"]
    records = await w.store.list_audit()
    assert records[0].entry.actor_name == REQUESTER.lower()  # users.info display name
    assert records[2].entry.target == f"prod/shop/pod/{pod}"
    assert (await w.store.verify_audit()).ok
    assert await w.flows.run_executor_once() == 0  # nothing runs twice


async def test_bare_pod_is_refused_before_anyone_is_asked(world: World) -> None:
    """Deleting a pod without a controller would lose it: no proposal, an ephemeral refusal, an audit row."""
    w = world
    w.sim.put(o.pod("lonely", "shop", image(w), waiting={"app": ("ErrImagePull", None)}))
    reply = await w.flows.command(parse("delete-pod shop/lonely"), Actor(REQUESTER), WHERE)
    assert not reply.ok and "bare pod" in reply.text
    assert await w.store.pending_proposals() == []
    assert await audit_actions(w) == ["proposal.refused"]


async def test_rbac_refusal_surfaces_in_the_dry_run(world: World) -> None:
    """A 403 on the dry-run delete names the missing permission and creates no proposal."""
    w = world
    pods = failing_deployment(w.sim, image=image(w))
    w.sim.faults.fail_next(status=403, method="DELETE")
    reply = await w.flows.command(parse(f"delete-pod shop/{pods[0]['metadata']['name']}"), Actor(REQUESTER), WHERE)
    assert not reply.ok and "forbidden" in reply.text
    assert await w.store.pending_proposals() == []


async def test_unauthorised_and_group_approvers(world: World) -> None:
    """A stranger is refused (and audited); a member of a granted user group may approve."""
    w = world
    _, pid = await propose_delete(w)
    refused = await w.flows.approve(pid, Actor(STRANGER))
    assert not refused.ok and "no grant" in refused.text
    assert (await w.store.get_proposal(pid)).status is ProposalStatus.PENDING  # type: ignore[union-attr]
    assert await w.flows.run_executor_once() == 0
    ok = await w.flows.approve(pid, Actor(OPS_MEMBER))
    assert ok.ok
    actions = await audit_actions(w)
    assert actions == ["proposal.created", "proposal.refused", "proposal.approved"]
    refusal = (await w.store.list_audit())[1].entry
    assert refusal.actor_id == STRANGER and refusal.result.startswith("refused")


async def test_two_person_rule(world: World) -> None:
    """With the two-person rule, the requester cannot approve their own proposal, even with a grant."""
    w = world
    w.flows.policy.two_person_rule = True
    _, pid = await propose_delete(w, actor=ADMIN)
    refused = await w.flows.approve(pid, Actor(ADMIN))
    assert not refused.ok and "two-person" in refused.text
    assert (await w.flows.approve(pid, Actor(OPS_MEMBER))).ok


async def test_double_click_and_two_executors_run_once(world: World) -> None:
    """Two approvals race: one wins. Two executors of the cluster race: the action runs once."""
    w = world
    _, pid = await propose_delete(w)
    twin = await w.other_bot("prod", identity="prod-2")
    a, b = await asyncio.gather(w.flows.approve(pid, Actor(ADMIN)), twin.approve(pid, Actor(OPS_MEMBER)))
    assert sorted([a.ok, b.ok]) == [False, True]
    ran = await asyncio.gather(w.flows.run_executor_once(), twin.run_executor_once())
    assert sum(ran) == 1
    actions = await audit_actions(w)
    assert actions.count("proposal.approved") == 1 and actions.count("action.executed") == 1


async def test_expired_proposal_cannot_be_approved(world: World) -> None:
    """Past its TTL a proposal is expired (audited) instead of approved."""
    w = world
    _, pid = await propose_delete(w)
    later = w.flows.clock() + timedelta(hours=1)
    w.flows.clock = lambda: later
    reply = await w.flows.approve(pid, Actor(ADMIN))
    assert not reply.ok and "expired" in reply.text
    assert (await w.store.get_proposal(pid)).status is ProposalStatus.EXPIRED  # type: ignore[union-attr]
    assert "proposal.expired" in await audit_actions(w)


async def test_approved_action_survives_a_restart_and_an_interrupted_one_never_reruns(world: World) -> None:
    """Approved but not run: a fresh executor runs it. Claimed then crashed: failed as interrupted, not rerun."""
    w = world
    pod, pid = await propose_delete(w)
    await w.flows.approve(pid, Actor(ADMIN))
    restarted = await w.other_bot("prod", identity="prod-after-restart")
    assert await restarted.run_executor_once() == 1
    assert w.sim.terminating("shop", pod)

    pods = w.sim.list("Pod", "shop")
    second = pods[0]["metadata"]["name"]
    await w.flows.command(parse(f"delete-pod shop/{second}"), Actor(REQUESTER), WHERE)
    (p2,) = await w.store.pending_proposals()
    await w.flows.approve(p2.id or 0, Actor(ADMIN))
    assert await w.flows.queue.claim(p2.id or 0, "crashed-worker")  # claimed, then the process died
    later = w.flows.clock() + timedelta(hours=1)
    restarted.clock = lambda: later
    assert await restarted.run_executor_once() == 0
    final = await w.store.get_proposal(p2.id or 0)
    assert final is not None and final.status is ProposalStatus.FAILED and "interrupted" in (final.result or "")
    assert w.sim.get("Pod", "shop", second) is not None


async def test_request_for_another_cluster_is_answered_by_that_clusters_bot(world: World, tmp_path: Path) -> None:
    """`diagnose --cluster edge` on prod's bot is stored; edge's executor answers it; prod's never runs it."""
    w = world
    edge_sim = SimCluster()
    await edge_sim.start()
    try:
        failing_deployment(edge_sim, image=image(w))
        pod = edge_sim.list("Pod", "shop")[0]["metadata"]["name"]
        edge = await w.other_bot("edge", sim=edge_sim)
        reply = await w.flows.command(parse(f"diagnose shop/{pod} --cluster edge"), Actor(REQUESTER), WHERE)
        assert reply.ok and "edge" in reply.text
        assert await w.flows.run_executor_once() == 0
        assert await edge.run_executor_once() == 1
        (answer,) = [m for m in await queries.pending_outbox(w.store) if m.kind is OutboxKind.EPHEMERAL]
        assert answer.user == REQUESTER and answer.channel == CHANNEL
        assert "Diagnosis: repo_not_found" in answer.text
        assert await audit_actions(w) == ["request.forwarded", "request.answered"]
    finally:
        await edge_sim.stop()


async def test_forwarded_fix_is_dry_run_and_proposed_on_the_right_cluster(world: World) -> None:
    """`delete-pod --cluster edge` becomes a proposal of edge after edge's dry run, approvable anywhere."""
    w = world
    edge_sim = SimCluster()
    await edge_sim.start()
    try:
        failing_deployment(edge_sim, image=image(w))
        pod = edge_sim.list("Pod", "shop")[0]["metadata"]["name"]
        edge = await w.other_bot("edge", sim=edge_sim)
        await w.flows.command(parse(f"delete-pod shop/{pod} --cluster edge"), Actor(REQUESTER), WHERE)
        await edge.run_executor_once()
        (proposal,) = await w.store.pending_proposals()
        assert proposal.cluster == "edge"
        assert (await w.flows.approve(proposal.id or 0, Actor(ADMIN))).ok  # approved on prod's bot
        assert await w.flows.run_executor_once() == 0
        assert await edge.run_executor_once() == 1
        assert edge_sim.terminating("shop", pod)
    finally:
        await edge_sim.stop()


async def test_typed_credentials_are_probed_held_in_memory_and_never_stored(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """Rejected credentials are refused (audited); accepted ones are written after approval, values nowhere else."""
    caplog.set_level(logging.DEBUG)
    w = world
    w.registry.add_image("team/web", "v9")
    w.registry.require_auth("team/*", "robot", "right-pass-9f3k")
    defaults = SecretDefaults(cluster="prod", namespace="shop", image=image(w))
    w.sim.put(o.namespace("shop"))
    common = {"secret": "regcred", "server": w.registry_host, "username": "robot", "image": image(w)}
    bad = await w.flows.propose_credentials(
        defaults, password="wrong-pass-77xq", actor=Actor(OPS_MEMBER), where=WHERE, **common
    )
    assert bad.errors and "401" in bad.errors["password"]
    assert len(w.flows.vault) == 0
    good = await w.flows.propose_credentials(
        defaults, password="right-pass-9f3k", actor=Actor(OPS_MEMBER), where=WHERE, **common
    )
    assert good.reply is not None and good.reply.ok, good
    (proposal,) = await w.store.pending_proposals()
    assert proposal.params["mode"] == "credentials" and proposal.params["holder"] == "prod-1"
    await w.flows.approve(proposal.id or 0, Actor(ADMIN))
    assert await w.flows.run_executor_once() == 1
    secret = w.sim.get("Secret", "shop", "regcred")
    assert secret is not None
    config = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))
    assert config["auths"][w.registry_host]["password"] == "right-pass-9f3k"
    executed = (await w.store.list_audit())[-1].entry
    assert executed.action == "action.executed" and executed.params["new_fingerprint"] != "none"
    # The values never reach SQL, the outbox or the logs.
    db_file = Path(w.db_url.removeprefix("sqlite+aiosqlite:///"))
    raw = b"".join(p.read_bytes() for p in db_file.parent.glob(db_file.name + "*"))
    for value in (b"right-pass-9f3k", b"wrong-pass-77xq"):
        assert value not in raw
        assert value.decode() not in caplog.text
    assert not any("right-pass" in t for t in await outbox_texts(w))
    assert len(w.flows.vault) == 0


async def test_credentials_typed_on_another_clusters_bot_are_refused(world: World) -> None:
    """Typed credentials cannot travel: a form for cluster edge submitted to prod's bot is refused."""
    errors = world.flows.credential_form_errors(
        SecretDefaults(cluster="edge", namespace="shop"),
        secret="regcred",
        server="reg.example.com",
        username="u",
        password="p",
        image="reg.example.com/a:1",
    )
    assert "never leave" in errors["password"]


async def test_copy_and_link_secret(world: World) -> None:
    """recreate-secret --from copies after approval; link-secret adds the secret to the ServiceAccount."""
    w = world
    w.sim.put(o.docker_config_secret("regcred", "infra", {"reg.example.com": {"username": "u", "password": "p"}}))
    w.sim.put(o.service_account("default", "shop"))
    r1 = await w.flows.command(parse("recreate-secret shop/regcred --from infra/regcred"), Actor(REQUESTER), WHERE)
    r2 = await w.flows.command(parse("link-secret shop/default regcred"), Actor(REQUESTER), WHERE)
    assert r1.ok and r2.ok, (r1.text, r2.text)
    for p in await w.store.pending_proposals():  # copying out of infra needs a grant there too (issue 18)
        assert (await w.flows.approve(p.id or 0, Actor(ADMIN))).ok
    assert await w.flows.run_executor_once() == 2
    assert w.sim.get("Secret", "shop", "regcred") is not None
    sa = w.sim.get("ServiceAccount", "shop", "default")
    assert sa is not None and {"name": "regcred"} in sa["imagePullSecrets"]


async def test_snooze_needs_a_grant_and_is_audited(world: World) -> None:
    """A granted user snoozes for an hour; a stranger is refused and audited."""
    w = world
    incident = await store_incident(w, "web-abc")
    refused = await w.flows.button(ActionKind.SNOOZE, incident.key, Actor(STRANGER), WHERE)
    assert not refused.ok
    ok = await w.flows.button(ActionKind.SNOOZE, incident.key, Actor(SNOOZER), WHERE)
    assert ok.ok
    stored = await w.store.get_incident(incident.key)
    assert stored is not None and stored.snoozed_until is not None
    results = [(r.entry.actor_id, r.entry.result) for r in await w.store.list_audit()]
    assert results[0][0] == STRANGER and results[0][1].startswith("refused")
    assert results[1] == (SNOOZER, "ok")


async def test_diagnose_scan_and_rediagnose(world: World) -> None:
    """diagnose (pod and deploy forms) and scan read the cluster; re-diagnose posts in the thread."""
    w = world
    w.registry.add_image("team/web", "v8")
    pods = failing_deployment(w.sim, image=image(w))
    pod = pods[0]["metadata"]["name"]
    for text in (f"diagnose shop/{pod}", f"diagnose {pod} -n shop", "diagnose deploy/web -n shop"):
        reply = await w.flows.command(parse(text), Actor(REQUESTER), WHERE)
        assert reply.ok and "tag_not_found" in reply.text, (text, reply.text)
    scan = await w.flows.command(parse("scan shop"), Actor(REQUESTER), WHERE)
    assert "deployment/web" in scan.text and "1 pod" in scan.text
    missing = await w.flows.command(parse("diagnose shop/nope"), Actor(REQUESTER), WHERE)
    assert not missing.ok
    incident = await store_incident(w, pod, image=image(w))
    reply = await w.flows.button(ActionKind.REDIAGNOSE, incident.key, Actor(REQUESTER), WHERE)
    assert reply.ok
    kinds = {m.kind for m in await queries.pending_outbox(w.store) if m.incident_key == incident.key}
    assert kinds == {OutboxKind.REPLY, OutboxKind.UPDATE_PARENT}


async def test_fix_follow_up_rediagnoses_in_the_thread(world: World) -> None:
    """After an approved delete of an incident's pod, the result and a fresh diagnosis go into its thread."""
    w = world
    pods = failing_deployment(w.sim, image=image(w))
    pod = pods[0]["metadata"]["name"]
    incident = await store_incident(w, pod, image=image(w))
    reply = await w.flows.button(ActionKind.DELETE_POD, incident.key, Actor(REQUESTER), WHERE)
    assert reply.ok, reply.text
    (proposal,) = await w.store.pending_proposals()
    assert proposal.incident_key == incident.key
    await w.flows.approve(proposal.id or 0, Actor(ADMIN))
    await w.flows.run_executor_once()
    rows = [m for m in await queries.pending_outbox(w.store, limit=100) if m.incident_key == incident.key]
    dedups = [m.dedup_key for m in rows]
    assert any(d.endswith(":approval") for d in dedups) and any(d.endswith(":result") for d in dedups)
    assert any(":followup" in d for d in dedups)
    assert all(m.kind is not OutboxKind.POST_PARENT for m in rows)


def test_command_params_round_trip() -> None:
    """A forwarded command reads back as it was."""
    cmd = Command(Verb.RECREATE_SECRET, "shop", "regcred", source_namespace="infra", source_name="rc", cluster="edge")
    assert Command.from_params(cmd.to_params()) == cmd
    assert dataclasses.replace(cmd, incident="k").to_params()["cmd_incident"] == "k"
