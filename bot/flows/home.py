"""The Slack App Home tab: this cluster's open incidents, the channels with workloads at risk, and the proposals that
wait for this user's approval (those the access policy would let them approve now)."""

from __future__ import annotations

from bot.chatops.port import Actor, Block
from bot.flows.context import FlowContext
from bot.model import IncidentScope, ProposalStatus
from bot.slack.render import code, escape, truncate

MAX_LINES = 15
MAX_BLOCKS = 100  # Slack's limit for a Home tab view


def _section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": truncate(text, 3000)}}


class HomeTab:
    def __init__(self, ctx: FlowContext) -> None:
        self.ctx = ctx

    async def view(self, actor: Actor) -> dict[str, object]:
        """The `home` view to publish for `actor`."""
        stored = await self.ctx.store.open_incidents(self.ctx.cluster)
        incidents = [i for i in stored if i.scope is not IncidentScope.FINDINGS]
        threads = [i for i in stored if i.scope is IncidentScope.FINDINGS]
        now = self.ctx.now()
        # With the cluster as the authority (access.mode kubernetes) the list is every pending proposal the rules
        # (expiry, two-person) leave: the cluster answers when the button is clicked.
        grants = self.ctx.authority.grants_decide
        principals = await self.ctx.users.principals(actor.id, self.ctx.policy.groups) if grants else set()
        mine = [
            p
            for p in await self.ctx.store.pending_proposals()
            if p.status is ProposalStatus.PENDING
            and p.expires_at > now
            and self.ctx.policy.may_approve(actor.id, principals, p, now, grants=grants).allowed
        ]
        blocks: list[Block] = [
            {"type": "header", "text": {"type": "plain_text", "text": f"imagepull-doctor · {self.ctx.cluster}"[:150]}}
        ]
        lines = [f"*Open incidents:* {len(incidents)}"]
        for inc in incidents[:MAX_LINES]:
            lines.append(
                f"• {code(inc.namespace)} {code(str(inc.workload))}: {code(inc.cause.value)} ({len(inc.pods)} pods)"
            )
        blocks.append(_section("\n".join(lines)))
        at_risk = sum(len(t.posted_facts) for t in threads)
        lines = [f"*Latent failures found by the last scan:* {at_risk}"]
        lines += [f"• {escape(t.channel)}: {len(t.posted_facts)}" for t in threads[:MAX_LINES]]
        blocks.append(_section("\n".join(lines)))
        lines = [f"*Proposals waiting for your approval:* {len(mine)}"]
        for p in mine[:MAX_LINES]:
            target = code(f"{p.namespace}/{p.target}")
            lines.append(f"• #{p.id} {code(p.action.value)} {target} by {escape(p.requested_by_name)}")
        blocks.append(_section("\n".join(lines)))
        return {"type": "home", "blocks": blocks[:MAX_BLOCKS]}
