"""Proposing a fix: a dry run on the API server, then a pending proposal and its approval message."""

from __future__ import annotations

from datetime import timedelta

from bot.access import Decision
from bot.access_checks import AccessCheck, checks_for
from bot.chatops.grammar import Command, Verb
from bot.chatops.port import Actor, Block, Reply, Where, notice, section
from bot.flows.context import FlowContext, post_for, target_of
from bot.incidents import route_channel
from bot.kube.writes import ActionResult, KubeActions
from bot.model import ActionKind, AuditEntry, Incident, Proposal
from bot.slack.render import ACTION_PREFIX, code, escape, format_time, truncate
from bot.store.store import proposal_target
from bot.vault import CredentialVault, HeldCredentials

_FIX_ACTIONS = {
    Verb.DELETE_POD: ActionKind.DELETE_POD,
    Verb.RECREATE_SECRET: ActionKind.RECREATE_SECRET,
    Verb.LINK_SECRET: ActionKind.LINK_SECRET,
}


# The kind of object each fix changes: its uid and resourceVersion are recorded with the proposal ("pin_uid",
# "pin_rv") and must still be the same when it runs (bot.flows.executor), so that an approval never acts on another
# object of the same name, nor on one that changed since.
PINNED_KIND = {
    ActionKind.DELETE_POD: "pod",
    ActionKind.LINK_SECRET: "serviceaccount",
    ActionKind.RECREATE_SECRET: "secret",
}


