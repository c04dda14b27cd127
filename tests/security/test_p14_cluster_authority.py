"""Issue 15: approvals the cluster itself authorises, end to end through the real Bolt app over signed HTTP.

The bot runs as the Helm chart's ServiceAccount, rendered with `access.mode: kubernetes` and no write rights of its
own: it may only read, create SubjectAccessReviews and impersonate. The people are Slack users with profiles in the
fake Web API; their rights are RoleBindings in the simulated API server, which evaluates the reviews and the
impersonated requests with the same RBAC evaluator (testkit/kube/rbac.py). So a fix that runs at all ran as a person.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from bot.chatops.port import Actor
from bot.flows import Flows, SecretDefaults
from bot.identity import KubeIdentity, Unmapped
from bot.kube.client import load_api_client
from bot.model import ProposalStatus
from bot.registry.probe import RegistryProber
from bot.settings import AccessSettings, IdentitySettings, MappedIdentity, Settings
from bot.store.store import Store
from handlers.modals import recreate_secret_view
from testkit.kube import objects as o
from tests.deploy.test_chart import BASE, FULLNAME, NAMESPACE, manifests, merge_values, render_helm
from tests.handlers.conftest import (
    SlackEndpoint,
    World,
    action_body,
    command_body,
    eventually,
    eventually_async,
    failing_deployment,
    settings_for,
    signed_headers,
)
from tests.security.conftest import rebuild, serve_app, submission
from tests.store.queries import pending_outbox

pytestmark = pytest.mark.integration

ALICE, SAM, BOB, CAROL, DAVE, ROBOT = "U_ALICE", "U_SAM", "U_BOB", "U_CAROL", "U_DAVE", "U_ROBOT"
SRE = "S_SRE"
BOT_USER = f"system:serviceaccount:{NAMESPACE}:{FULLNAME}"


def _user(uid: str, email: str | None, *, confirmed: bool = True, **extra: Any) -> dict[str, Any]:
    """A users.info user object as Slack returns it (email only with users:read.email)."""
    profile: dict[str, Any] = {"display_name": uid.lower()[2:], "real_name": uid.title()}
    if email is not None:
        profile["email"] = email
    return {"id": uid, "name": uid.lower(), "is_email_confirmed": confirmed, "profile": profile, **extra}


def _human_rbac() -> list[dict[str, Any]]:
    """alice may delete pods in shop (a User binding); the group "sre" may too, and may manage pull secrets there;
    bob and everybody else have nothing (bob is granted everything in the bot's own grants)."""
    fixer = {
        "kind": "Role",
        "metadata": {"name": "pull-fixer", "namespace": "shop"},
        "rules": [
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "delete"]},
            {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["get", "patch"]},
        ],
    }
    return [
        fixer,
        _binding("alice-fixer", "User", "alice@example.com"),
        _binding("sre-fixer", "Group", "sre"),
    ]


def _binding(name: str, kind: str, subject: str) -> dict[str, Any]:
    return {
        "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": "shop"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pull-fixer"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": subject}],
    }


