"""Requests for another cluster's bot: stored as an approved `rediagnose` proposal, run by that cluster's executor."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import timedelta

from kubernetes_asyncio.client.exceptions import ApiException

from bot.chatops.grammar import Command, Verb
from bot.chatops.port import Actor, Reply, Where, notice, section
from bot.flows.context import FlowContext
from bot.model import ActionKind, AuditEntry, OutboxKind, OutboxMessage, Proposal, ProposalStatus
from bot.slack.render import code
from bot.store.store import proposal_target

REQUEST_KIND = "request"  # params["kind"] of a forwarded request

RunLocal = Callable[[Command, Actor, Where], Awaitable[Reply]]


class Forwarding:
    """Forwarded requests: stored here for another cluster, answered here when they name this cluster."""

    def __init__(self, ctx: FlowContext, *, run_local: RunLocal) -> None:
        self.ctx = ctx
        self._run_local = run_local

    async def forward(self, cmd: Command, cluster: str, actor: Actor, where: Where) -> Reply:
        """Store a request for another cluster's bot (its executor answers); tell the user who will answer."""
        if cmd.verb is Verb.RECREATE_SECRET and cmd.source_name is None:
            return notice(
                f":no_entry: Typed credentials cannot be forwarded to the bot of cluster {code(cluster)}: they never"
                " leave the process that receives them. Use `--from <namespace>/<secret>`, or try again (Slack"
                " hands each request to one connected bot).",
                ok=False,
            )
        now = self.ctx.now()
        params = {
            **cmd.to_params(),
            "kind": REQUEST_KIND,
            "channel": where.channel,
            "user": actor.id,
        }
        if where.thread_ts:
            params["thread_ts"] = where.thread_ts
        proposal = Proposal(
            action=ActionKind.REDIAGNOSE,
            cluster=cluster,
            namespace=cmd.namespace or "*",
            target=cmd.name or cmd.incident or "*",
            params=params,
            requested_by=actor.id,
            requested_by_name=actor.name,
            created_at=now,
            expires_at=now + timedelta(seconds=self.ctx.settings.access.proposal_ttl_s),
            incident_key=cmd.incident,
            status=ProposalStatus.APPROVED,
            decided_by=actor.id,
            decided_at=now,
        )
        audit = AuditEntry(
            actor_id=actor.id,
            actor_name=actor.name,
            action="request.forwarded",
            target=proposal_target(proposal),
            params={"command": cmd.verb.value, "from_cluster": self.ctx.cluster},
            result="forwarded",
            at=now,
            incident_key=cmd.incident,
        )
        stored = await self.ctx.store.create_proposal(proposal, audit=audit)
        return notice(
            f":outbox_tray: This request reached the bot of cluster {code(self.ctx.cluster)}; the bot of cluster"
            f" {code(cluster)} will answer (request #{stored.id})."
        )

    async def answer(self, p: Proposal) -> None:
        """Run a request forwarded by another cluster's bot as its requester; answer through the outbox."""
        try:
            cmd = Command.from_params(p.params)
        except (ValueError, TypeError):
            cmd = None
        actor = Actor(p.requested_by, p.requested_by_name)
        where = Where(p.params.get("channel", ""), p.params.get("thread_ts"))
        if cmd is None:
            reply = notice("The forwarded request could not be read.", ok=False)
        else:
            try:
                reply = await self._run_local(replace(cmd, cluster=self.ctx.cluster), actor, where)
            except ApiException as exc:
                reply = notice(f":warning: The Kubernetes API refused the request (HTTP {exc.status}).", ok=False)
        lead = f"_Answer from the bot of cluster {code(self.ctx.cluster)} to request #{p.id}:_"
        message = OutboxMessage(
            OutboxKind.EPHEMERAL,
            f"request:{p.id}",
            where.channel,
            reply.text,
            (section(lead), *reply.blocks)[:50],
            f"request:{p.id}:answer",
            user=actor.id,
        )
        await self.ctx.enqueue([message])
        entry = self.ctx.entry(
            Actor("bot", f"imagepull-doctor@{self.ctx.cluster}"),
            "request.answered",
            p,
            "ok" if reply.ok else "refused",
            command=cmd.verb.value if cmd else "unreadable",
        )
        await self.ctx.store.transition_proposal(
            p.id or 0,
            ProposalStatus.APPROVED,
            ProposalStatus.SUCCEEDED if reply.ok else ProposalStatus.FAILED,
            result="answered" if reply.ok else "refused",
            audit=entry,
        )
