"""The `Flows` facade: one bot's flows composed from the activity modules of `bot.flows`, and the command dispatch."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException
from slack_sdk.web.async_client import AsyncWebClient

from bot.access import AccessPolicy
from bot.chatops.grammar import Command, Verb, help_text
from bot.chatops.port import Actor, Reply, SecretDefaults, Submitted, Where, notice
from bot.diagnoser import Diagnoser
from bot.flows.approvals import Approvals
from bot.flows.authority import ClusterAuthority
from bot.flows.context import FlowContext
from bot.flows.executor import Executor
from bot.flows.forms import SecretForms
from bot.flows.forwarding import Forwarding
from bot.flows.home import HomeTab
from bot.flows.incident_controls import IncidentFollowups, first_pod
from bot.flows.prevention import PreventionCommands
from bot.flows.proposals import Proposals
from bot.flows.queue import ProposalQueue
from bot.flows.reader import PodReader
from bot.flows.reads import ReadCommands
from bot.flows.users import UserDirectory
from bot.incidents import IncidentBook
from bot.kube.inspect import Inspector
from bot.kube.reviews import AccessReviewer
from bot.kube.writes import KubeActions
from bot.model import ActionKind
from bot.registry.probe import RegistryProber
from bot.settings import Settings
from bot.slack.render import escape
from bot.store.store import Store
from bot.vault import CredentialVault

log = logging.getLogger(__name__)


class Flows:
    """Every Slack-initiated flow of one bot (one cluster); see the `bot.flows` docstring."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        api: Any,
        prober: RegistryProber,
        slack: AsyncWebClient | None,
        identity: str,
        inspector: Inspector | None = None,
        book: IncidentBook | None = None,
        wake_outbox: Callable[[], None] = lambda: None,
        vault: CredentialVault | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.cluster = settings.kube.cluster_name
        self.store = store
        self.api = api
        self.prober = prober
        self.identity = identity
        self.inspector = inspector or Inspector.from_settings(api, settings.kube)
        self.kube = KubeActions(api)
        self.book = book
        self.users = UserDirectory(slack)
        self.policy = AccessPolicy(settings.access.grants, two_person_rule=settings.access.two_person_rule)
        self.vault = vault or CredentialVault(ttl_s=settings.access.proposal_ttl_s)
        self.queue = ProposalQueue(store)
        self.reviewer = AccessReviewer(api, timeout_s=settings.access.identity.review_timeout_s)
        self.authority = ClusterAuthority(
            settings.access, cluster=self.cluster, users=self.users, reviewer=self.reviewer
        )
        self.ctx = FlowContext(
            settings=settings,
            store=store,
            users=self.users,
            policy=self.policy,
            clock=clock,
            wake_outbox=wake_outbox,
            authority=self.authority,
        )
        self.reader = PodReader(api, self.inspector, self.cluster, clock)
        self.diagnoser = Diagnoser(self.inspector, prober, fresh=True)
        self.prevention = PreventionCommands(self.ctx, api=api, prober=prober)
        self.home_tab = HomeTab(self.ctx)
        self.reads = ReadCommands(self.ctx, api=api, identity=identity, reader=self.reader, diagnoser=self.diagnoser)
        self.followups = IncidentFollowups(self.ctx, api=api, reader=self.reader, diagnoser=self.diagnoser, book=book)
        self.proposals = Proposals(self.ctx, kube=self.kube, vault=self.vault)
        self.forms = SecretForms(
            self.ctx,
            identity=identity,
            inspector=self.inspector,
            prober=prober,
            kube=self.kube,
            proposals=self.proposals,
        )
        self.forwarding = Forwarding(self.ctx, run_local=self._run_local)
        self.executor = Executor(
            self.ctx,
            identity=identity,
            queue=self.queue,
            kube=self.kube,
            vault=self.vault,
            followups=self.followups,
            forwarding=self.forwarding,
            settle_s=settings.executor.settle_s,
            stale_run_s=settings.executor.stale_run_s,
            holder_grace_s=settings.executor.holder_grace_s,
        )
        self.approvals = Approvals(self.ctx, vault=self.vault, wake_executor=self.executor.wake)

    # ---- settings a test or the chaos harness changes on a built Flows ----

    @property
    def clock(self) -> Callable[[], datetime]:
        """The flows' clock (replaceable: every flow reads it through the shared context)."""
        return self.ctx.clock

    @clock.setter
    def clock(self, clock: Callable[[], datetime]) -> None:
        self.ctx.clock = clock

    @property
    def settle_s(self) -> float:
        """Seconds the executor waits after a fix before the follow-up diagnosis."""
        return self.executor.settle_s

    @settle_s.setter
    def settle_s(self, value: float) -> None:
        self.executor.settle_s = value

    @property
    def stale_run_s(self) -> float:
        """Seconds after which a claimed run that never finished is marked failed."""
        return self.executor.stale_run_s

    @stale_run_s.setter
    def stale_run_s(self, value: float) -> None:
        self.executor.stale_run_s = value

    # ---- entry point for typed commands and buttons ----

    async def command(self, cmd: Command, actor: Actor, where: Where) -> Reply:
        """Run a parsed command (typed, or made from a button) for `actor`; forward it when it names another cluster."""
        actor = await self.ctx.named(actor)
        cluster = cmd.cluster or self.cluster
        if cmd.verb is Verb.HELP:
            return notice("*/imagepull commands*\n```\n" + escape(help_text()) + "\n```")
        if cmd.verb is Verb.STATUS:
            return await self.reads.status()
        if cluster != self.cluster:
            return await self.forwarding.forward(cmd, cluster, actor, where)
        try:
            return await self._run_local(cmd, actor, where)
        except ApiException as exc:
            log.warning("command %s: API error %s", cmd.verb.value, exc.status)
            return notice(f":warning: The Kubernetes API refused the request (HTTP {exc.status}).", ok=False)

    async def _unwatched_read(self, cmd: Command, actor: Actor) -> Reply | None:
        """A refusal when `diagnose`/`scan` name a namespace the bot does not watch and the actor has no `read` grant
        for it (see bot.access); None when the read may go ahead."""
        ns = cmd.namespace
        if cmd.verb not in (Verb.DIAGNOSE, Verb.SCAN) or not ns:
            return None
        kube = self.settings.kube
        watched = ns not in kube.exclude_namespaces and (not kube.include_namespaces or ns in kube.include_namespaces)
        if watched:
            return None
        decision = await self.ctx.may_act(actor, self.cluster, ns, "read")
        if decision.allowed:
            return None
        await self.ctx.audit(
            actor, "command.refused", f"{self.cluster}/{ns}/namespace/{ns}", decision.reason, decision.params
        )
        needs = "a `read` grant there"
        if self.ctx.authority.cluster_decides and decision.params:
            needs = f"a Kubernetes identity that may list its pods ({escape(decision.reason)})"
        return notice(f":no_entry: The bot does not watch namespace {escape(ns)}; reading it needs {needs}.", ok=False)

    async def _run_local(self, cmd: Command, actor: Actor, where: Where) -> Reply:
        refused = await self._unwatched_read(cmd, actor)
        if refused is not None:
            return refused
        match cmd.verb:
            case Verb.DIAGNOSE:
                return await self.reads.diagnose(cmd)
            case Verb.REPORT:
                return await self.reads.report(cmd.name or "7d")
            case Verb.SCAN if cmd.deep:
                return await self.prevention.deep_scan(cmd.namespace)
            case Verb.SCAN:
                return await self.reads.scan(cmd.namespace)
            case Verb.DELETE_POD | Verb.LINK_SECRET | Verb.RECREATE_SECRET:
                return await self.proposals.propose(cmd, actor, where)
            case Verb.REDIAGNOSE:
                return await self.followups.rediagnose(cmd.incident or "", actor)
            case Verb.SNOOZE | Verb.MUTE:
                return await self.followups.quiet(cmd.incident or "", cmd.verb, actor)
        return notice("Unknown command.", ok=False)

    async def button(self, kind: ActionKind, incident_key: str, actor: Actor, where: Where) -> Reply:
        """A diagnosis button that needs no modal: re-diagnose, delete pod, snooze, mute."""
        incident = await self.store.get_incident(incident_key)
        if incident is None:
            await self.refuse_command(actor, f"{kind.value} button: unknown incident")
            return notice("This incident is no longer known to the bot.", ok=False)
        match kind:
            case ActionKind.REDIAGNOSE:
                cmd = Command(Verb.REDIAGNOSE, namespace=incident.namespace, incident=incident.key)
            case ActionKind.SNOOZE:
                cmd = Command(Verb.SNOOZE, namespace=incident.namespace, incident=incident.key)
            case ActionKind.MUTE:
                cmd = Command(Verb.MUTE, namespace=incident.namespace, incident=incident.key)
            case ActionKind.DELETE_POD:
                pod = first_pod(incident)
                if pod is None:
                    return notice("No pod of this incident is failing now: nothing to delete.", ok=False)
                cmd = Command(Verb.DELETE_POD, namespace=pod[0], name=pod[1], incident=incident.key)
            case _:
                return notice("This button opens a form.", ok=False)
        return await self.command(replace(cmd, cluster=incident.cluster), actor, where)

    async def first_delivery(self, key: str, ttl_s: float) -> bool:
        """Whether no replica handled this signed request or Socket Mode envelope yet (shared through SQL)."""
        return await self.store.first_delivery(key, ttl_s)

    async def refuse_command(self, actor: Actor, reason: str) -> None:
        """Audit a command the parser refused (the reason never holds the refused text)."""
        actor = await self.ctx.named(actor)
        await self.ctx.audit(actor, "command.refused", f"{self.cluster}/-/command/-", f"refused: {reason}"[:500])

    # ---- what the handlers call (bot.chatops.port.FlowsPort) and the runtime starts ----

    async def secret_defaults(self, incident_key: str | None, cmd: Command | None = None) -> SecretDefaults:
        """What to pre-fill in the recreate-secret / link-secret modals, from the incident and a quick inspection."""
        return await self.forms.secret_defaults(incident_key, cmd)

    def credential_form_errors(
        self, defaults: SecretDefaults, *, secret: str, server: str, username: str, password: str, image: str
    ) -> dict[str, str]:
        """Field errors of the typed-credentials form (block id -> message); empty when it may go ahead."""
        return self.forms.credential_form_errors(
            defaults, secret=secret, server=server, username=username, password=password, image=image
        )

    async def propose_credentials(
        self,
        defaults: SecretDefaults,
        *,
        secret: str,
        server: str,
        username: str,
        password: str,
        image: str,
        actor: Actor,
        where: Where,
    ) -> Submitted:
        """Typed credentials: probe the registry with them, dry-run the write, hold them in memory, propose."""
        return await self.forms.propose_credentials(
            defaults,
            secret=secret,
            server=server,
            username=username,
            password=password,
            image=image,
            actor=actor,
            where=where,
        )

    async def home(self, actor: Actor) -> dict[str, object]:
        """The App Home view for this user: open incidents, latent failures, proposals awaiting their approval."""
        return await self.home_tab.view(await self.ctx.named(actor))

    async def approve(self, proposal_id: int, actor: Actor) -> Reply:
        """Approve a pending proposal: access check, two-person rule, expiry, then a CAS; refusals are audited."""
        return await self.approvals.approve(proposal_id, actor)

    async def reject(self, proposal_id: int, actor: Actor) -> Reply:
        """Reject (or, for the requester, withdraw) a pending proposal; refusals are audited."""
        return await self.approvals.reject(proposal_id, actor)

    async def run_executor(self) -> None:
        """Claim and run this cluster's approved proposals and forwarded requests, forever (until cancelled)."""
        await self.executor.run(self.settings.executor.interval_s)

    async def run_executor_once(self) -> int:
        """One pass: expire old proposals, fail interrupted runs, claim and run approved ones. Returns how many ran."""
        return await self.executor.run_once()

    def start_executor(self) -> asyncio.Task[None]:
        """Start `run_executor` as a background task of the running loop and return it."""
        return self.executor.start()