def chart_rbac(impersonation: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
    """The chart's RBAC with the cluster as the authority and no write rights of the bot's own."""
    values = merge_values(
        BASE,
        {
            "access": {"mode": "kubernetes", "impersonation": impersonation or {}},
            "actions": {"deletePod": False},
            "secrets": {"readClusterWide": True},
        },
    )
    kinds = ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")
    return [obj for obj in manifests(render_helm(values)) if obj["kind"] in kinds]


@dataclass
class Authority:
    """The world with the bot under the chart's RBAC, a mode, and the served Bolt app."""

    world: World
    endpoint: SlackEndpoint

    async def post(self, body: str) -> None:
        status, _ = await self.endpoint.post(body, signed_headers(body))
        assert status == 200

    async def propose_delete(self, user: str, pod: str) -> str:
        """`/imagepull delete-pod shop/<pod>` by `user`; returns the ephemeral answer."""
        before = len(self.world.slack.ephemerals)
        await self.post(command_body(f"delete-pod shop/{pod}", user=user))
        await eventually(lambda: len(self.world.slack.ephemerals) > before)
        return self.world.slack.ephemerals[-1].text

    async def click(self, action: str, proposal_id: int, user: str, forged: dict[str, Any] | None = None) -> str:
        """A button click by `user` (with `forged` extra fields in the button value); returns the answer."""
        before = len(self.world.slack.ephemerals) + len(self.world.slack.responses)
        value = json.dumps({"proposal": proposal_id, **(forged or {})})
        await self.post(action_body(f"imagepull:{action}", value, user))
        await eventually(lambda: len(self.world.slack.ephemerals) + len(self.world.slack.responses) > before)
        answers = [*self.world.slack.ephemerals, *self.world.slack.responses]
        return max(answers, key=lambda m: m.ts).text if answers else ""

    async def audit(self, action: str) -> list[dict[str, str]]:
        """The params (and result) of the audit rows with this action."""
        rows = await self.world.store.list_audit()
        return [{**r.entry.params, "result": r.entry.result} for r in rows if r.entry.action == action]


def authority_settings(w: World, mode: str, kubeconfig: Any, *, ttl_s: float = 0.0) -> Settings:
    settings = settings_for("prod", kubeconfig, w.registry_host)
    settings.access = AccessSettings(
        mode=mode,
        grants={BOB: ["*:*"], ALICE: ["*:*"], SAM: ["*:*"]},
        identity=IdentitySettings(
            email_template="{email}",
            groups={SRE: ["sre"]},
            users={ROBOT: MappedIdentity(user="robot-operator", groups=[])},
            ttl_s=ttl_s,
        ),
        proposal_ttl_s=600,
    )
    return settings


async def _authority(
    world: World, mode: str, tmp_path: Any, impersonation: dict[str, list[str]] | None = None
) -> AsyncIterator[Authority]:
    sim = world.sim
    sim.load_rbac(chart_rbac(impersonation) + _human_rbac())
    token = sim.service_account_token(NAMESPACE, FULLNAME)
    kubeconfig = sim.write_kubeconfig(tmp_path / "bot-kubeconfig", token=token)
    await rebuild(world, authority_settings(world, mode, kubeconfig))
    world.sim.put(o.namespace("shop"))
    world.slack.users.update(
        {
            ALICE: _user(ALICE, "Alice@Example.com"),
            SAM: _user(SAM, "sam@example.com"),
            BOB: _user(BOB, "bob@example.com"),
            CAROL: _user(CAROL, "carol@example.com", confirmed=False),
            DAVE: _user(DAVE, None),
        }
    )
    world.slack.groups[SRE] = [SAM]
    async with serve_app(world) as endpoint:
        yield Authority(world, endpoint)


@pytest.fixture
async def kubernetes_mode(world: World, tmp_path: Any) -> AsyncIterator[Authority]:
    async for a in _authority(world, "kubernetes", tmp_path):
        yield a


@pytest.fixture(params=["kubernetes", "both"])
async def cluster_mode(world: World, tmp_path: Any, request: pytest.FixtureRequest) -> AsyncIterator[Authority]:
    async for a in _authority(world, request.param, tmp_path):
        yield a


async def _proposal(a: Authority) -> int:
    pending = await a.world.store.pending_proposals()
    assert len(pending) == 1, pending
    return pending[0].id or 0


async def _approved_by_alice(a: Authority) -> tuple[str, int]:
    """A failing pod's deletion proposed and approved by alice; (pod name, proposal id)."""
    (pod,) = failing_deployment(a.world.sim)
    name = str(pod["metadata"]["name"])
    await a.propose_delete(ALICE, name)
    proposal_id = await _proposal(a)
    assert "approved" in await a.click("approve", proposal_id, ALICE)
    return name, proposal_id


async def test_an_allowed_approver_runs_the_fix_as_herself(kubernetes_mode: Authority) -> None:
    a, w = kubernetes_mode, kubernetes_mode.world
    (pod,) = failing_deployment(w.sim)
    name = pod["metadata"]["name"]
    answer = await a.propose_delete(SAM, name)  # sam's rights come from his Slack group "sre"
    assert "waiting for approval" in answer, answer
    proposal_id = await _proposal(a)
    answer = await a.click("approve", proposal_id, ALICE)
    assert "approved" in answer, answer
    assert await w.flows.run_executor_once() == 1
    assert w.sim.get("Pod", "shop", name) is None or w.sim.get("Pod", "shop", name)["metadata"].get("deletionTimestamp")
    deletes = [i for i in w.sim.impersonations if i.method == "DELETE" and "dryRun" not in i.path]
    assert [(i.by, i.user, i.groups) for i in deletes] == [(BOT_USER, "alice@example.com", ())]
    dry_runs = [i for i in w.sim.impersonations if "dryRun" in i.path]
    assert {(i.user, i.groups) for i in dry_runs} == {("sam@example.com", ("sre",))}
    created = await a.audit("proposal.created")
    assert created[0]["k8s_user"] == "sam@example.com" and created[0]["k8s_groups"] == "sre"
    approved = await a.audit("proposal.approved")
    assert approved[0]["k8s_user"] == "alice@example.com"
    assert 'RBAC: allowed by RoleBinding "alice-fixer/shop"' in approved[0]["review"]
    executed = await a.audit("action.executed")
    assert executed[0]["executed_as"] == "alice@example.com"
    stored = await w.store.get_proposal(proposal_id)
    assert stored is not None and stored.status is ProposalStatus.SUCCEEDED
    assert stored.params["approver_k8s_user"] == "alice@example.com"
    # The chart's RBAC for this mode was enough: nothing the bot itself asked for was refused.
    assert not [(attrs.verb, attrs.resource) for user, attrs, ok in w.sim.authorizations if user == BOT_USER and not ok]


async def test_a_slack_grant_without_cluster_rights_is_refused(cluster_mode: Authority) -> None:
    """bob holds `*:*` in the bot's grants, and nothing in the cluster: neither mode lets him approve."""
    a, w = cluster_mode, cluster_mode.world
    (pod,) = failing_deployment(w.sim)
    await a.propose_delete(ALICE, pod["metadata"]["name"])
    proposal_id = await _proposal(a)
    answer = await a.click("approve", proposal_id, BOB)
    assert f"`bob@example.com` may not delete pods `{pod['metadata']['name']}` in `shop`" in answer, answer
    stored = await w.store.get_proposal(proposal_id)
    assert stored is not None and stored.status is ProposalStatus.PENDING
    refused = await a.audit("proposal.refused")
    assert refused[-1]["k8s_user"] == "bob@example.com" and refused[-1]["review"].startswith("denied: delete pods")
    assert not [i for i in w.sim.impersonations if i.user == "bob@example.com"]  # nothing ran as bob
    answer = await a.propose_delete(BOB, pod["metadata"]["name"])  # nor may he propose
    assert "Not proposed" in answer and "`bob@example.com` may not delete pods" in answer


async def test_a_role_removed_between_approval_and_execution_stops_it(kubernetes_mode: Authority) -> None:
    a, w = kubernetes_mode, kubernetes_mode.world
    name, proposal_id = await _approved_by_alice(a)
    assert w.sim.rbac.unbind("alice-fixer", "shop") == 1
    await w.flows.run_executor_once()
    assert w.sim.get("Pod", "shop", name) is not None and not w.sim.get("Pod", "shop", name)["metadata"].get(
        "deletionTimestamp"
    )
    stored = await w.store.get_proposal(proposal_id)
    assert stored is not None and stored.status is ProposalStatus.FAILED
    assert "`alice@example.com` may not delete pods" in (stored.result or "")
    failed = await a.audit("action.failed")
    assert failed[0]["executed_as"] == "alice@example.com" and failed[0]["review"].startswith("denied")
    posts = await pending_outbox(w.store)
    assert any("may not delete pods" in m.text for m in posts)  # the thread is told why


async def test_the_api_server_refuses_what_the_review_was_not_asked_about(kubernetes_mode: Authority) -> None:
    """Defence in depth: even without the review (a binding removed after it), the impersonated request is 403."""
    a, w = kubernetes_mode, kubernetes_mode.world
    (pod,) = failing_deployment(w.sim)
    name = pod["metadata"]["name"]
    acting = w.flows.kube.acting_as(KubeIdentity("bob@example.com"))
    result = await acting.delete_pod("shop", name, dry_run=False)
    assert not result.ok and "`bob@example.com` may not get pods in namespace shop" in result.message
    assert w.sim.get("Pod", "shop", name) is not None
    assert a is kubernetes_mode


async def test_unmapped_users_can_read_but_not_act(kubernetes_mode: Authority) -> None:
    a, w = kubernetes_mode, kubernetes_mode.world
    (pod,) = failing_deployment(w.sim)
    name = pod["metadata"]["name"]
    for user, why in ((CAROL, "not confirmed"), (DAVE, "no email")):
        answer = await a.propose_delete(user, name)
        assert "no Kubernetes identity" in answer and why in answer, answer
    assert not await w.store.pending_proposals()
    refused = await a.audit("proposal.refused")
    assert [r["k8s_user"] for r in refused] == ["-", "-"]
    before = len(w.slack.ephemerals)
    await a.post(command_body("diagnose shop/web", user=DAVE))  # reading needs no identity
    await eventually(lambda: len(w.slack.ephemerals) > before)
    assert "no Kubernetes identity" not in w.slack.ephemerals[-1].text


async def test_a_user_removed_from_a_slack_group_loses_its_kubernetes_group(kubernetes_mode: Authority) -> None:
    a, w = kubernetes_mode, kubernetes_mode.world
    (pod,) = failing_deployment(w.sim)
    await a.propose_delete(SAM, pod["metadata"]["name"])
    proposal_id = await _proposal(a)
    w.slack.groups[SRE] = []  # removed from @sre between proposal and approval
    answer = await a.click("approve", proposal_id, SAM)
    assert "`sam@example.com` may not delete pods" in answer, answer
    refused = await a.audit("proposal.refused")
    assert refused[-1]["k8s_groups"] == "-"


async def test_a_review_without_answer_refuses(kubernetes_mode: Authority) -> None:
    a, w = kubernetes_mode, kubernetes_mode.world
    (pod,) = failing_deployment(w.sim)
    await a.propose_delete(ALICE, pod["metadata"]["name"])
    proposal_id = await _proposal(a)
    w.sim.faults.fail_next(count=5, status=503, path_prefix="/apis/authorization.k8s.io/")
    answer = await a.click("approve", proposal_id, ALICE)
    assert "did not answer the access review" in answer, answer
    stored = await w.store.get_proposal(proposal_id)
    assert stored is not None and stored.status is ProposalStatus.PENDING
    refused = await a.audit("proposal.refused")
    assert refused[-1]["review"].startswith("no answer")


async def test_a_forged_identity_in_the_payload_is_ignored(kubernetes_mode: Authority) -> None:
    """Only the signed request's `user.id` says who clicked; identity fields in the button value change nothing."""
    a, w = kubernetes_mode, kubernetes_mode.world
    (pod,) = failing_deployment(w.sim)
    await a.propose_delete(ALICE, pod["metadata"]["name"])
    proposal_id = await _proposal(a)
    forged = {"user": ALICE, "as": "alice@example.com", "k8s_user": "alice@example.com", "groups": ["sre"]}
    answer = await a.click("approve", proposal_id, BOB, forged)
    assert "`bob@example.com` may not" in answer, answer
    stored = await w.store.get_proposal(proposal_id)
    assert stored is not None and stored.status is ProposalStatus.PENDING
    body = action_body("imagepull:approve", json.dumps({"proposal": proposal_id}), ALICE)
    status, _ = await a.endpoint.post(body, signed_headers(body, secret="not-the-signing-secret"))
    assert status == 401  # a click "by alice" that Slack did not sign is no click at all
    assert (await w.store.get_proposal(proposal_id)).status is ProposalStatus.PENDING  # type: ignore[union-attr]


async def test_an_email_changed_since_the_approval_does_not_run(kubernetes_mode: Authority) -> None:
    a, w = kubernetes_mode, kubernetes_mode.world
    _, proposal_id = await _approved_by_alice(a)
    w.slack.users[ALICE] = _user(ALICE, "alice.other@example.com")
    await w.flows.run_executor_once()
    stored = await w.store.get_proposal(proposal_id)
    assert stored is not None and stored.status is ProposalStatus.FAILED
    assert "identity changed since the approval" in (stored.result or "")
    assert not [i for i in w.sim.impersonations if i.method == "DELETE" and "dryRun" not in i.path]


async def test_impersonation_the_chart_does_not_allow_is_refused(world: World, tmp_path: Any) -> None:
    """The chart scopes impersonation to alice: a review that allows sam (via @sre) is not enough, the API server
    refuses to let the bot act as him, and the thread says so."""
    async for a in _authority(world, "kubernetes", tmp_path, {"users": ["alice@example.com"], "groups": []}):
        w = a.world
        (pod,) = failing_deployment(w.sim)
        answer = await a.propose_delete(SAM, pod["metadata"]["name"])
        assert "Not proposed" in answer and "may not act as `sam@example.com`" in answer, answer
        refused = [(user, attrs.resource) for user, attrs, ok in w.sim.authorizations if not ok]
        assert (BOT_USER, "users") in refused
        w.sim.authorizations.clear()  # the refusal was the point; the world's own RBAC check is not about it


async def test_an_explicit_table_entry_wins_and_needs_no_profile(kubernetes_mode: Authority) -> None:
    a, w = kubernetes_mode, kubernetes_mode.world
    found = await w.flows.authority.identity(ROBOT)
    assert found == KubeIdentity("robot-operator", (), "table")
    assert not [c for c in w.slack.calls if c.method == "users.info" and c.payload.get("user") == ROBOT]
    assert a is kubernetes_mode


async def test_without_the_email_scope_nobody_maps_by_email(kubernetes_mode: Authority) -> None:
    """Slack leaves `profile.email` out without users:read.email: the answer says what is missing."""
    a, w = kubernetes_mode, kubernetes_mode.world
    w.slack.scopes.discard("users:read.email")
    found = await w.flows.authority.identity(ALICE)
    assert isinstance(found, Unmapped) and "users:read.email" in found.reason
    assert a is kubernetes_mode


@pytest.mark.parametrize(("mode", "allowed"), [("kubernetes", True), ("both", False)])
async def test_cluster_rights_without_a_grant(world: World, tmp_path: Any, mode: str, allowed: bool) -> None:
    """The robot account has cluster rights and no grant: enough in mode kubernetes, not in both."""
    async for a in _authority(world, mode, tmp_path):
        w = a.world
        w.sim.load_rbac([_binding("robot-fixer", "User", "robot-operator")])
        (pod,) = failing_deployment(w.sim)
        await a.propose_delete(ALICE, pod["metadata"]["name"])
        answer = await a.click("approve", await _proposal(a), ROBOT)
        assert ("approved" in answer) is allowed, answer
        if not allowed:
            assert "no grant for delete_pod" in answer


async def test_an_approval_on_another_clusters_bot_is_reviewed_by_the_clusters_own(
    kubernetes_mode: Authority, tmp_path: Any
) -> None:
    """The bot of cluster "edge" takes the click (shared database) but cannot ask cluster "prod": it records the
    approval as deferred, and prod's executor reviews the approver and runs the fix as her, or refuses it."""
    a, w = kubernetes_mode, kubernetes_mode.world
    edge_settings = authority_settings(w, "kubernetes", w.kubeconfig)
    edge_settings.kube.cluster_name = "edge"
    api = await load_api_client(edge_settings.kube)
    store = await Store.open(w.db_url)
    prober = RegistryProber(edge_settings.registry)
    w._closers += [prober.close, api.close, store.close]
    edge = Flows(settings=edge_settings, store=store, api=api, prober=prober, slack=w.client, identity="edge-1")
    pods = failing_deployment(w.sim, name="web") + failing_deployment(w.sim, name="api")
    for approver, pod in ((ALICE, pods[0]), (BOB, pods[1])):
        await a.propose_delete(ALICE, pod["metadata"]["name"])
        proposal_id = await _proposal(a)
        reply = await edge.approve(proposal_id, Actor(approver, approver))
        assert reply.ok, reply.text  # edge cannot review; prod will
        approved = await a.audit("proposal.approved")
        assert approved[-1]["review"].startswith("deferred: the bot of cluster prod reviews")
        await w.flows.run_executor_once()
        stored = await w.store.get_proposal(proposal_id)
        assert stored is not None
        if approver == ALICE:
            assert stored.status is ProposalStatus.SUCCEEDED, stored.result
        else:
            assert stored.status is ProposalStatus.FAILED and "`bob@example.com` may not delete pods" in (
                stored.result or ""
            )
    assert [i.user for i in w.sim.impersonations if i.method == "DELETE" and "dryRun" not in i.path] == [
        "alice@example.com"
    ]


async def test_typed_credentials_are_tested_only_for_who_the_cluster_lets_write_the_secret(
    kubernetes_mode: Authority,
) -> None:
    """The recreate-secret form: bob (no cluster rights) makes no registry request at all; sam (group sre, which may
    write pull secrets in shop) gets a proposal whose dry run ran as him."""
    a, w = kubernetes_mode, kubernetes_mode.world
    w.sim.load_rbac(
        [
            {
                "kind": "Role",
                "metadata": {"name": "secret-writer", "namespace": "shop"},
                "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "create", "patch"]}],
            },
            {
                "kind": "RoleBinding",
                "metadata": {"name": "sre-secrets", "namespace": "shop"},
                "roleRef": {"kind": "Role", "name": "secret-writer"},
                "subjects": [{"kind": "Group", "name": "sre"}],
            },
        ]
    )
    w.registry.add_image("team/web", "v9")
    w.registry.require_auth("team/*", "robot", "right-pass-9f3k")
    image = f"{w.registry_host}/team/web:v9"
    view = recreate_secret_view(SecretDefaults("prod", "shop", image=image), "C0ALERTS")
    typed = {"secret": "regcred", "source": "", "server": w.registry_host, "username": "robot", "image": image}
    typed["password"] = "right-pass-9f3k"
    body = submission(view, typed, BOB)
    status, _ = await a.endpoint.post(body, signed_headers(body))
    assert status == 200  # the modal closes; the refusal comes as an ephemeral message
    (refusal,) = await eventually(lambda: w.slack.ephemerals)
    assert "Only users the cluster allows to write this secret" in refusal.text, refusal.text
    assert "`bob@example.com` may not create secrets" in refusal.text
    assert not w.registry.requests  # no probe for someone who may not write the secret
    body = submission(view, typed, SAM)
    await a.endpoint.post(body, signed_headers(body))
    (proposal,) = await eventually_async(w.store.pending_proposals)
    assert proposal.params["mode"] == "credentials"
    assert {(i.user, i.groups) for i in w.sim.impersonations if "dryRun" in i.path} == {("sam@example.com", ("sre",))}
    created = await a.audit("proposal.created")
    assert created[-1]["k8s_user"] == "sam@example.com"


async def test_a_name_and_an_identity_cost_one_users_info_call(kubernetes_mode: Authority) -> None:
    """users.info (Tier 4) is asked once for a user's display name and Kubernetes identity together (within the
    identity's lifetime; these tests otherwise use 0 s to see every change at once)."""
    a, w = kubernetes_mode, kubernetes_mode.world
    w.flows.authority.ttl_s = 60.0
    (pod,) = failing_deployment(w.sim)
    await a.propose_delete(ALICE, pod["metadata"]["name"])
    asked = [c for c in w.slack.calls if c.method == "users.info" and c.payload.get("user") == ALICE]
    assert len(asked) == 1, asked
