"""Deciding on a proposal: approve (a compare-and-set in SQL, with the access check) or reject; refusals audited."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from bot.access import Decision
from bot.access_checks import proposal_checks
from bot.chatops.port import Actor, Reply, notice, section
from bot.flows.context import FlowContext, post_for
from bot.model import Proposal, ProposalStatus
from bot.slack.render import code, escape
from bot.store.store import proposal_target
from bot.vault import CredentialVault


class Approvals:
    """Approvals and rejections; they need only SQL, so any cluster's bot handles them."""

    def __init__(self, ctx: FlowContext, *, vault: CredentialVault, wake_executor: Callable[[], None]) -> None:
        self.ctx = ctx
        self.vault = vault
        self._wake_executor = wake_executor

    async def approve(self, proposal_id: int, actor: Actor) -> Reply:
        """Approve a pending proposal: access check, two-person rule, expiry, then a CAS; refusals are audited."""
        actor = await self.ctx.named(actor)
        proposal = await self.ctx.store.get_proposal(proposal_id)
        if proposal is None:
            return await self._unknown(actor, proposal_id, "approve")
        now = self.ctx.now()
        if proposal.status is ProposalStatus.PENDING and proposal.expires_at <= now:
            await self.ctx.store.transition_proposal(
                proposal_id,
                ProposalStatus.PENDING,
                ProposalStatus.EXPIRED,
                result="expired",
                audit=self.ctx.entry(actor, "proposal.expired", proposal, "expired"),
            )
            self.vault.drop(proposal_id)
            return notice(":hourglass: This proposal has expired; propose it again.", ok=False)
        authority = self.ctx.authority
        principals = (
            await self.ctx.users.principals(actor.id, self.ctx.policy.groups) if authority.grants_decide else set()
        )
        decision = self.ctx.policy.may_approve(actor.id, principals, proposal, now, grants=authority.grants_decide)
        if not decision.allowed:
            return await self._refuse_decision(actor, proposal, decision.reason, "approve")
        identity: dict[str, str] = {}
        review: dict[str, str] = {}
        if authority.cluster_decides:
            checks = proposal_checks(proposal.action, proposal.namespace, proposal.target, proposal.params)
            verdict = await authority.review(actor.id, proposal.cluster, checks)
            review = verdict.params
            if not verdict.allowed:
                return await self._refuse_decision(actor, proposal, verdict.reason, "approve", review)
            if verdict.identity is not None:
                # The executor runs the fix as this identity only: an approver whose mapping changed in between
                # (another email, another table entry) is not silently someone else.
                identity = {"approver_k8s_user": verdict.identity.user}
        approved = await self.ctx.store.transition_proposal(
            proposal_id,
            ProposalStatus.PENDING,
            ProposalStatus.APPROVED,
            decided_by=actor.id,
            now=now,
            audit=self.ctx.entry(actor, "proposal.approved", proposal, "approved", **review),
            params_update=identity or None,
        )
        if approved is None:
            await self._lost(actor, proposal, "approve")
            return notice("Someone decided on this proposal first; nothing more to do.", ok=False)
        runner = "this bot" if approved.cluster == self.ctx.cluster else f"the bot of cluster {code(approved.cluster)}"
        text = f":white_check_mark: Proposal #{proposal_id} approved by {escape(actor.name)}; {runner} runs it now."
        await self.ctx.enqueue([post_for(approved, "approved", text)])
        if approved.cluster == self.ctx.cluster:
            self._wake_executor()
        return Reply(text=text, blocks=(section(text),), replace_original=text)

    async def _may_reject(self, actor: Actor, proposal: Proposal) -> Decision:
        """The requester may withdraw; anyone else needs what approving needs (grants and/or the cluster)."""
        authority = self.ctx.authority
        if proposal.status is not ProposalStatus.PENDING or actor.id == proposal.requested_by:
            return self.ctx.policy.may_reject(actor.id, (), proposal)
        if authority.grants_decide:
            principals = await self.ctx.users.principals(actor.id, self.ctx.policy.groups)
            decision = self.ctx.policy.may_reject(actor.id, principals, proposal)
            if not decision.allowed or not authority.cluster_decides:
                return decision
        checks = proposal_checks(proposal.action, proposal.namespace, proposal.target, proposal.params)
        verdict = await authority.review(actor.id, proposal.cluster, checks)
        return verdict if not verdict.allowed else dataclasses.replace(verdict, reason="rejected")

    async def _unknown(self, actor: Actor, proposal_id: int, attempt: str) -> Reply:
        await self.ctx.audit(
            actor,
            "proposal.refused",
            f"{self.ctx.cluster}/-/proposal/{proposal_id}",
            "refused: no such proposal",
            {"attempt": attempt},
        )
        return notice("This proposal does not exist.", ok=False)

    async def _lost(self, actor: Actor, proposal: Proposal, attempt: str) -> None:
        """The losing side of a concurrent decision: audited like every refusal."""
        await self.ctx.audit(
            actor,
            "proposal.refused",
            proposal_target(proposal),
            "refused: someone decided on the proposal first",
            {"action": proposal.action.value, "attempt": attempt},
            proposal_id=proposal.id,
            incident_key=proposal.incident_key,
        )

    async def _refuse_decision(
        self, actor: Actor, proposal: Proposal, reason: str, attempt: str, review: dict[str, str] | None = None
    ) -> Reply:
        await self.ctx.audit(
            actor,
            "proposal.refused",
            proposal_target(proposal),
            reason,
            {"action": proposal.action.value, "attempt": attempt, **(review or {})},
            proposal_id=proposal.id,
            incident_key=proposal.incident_key,
        )
        return notice(f":no_entry: {escape(reason)}.", ok=False)

    async def reject(self, proposal_id: int, actor: Actor) -> Reply:
        """Reject (or, for the requester, withdraw) a pending proposal; refusals are audited."""
        actor = await self.ctx.named(actor)
        proposal = await self.ctx.store.get_proposal(proposal_id)
        if proposal is None:
            return await self._unknown(actor, proposal_id, "reject")
        decision = await self._may_reject(actor, proposal)
        if not decision.allowed:
            return await self._refuse_decision(actor, proposal, decision.reason, "reject", decision.params)
        rejected = await self.ctx.store.transition_proposal(
            proposal_id,
            ProposalStatus.PENDING,
            ProposalStatus.REJECTED,
            decided_by=actor.id,
            result=decision.reason,
            audit=self.ctx.entry(actor, "proposal.rejected", proposal, decision.reason, **decision.params),
        )
        if rejected is None:
            await self._lost(actor, proposal, "reject")
            return notice("Someone decided on this proposal first; nothing more to do.", ok=False)
        self.vault.drop(proposal_id)
        text = f":x: Proposal #{proposal_id} {escape(decision.reason)} ({escape(actor.name)}); nothing was changed."
        await self.ctx.enqueue([post_for(rejected, "rejected", text)])
        return Reply(text=text, blocks=(section(text),), replace_original=text)