class Proposals:
    """Fixes proposed on this bot's cluster, dry-run first and stored pending with their approval message."""

    def __init__(self, ctx: FlowContext, *, kube: KubeActions, vault: CredentialVault) -> None:
        self.ctx = ctx
        self.kube = kube
        self.vault = vault

    async def propose(self, cmd: Command, actor: Actor, where: Where) -> Reply:
        """A typed or clicked fix on this cluster: dry run, then a proposal and its approval message."""
        ns, name = cmd.namespace or "", cmd.name or ""
        action = _FIX_ACTIONS[cmd.verb]
        params: dict[str, str] = {}
        if cmd.verb is Verb.LINK_SECRET:
            params["secret"] = cmd.secret or ""
        elif cmd.verb is Verb.RECREATE_SECRET:
            if cmd.source_name is None or cmd.source_namespace is None:
                return notice("Recreating a secret from typed credentials opens a form.", ok=False)
            params.update({"mode": "copy", "from": f"{cmd.source_namespace}/{cmd.source_name}"})
        # With the cluster as the authority, the requester's identity is reviewed before anything is read or dry-run
        # for them (a dry-run copy as the bot would tell them whether a secret they may not read exists).
        decision = await self.authorise(actor, action, ns, name, params)
        if not decision.allowed:
            await self.ctx.audit(
                await self.ctx.named(actor),
                "proposal.refused",
                target_of(self.ctx.cluster, ns, PINNED_KIND[action], name or "-"),
                decision.reason,
                {"action": action.value, **params, **decision.params},
                incident_key=cmd.incident,
            )
            return notice(f":no_entry: Not proposed: {escape(decision.reason)}.", ok=False)
        kube = self.kube.acting_as(decision.identity)
        if cmd.verb is Verb.DELETE_POD:
            dry = await kube.delete_pod(ns, name, dry_run=True)
            if dry.target_uid:
                params["uid"] = dry.target_uid  # approval deletes this pod, never a later one of the same name
        elif cmd.verb is Verb.LINK_SECRET:
            dry = await kube.link_secret(ns, name, params["secret"], dry_run=True)
        else:
            src_ns, src = cmd.source_namespace or "", cmd.source_name or ""
            dry = await kube.copy_secret(src_ns, src, ns, name, dry_run=True)
        return await self.create(action, ns, name, params, dry, actor, where, cmd.incident, authorised=decision)

    async def authorise(
        self, actor: Actor, action: ActionKind, namespace: str, name: str, params: dict[str, str]
    ) -> Decision:
        """Whether the cluster lets the requester's identity make this fix (access.mode kubernetes, both); in mode
        grants anyone may propose (approving needs the grant)."""
        if not self.ctx.authority.cluster_decides:
            return Decision(True, "anyone may propose")
        checks = await self.checks(action, namespace, name, params)
        return await self.ctx.authority.review(actor.id, self.ctx.cluster, checks)

    async def checks(
        self, action: ActionKind, namespace: str, name: str, params: dict[str, str]
    ) -> tuple[AccessCheck, ...]:
        """The access checks of a fix on this cluster (a secret's write is a patch when it exists, else a create)."""
        exists = True
        if action is ActionKind.RECREATE_SECRET:
            exists = (await self.kube.pin("secret", namespace, name)).get("pin_uid", "absent") != "absent"
        return checks_for(action, namespace, name, params, target_exists=exists)

    async def create(
        self,
        action: ActionKind,
        namespace: str,
        name: str,
        params: dict[str, str],
        dry: ActionResult,
        actor: Actor,
        where: Where,
        incident_key: str | None,
        credentials: HeldCredentials | None = None,
        *,
        authorised: Decision | None = None,
    ) -> Reply:
        """Store the proposal and queue its approval message if the dry run passed; else audit the refusal."""
        now = self.ctx.now()
        incident = await self.ctx.store.get_incident(incident_key) if incident_key else None
        if incident is None and action is ActionKind.DELETE_POD:
            incident = await self._incident_of_pod(namespace, name)
        threaded = incident is not None and bool(incident.channel)
        # Without a thread, the approval message goes where this namespace's incidents go: the request may come
        # from a direct message or a channel the bot is not in, where Slack refuses the bot's posts.
        slack = self.ctx.settings.slack
        routed = route_channel(slack.routes, slack.default_channel, self.ctx.cluster, namespace)
        params = {
            **params,
            **await self.kube.pin(PINNED_KIND[action], namespace, name),
            "channel": incident.channel if incident is not None and threaded else routed,
            "threaded": "yes" if threaded else "no",
            "dry_run": truncate(dry.message, 400),
        }
        proposal = Proposal(
            action=action,
            cluster=self.ctx.cluster,
            namespace=namespace,
            target=name,
            params=params,
            requested_by=actor.id,
            requested_by_name=actor.name,
            created_at=now,
            expires_at=now + timedelta(seconds=self.ctx.settings.access.proposal_ttl_s),
            incident_key=incident.key if incident is not None else None,
        )
        target = proposal_target(proposal)
        audit_params = {k: v for k, v in params.items() if k not in {"channel", "threaded"}}
        if authorised is not None:
            audit_params.update(authorised.params)
        if not dry.ok:
            await self.ctx.audit(
                actor,
                "proposal.refused",
                target,
                f"refused: {dry.message}",
                {"action": action.value, **audit_params},
                incident_key=proposal.incident_key,
            )
            return notice(f":no_entry: Not proposed: {escape(dry.message)}", ok=False)
        audit = AuditEntry(
            actor_id=actor.id,
            actor_name=actor.name,
            action="proposal.created",
            target=target,
            params={"action": action.value, **audit_params},
            result="pending",
            at=now,
            incident_key=proposal.incident_key,
        )
        stored = await self.ctx.store.create_proposal(proposal, audit=audit)
        assert stored.id is not None
        if credentials is not None:
            self.vault.put(stored.id, credentials, ttl_s=self.ctx.settings.access.proposal_ttl_s)
        text, blocks = self._approval_message(stored)
        await self.ctx.enqueue([post_for(stored, "approval", text, blocks)])
        where_to = "in the incident's thread" if threaded else f"in {_mention(routed)}"
        return notice(
            f":memo: Proposal #{stored.id} ({escape(describe(stored))}) is waiting for approval {where_to}."
            f" Dry run: {escape(dry.message)}"
        )

    async def _incident_of_pod(self, namespace: str, pod: str) -> Incident | None:
        for inc in await self.ctx.store.open_incidents(self.ctx.cluster):
            if inc.namespace == namespace and (pod in inc.pods or f"{namespace}/{pod}" in inc.pods):
                return inc
        return None

    def _approval_message(self, p: Proposal) -> tuple[str, tuple[Block, ...]]:
        who = "someone granted " + code(f"{p.namespace}:{p.action.value}")
        if self.ctx.authority.mode == "kubernetes":
            who = "someone the cluster's RBAC allows to do it (it runs as them)"
        elif self.ctx.authority.mode == "both":
            who += " whom the cluster's RBAC also allows (it runs as them)"
        if self.ctx.policy.two_person_rule:
            who += " other than the requester"
        lines = [
            f":hammer_and_wrench: *Proposal #{p.id}* by {escape(p.requested_by_name or p.requested_by)}:"
            f" {escape(describe(p))} on {code(p.cluster)}.",
            f"*Dry run:* {escape(p.params.get('dry_run', ''))}",
        ]
        if p.params.get("mode") == "credentials":
            lines.append(
                f"*New credential:* {code(p.params.get('new_fingerprint', ''))} for {code(p.params.get('server', ''))}"
                f" (registry check: {escape(p.params.get('probe', 'not run'))}); the values are held in memory only."
            )
        lines.append(f"Needs approval by {who}; expires {format_time(p.expires_at)}.")
        value = f'{{"proposal":{p.id}}}'
        actions: Block = {
            "type": "actions",
            "block_id": f"imagepull_proposal_{p.id}",
            "elements": [
                {
                    "type": "button",
                    "action_id": f"{ACTION_PREFIX}approve",
                    "text": {"type": "plain_text", "text": "Approve"},
                    "style": "primary",
                    "value": value,
                },
                {
                    "type": "button",
                    "action_id": f"{ACTION_PREFIX}reject",
                    "text": {"type": "plain_text", "text": "Reject"},
                    "style": "danger",
                    "value": value,
                },
            ],
        }
        text = "\n".join(lines)
        return text.replace("*", ""), (section(text), actions)


def describe(p: Proposal) -> str:
    """A proposal in words, e.g. "delete pod ns/pod"."""
    match p.action:
        case ActionKind.DELETE_POD:
            return f"delete pod {p.namespace}/{p.target}"
        case ActionKind.LINK_SECRET:
            return f"add pull secret {p.params.get('secret', '')} to serviceaccount {p.namespace}/{p.target}"
        case ActionKind.RECREATE_SECRET if p.params.get("mode") == "copy":
            return f"copy secret {p.params.get('from', '')} to {p.namespace}/{p.target}"
        case ActionKind.RECREATE_SECRET:
            return f"write the credential for {p.params.get('server', '')} into pull secret {p.namespace}/{p.target}"
    return f"{p.action.value} {p.namespace}/{p.target}"


def _mention(channel: str) -> str:
    """A channel as Slack links it: `<#C123>` for an ID, the name otherwise."""
    return f"<#{channel}>" if channel[:1] in ("C", "G") and channel[1:].isalnum() and channel.isupper() else channel
