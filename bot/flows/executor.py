"""Running approved proposals: one executor per cluster, crash-safe, at most once (a claim is a compare-and-set)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from typing import Any

from bot.access import Decision
from bot.access_checks import proposal_checks
from bot.chatops.port import Actor
from bot.flows.context import FlowContext, post_for
from bot.flows.forwarding import REQUEST_KIND, Forwarding
from bot.flows.incident_controls import IncidentFollowups
from bot.flows.proposals import PINNED_KIND, describe
from bot.flows.queue import ProposalQueue
from bot.identity import KubeIdentity
from bot.kube.writes import ActionResult, KubeActions
from bot.model import ActionKind, IncidentStatus, Proposal, ProposalStatus
from bot.slack.render import escape, truncate
from bot.vault import CredentialVault

log = logging.getLogger(__name__)


class Executor:
    """Claims and runs this cluster's approved proposals and forwarded requests; see `bot.flows`."""

    def __init__(
        self,
        ctx: FlowContext,
        *,
        identity: str,
        queue: ProposalQueue,
        kube: KubeActions,
        vault: CredentialVault,
        followups: IncidentFollowups,
        forwarding: Forwarding,
        settle_s: float,
        stale_run_s: float,
        holder_grace_s: float,
    ) -> None:
        self.ctx = ctx
        self.identity = identity
        self.queue = queue
        self.kube = kube
        self.vault = vault
        self.followups = followups
        self.forwarding = forwarding
        self.settle_s = settle_s
        self.stale_run_s = stale_run_s
        self.holder_grace_s = holder_grace_s
        self._wake = asyncio.Event()
        self._background: set[asyncio.Task[Any]] = set()

    def wake(self) -> None:
        """Make a waiting `run` pass now (a proposal of this cluster was approved)."""
        self._wake.set()

    async def run(self, interval_s: float = 2.0) -> None:
        """Claim and run this cluster's approved proposals and forwarded requests, forever (until cancelled)."""
        while True:
            try:
                await self.run_once()
            except Exception:
                log.exception("executor pass failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=interval_s)
            self._wake.clear()

    async def run_once(self) -> int:
        """One pass: expire old proposals, fail interrupted runs, claim and run approved ones. Returns how many ran."""
        now = self.ctx.now()
        approved_ttl = timedelta(seconds=self.ctx.settings.access.approved_ttl_s)
        await self.ctx.store.expire_proposals(now, audit=True, approved_before=now - approved_ttl)
        self.vault.purge()
        await self._fail_interrupted()
        ran = 0
        for proposal_id in await self.queue.approved(self.ctx.cluster):
            proposal = await self.ctx.store.get_proposal(proposal_id)
            if proposal is None:
                continue
            holder = proposal.params.get("holder")
            if holder and holder != self.identity:
                decided = proposal.decided_at or proposal.created_at
                if self.ctx.now() - decided < timedelta(seconds=self.holder_grace_s):
                    continue  # the holding process should claim it
            if not await self.queue.claim(proposal_id, self.identity, decided_after=now - approved_ttl):
                continue
            ran += 1
            try:
                await self._execute(proposal)
            except Exception as exc:
                log.exception("proposal %s raised", proposal_id)
                await self._finish(proposal, ActionResult(False, f"error: {type(exc).__name__}", dry_run=False))
        return ran

    async def _fail_interrupted(self) -> None:
        before = self.ctx.now() - timedelta(seconds=self.stale_run_s)
        for proposal_id in await self.queue.stale_runs(self.ctx.cluster, before):
            proposal = await self.ctx.store.get_proposal(proposal_id)
            if proposal is None:
                continue
            result = "interrupted: the bot stopped while running it; outcome unknown, check and propose again"
            done = await self.ctx.store.transition_proposal(
                proposal_id,
                ProposalStatus.APPROVED,
                ProposalStatus.FAILED,
                result=result,
                audit=self.ctx.entry(Actor("bot", "imagepull-doctor"), "action.interrupted", proposal, result),
            )
            if done is not None:
                await self.ctx.enqueue([post_for(done, "interrupted", f":warning: Proposal #{proposal_id}: {result}.")])

    async def _execute(self, p: Proposal) -> None:
        if p.params.get("kind") == REQUEST_KIND:
            await self.forwarding.answer(p)
            return
        ns, name = p.namespace, p.target
        kube = self.kube
        as_who: dict[str, str] = {}
        if self.ctx.authority.cluster_decides:
            verdict = await self._review_approver(p)
            as_who = {**verdict.params, "executed_as": verdict.identity.user if verdict.identity else "-"}
            if not verdict.allowed:
                await self._finish(p, ActionResult(False, verdict.reason, dry_run=False), as_who)
                return
            kube = self.kube.acting_as(verdict.identity)
        changed = await self._changed_since_proposed(p)
        if changed is not None:
            result = ActionResult(False, changed, dry_run=False)
        elif p.action is ActionKind.DELETE_POD:
            result = await kube.delete_pod(
                ns, name, dry_run=False, uid=p.params.get("pin_uid") or p.params.get("uid") or None
            )
        elif p.action is ActionKind.LINK_SECRET:
            result = await kube.link_secret(ns, name, p.params.get("secret", ""), dry_run=False)
        elif p.action is ActionKind.RECREATE_SECRET and p.params.get("mode") == "copy":
            src_ns, _, src = p.params.get("from", "").partition("/")
            result = await kube.copy_secret(src_ns, src, ns, name, dry_run=False)
        elif p.action is ActionKind.RECREATE_SECRET and p.params.get("mode") == "credentials":
            held = self.vault.take(p.id or 0) if p.params.get("holder") == self.identity else None
            if held is None:
                result = ActionResult(
                    False,
                    "the typed credentials are no longer available (the bot that held them restarted or they"
                    " expired); nothing was changed, type them again",
                    dry_run=False,
                )
            else:
                result = await kube.upsert_pull_secret(
                    ns, name, held.server, held.username, held.password, dry_run=False
                )
        else:
            result = ActionResult(False, f"unknown action {p.action.value}", dry_run=False)
        await self._finish(p, result, as_who)
        if result.ok and p.incident_key:
            if self.settle_s > 0:
                await asyncio.sleep(self.settle_s)
            incident = await self.ctx.store.get_incident(p.incident_key)
            if incident is not None and incident.status is IncidentStatus.OPEN:
                by = "the fix"
                if p.action is ActionKind.LINK_SECRET:
                    # ServiceAccount pull secrets are copied into pods at creation: pods older than the link keep
                    # failing and say so; they are not evidence against the fix.
                    by = "the link, which reaches pods created from now on (older pods need recreating)"
                await self.followups.post_rediagnosis(incident, tag=f"proposal:{p.id}:followup", by=by)

    async def _review_approver(self, p: Proposal) -> Decision:
        """Whether the cluster, asked now, lets the approver's identity do the fix (access.mode kubernetes, both).

        The identity is resolved again (a group removed in Slack since the approval counts) and must be the one
        the approval was given as; the review is repeated because RBAC may have changed since (a RoleBinding
        removed between approval and execution stops the fix here, and the impersonated requests would be refused
        by the API server anyway)."""
        if not p.decided_by:
            return Decision(False, "refused: the proposal records no approver; nothing was changed")
        approved_as = p.params.get("approver_k8s_user")
        found = await self.ctx.authority.identity(p.decided_by)
        if isinstance(found, KubeIdentity) and approved_as and found.user != approved_as:
            return Decision(
                False,
                f"refused: the approver's Kubernetes identity changed since the approval (`{approved_as}`, now"
                f" `{found.user}`); nothing was changed, approve again",
                found,
                found.audit(),
            )
        checks = proposal_checks(p.action, p.namespace, p.target, p.params)
        verdict = await self.ctx.authority.review(p.decided_by, self.ctx.cluster, checks)
        if verdict.allowed:
            return verdict
        return Decision(False, f"{verdict.reason}; nothing was changed", verdict.identity, verdict.params)

    async def _changed_since_proposed(self, p: Proposal) -> str | None:
        """Why the target is no longer the object the proposal was made for, or None when it still is.

        A pod is pinned by uid (its resourceVersion moves with every status change); a Secret or ServiceAccount by
        uid and resourceVersion, so that an approval given for one state never overwrites another."""
        pinned_uid, pinned_rv = p.params.get("pin_uid"), p.params.get("pin_rv")
        kind = PINNED_KIND.get(p.action)
        if kind is None or not pinned_uid:
            return None  # proposed before pinning existed
        now = await self.kube.pin(kind, p.namespace, p.target)
        if not now:
            return None  # unreadable now: the action itself reports what the API server says
        same = now.get("pin_uid") == pinned_uid and (kind == "pod" or now.get("pin_rv") == pinned_rv)
        if same:
            return None
        return (
            f"{kind} {p.namespace}/{p.target} changed since the proposal (another object or another version now);"
            " nothing was changed, propose again"
        )

    async def _finish(self, p: Proposal, result: ActionResult, as_who: dict[str, str] | None = None) -> None:
        status = ProposalStatus.SUCCEEDED if result.ok else ProposalStatus.FAILED
        params: dict[str, str] = {"changed": "yes" if result.changed else "no", **(as_who or {})}
        if result.old_fingerprint or result.new_fingerprint:
            params["old_fingerprint"] = result.old_fingerprint or "none"
            params["new_fingerprint"] = result.new_fingerprint or "none"
        outcome = f"ok: {result.message}" if result.ok else f"error: {result.message}"
        entry = self.ctx.entry(
            Actor("bot", f"imagepull-doctor@{self.ctx.cluster}"),
            "action.executed" if result.ok else "action.failed",
            p,
            truncate(outcome, 500),
            **params,
        )
        done = await self.ctx.store.transition_proposal(
            p.id or 0, ProposalStatus.APPROVED, status, result=truncate(outcome, 500), audit=entry
        )
        if done is None:
            log.error("proposal %s changed state while it ran", p.id)
            return
        mark = ":white_check_mark:" if result.ok else ":x:"
        text = f"{mark} Proposal #{p.id} ({escape(describe(p))}): {escape(result.message)}"
        await self.ctx.enqueue([post_for(done, "result", text)])

    def start(self) -> asyncio.Task[None]:
        """Start `run` as a background task of the running loop and return it."""
        task = asyncio.create_task(self.run(), name=f"executor-{self.ctx.cluster}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task
