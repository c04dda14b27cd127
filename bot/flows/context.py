"""What every flow shares: the store, the clock, the actor's name, audit rows and messages to the outbox."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from bot.access import AccessPolicy, Decision
from bot.access_checks import AccessCheck, checks_for_direct
from bot.chatops.port import Actor, Block, section
from bot.flows.authority import ClusterAuthority
from bot.flows.users import UserDirectory
from bot.model import AuditEntry, OutboxKind, OutboxMessage, Proposal
from bot.settings import Settings
from bot.store.store import Store, proposal_target


class FlowContext:
    """The adapters and the clock of one bot's flows, with the audit and outbox steps they all take."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        users: UserDirectory,
        policy: AccessPolicy,
        clock: Callable[[], datetime],
        wake_outbox: Callable[[], None],
        authority: ClusterAuthority | None = None,
    ) -> None:
        self.settings = settings
        self.cluster = settings.kube.cluster_name
        self.store = store
        self.users = users
        self.policy = policy
        self.authority = authority or ClusterAuthority(
            settings.access.model_copy(update={"mode": "grants"}), cluster=self.cluster, users=users, reviewer=None
        )
        self.clock = clock
        self.wake_outbox = wake_outbox

    def now(self) -> datetime:
        """The flows' current time."""
        return self.clock()

    async def named(self, actor: Actor) -> Actor:
        """The actor with their display name filled in."""
        return actor if actor.name else Actor(actor.id, await self.users.name(actor.id))

    async def audit(
        self,
        actor: Actor,
        action: str,
        target: str,
        result: str,
        params: dict[str, str] | None = None,
        *,
        proposal_id: int | None = None,
        incident_key: str | None = None,
    ) -> None:
        """Append one audit row."""
        await self.store.append_audit(
            AuditEntry(
                actor_id=actor.id,
                actor_name=actor.name or actor.id,
                action=action,
                target=target,
                params=params or {},
                result=result,
                at=self.now(),
                proposal_id=proposal_id,
                incident_key=incident_key,
            )
        )

    def entry(self, actor: Actor, action: str, p: Proposal, result: str, **params: str) -> AuditEntry:
        """The audit row of a step of proposal `p`."""
        return AuditEntry(
            actor_id=actor.id,
            actor_name=actor.name or actor.id,
            action=action,
            target=proposal_target(p),
            params={"action": p.action.value, **params},
            result=result,
            at=self.now(),
            proposal_id=p.id,
            incident_key=p.incident_key,
        )

    async def enqueue(self, messages: Sequence[OutboxMessage]) -> None:
        """Queue messages in the outbox and wake its worker when any is new."""
        if await self.store.enqueue(messages):
            self.wake_outbox()

    async def may_act(
        self, actor: Actor, cluster: str, namespace: str, action: str, checks: Sequence[AccessCheck] = ()
    ) -> Decision:
        """Whether the actor may do `action` in that namespace: granted (access.mode grants, both) and allowed by the
        cluster for `checks` (default: list pods there) to the actor's Kubernetes identity (kubernetes, both)."""
        if self.authority.grants_decide:
            principals = await self.users.principals(actor.id, self.policy.groups)
            decision = self.policy.may_act(principals, cluster, namespace, action)
            if not decision.allowed or not self.authority.cluster_decides:
                return decision
        return await self.authority.review(actor.id, cluster, checks or checks_for_direct(namespace))


def target_of(cluster: str, namespace: str, kind: str, name: str) -> str:
    """The audit target of an object: cluster/namespace/kind/name."""
    return f"{cluster}/{namespace}/{kind}/{name}"


def post_for(proposal: Proposal, tag: str, text: str, blocks: Sequence[Block] = ()) -> OutboxMessage:
    """A message about a proposal: a reply in its incident's thread, else a new message in its channel."""
    blocks = tuple(blocks) or (section(text),)
    dedup = f"proposal:{proposal.id}:{tag}"
    if proposal.incident_key and proposal.params.get("threaded") == "yes":
        return OutboxMessage(
            OutboxKind.REPLY, proposal.incident_key, proposal.params.get("channel", ""), text, blocks, dedup
        )
    return OutboxMessage(
        OutboxKind.POST_PARENT, f"proposal:{proposal.id}", proposal.params.get("channel", ""), text, blocks, dedup
    )
