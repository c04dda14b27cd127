"""What Slack can ask the bot to do: diagnose, scan, propose fixes, approve or reject them, execute them, follow up.

Handlers parse and answer; everything else is here. Adapters (store, Kubernetes API, registry prober, Slack Web
API for user names and groups) are passed in; `Flows.from_bot(bot)` takes them from the composition root.

Proposals and approvals
    A fix (delete pod, recreate pull secret, link secret) is first DRY-RUN on the API server (`dryRun=All`: RBAC
    refusals and bare pods show up before anyone is asked), then stored as a `Proposal` with a
    "proposal.created" audit row, and an approval message with Approve / Reject buttons goes to the incident's
    thread through the outbox (or, without an incident, to the channel the command came from). Approving is a
    compare-and-set PENDING -> APPROVED in SQL, so a double click or two replicas approve once. Anyone may propose;
    approving (or rejecting someone else's proposal) needs a grant (`bot.access`), and with the two-person rule
    the requester cannot approve. Every refusal is answered ephemerally AND written to the audit log.

Executing: one executor per cluster, crash-safe, at most once
    `Flows.run_executor()` runs in every replica of every cluster. It claims APPROVED proposals of ITS OWN cluster
    (`settings.kube.cluster_name`) with a second compare-and-set on the row (`result IS NULL` -> "running: <id>"),
    runs the action, and moves the proposal APPROVED -> SUCCEEDED / FAILED with an audit row. An approved proposal
    not yet claimed (the bot was down, or the approval was clicked on another cluster's bot) is picked up by the
    next poll; a claimed one whose run was interrupted by a crash is never run again: after `stale_run_s` it is
    marked FAILED "interrupted, outcome unknown" (the actions are idempotent, so a human may simply propose again).

Several clusters, one Slack app, one database
    Socket Mode hands each request to ONE connected bot of ANY cluster. A request that names another cluster
    (`--cluster`, or a button on another cluster's incident) is not lost: it is stored as a "forwarded request" (a
    proposal of kind `rediagnose` created already APPROVED, carrying the parsed command in its params, with a
    "request.forwarded" audit row). The user is told which cluster's bot will answer; that cluster's executor claims
    the row and runs the command there as the requester, answering through the outbox (an ephemeral for read
    commands; the usual approval message for fixes, whose dry run thus runs on the right cluster). Approvals and
    rejections need only SQL and are handled wherever they arrive.

Typed registry credentials (the "Recreate pull secret" modal)
    They are never stored in SQL, logs or Slack messages. The receiving bot probes the registry with them first
    (`fresh=True`) and refuses credentials the registry rejects (401/403), dry-runs the write, then keeps them in a
    short-lived in-memory `CredentialVault` keyed by proposal id; the proposal records only the server, the
    credential fingerprint and the identity of the holding process. Only that process claims the proposal after
    approval; if it is gone (restart), the proposal fails after `holder_grace_s` with "type them again". Because
    they cannot travel between processes, credentials typed on a bot of another cluster are refused at submission
    (submit again: Slack picks a bot at random in Socket Mode; or copy from an existing secret). The audit keeps
    fingerprints of the old and new credential, never values.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from kubernetes_asyncio import client as k8s
from kubernetes_asyncio.client.exceptions import ApiException
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import select, update

from bot import imageref
from bot.access import AccessPolicy, Decision
from bot.diagnosis.classify import classify
from bot.imageref import ImageRef
from bot.incidents import BookSettings, IncidentBook
from bot.kube.actions import ActionResult, KubeActions
from bot.kube.dockerconfig import fingerprint
from bot.kube.inspect import Inspector
from bot.kube.owners import owner_refs
from bot.kube.podstate import (
    controller_owner,
    deployment_name_guess,
    error_text,
    field_path_container,
    is_generic_backoff,
    is_pull_error_event,
    pull_waits,
)
from bot.model import (
    ActionKind,
    AuditEntry,
    Credentials,
    Diagnosis,
    Incident,
    IncidentScope,
    IncidentStatus,
    OutboxKind,
    OutboxMessage,
    ProbeOutcome,
    ProbeResult,
    Proposal,
    ProposalStatus,
    PullFailure,
    WorkloadRef,
)
from bot.pipeline import Pipeline
from bot.registry.probe import RegistryProber
from bot.settings import Settings
from bot.slack.render import (
    ACTION_PREFIX,
    code,
    escape,
    format_time,
    render_diagnosis,
    render_parent,
    truncate,
)
from bot.slack.render import SlackRenderer as _Renderer
from bot.store.models import PROPOSALS
from bot.store.store import Store, proposal_target
from bot.vault import CredentialVault, HeldCredentials
from handlers.contract import Actor, Block, Reply, SecretDefaults, Submitted, Where, notice, section
from handlers.parse import Command, Verb, help_text, is_host, is_label, is_subdomain

log = logging.getLogger(__name__)

RUNNING_PREFIX = "running: "
SNOOZE_FOR = timedelta(hours=1)
REQUEST_KIND = "request"  # params["kind"] of a forwarded request
_FIX_ACTIONS = {
    Verb.DELETE_POD: ActionKind.DELETE_POD,
    Verb.RECREATE_SECRET: ActionKind.RECREATE_SECRET,
    Verb.LINK_SECRET: ActionKind.LINK_SECRET,
}
_REJECTED_PROBE = frozenset({ProbeOutcome.UNAUTHORIZED, ProbeOutcome.FORBIDDEN})


class Diagnoser(Protocol):
    async def diagnose(self, failure: PullFailure) -> Diagnosis: ...


class _FreshProber:
    """The prober with its cache skipped: a re-diagnosis must see the registry as it is now."""

    def __init__(self, prober: RegistryProber) -> None:
        self._prober = prober

    async def probe(self, ref: ImageRef, credentials: Credentials | None, node_platform: str | None) -> ProbeResult:
        return await self._prober.probe(ref, credentials, node_platform, fresh=True)


# ---- Slack users and groups ----


class UserDirectory:
    """Display names (users.info) and user-group membership (usergroups.users.list), cached."""

    def __init__(
        self, client: AsyncWebClient | None, *, name_ttl_s: float = 3600.0, group_ttl_s: float = 300.0
    ) -> None:
        self._client = client
        self._name_ttl_s = name_ttl_s
        self._group_ttl_s = group_ttl_s
        self._names: dict[str, tuple[float, str]] = {}
        self._groups: dict[str, tuple[float, frozenset[str]]] = {}

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    async def name(self, user_id: str) -> str:
        """The user's display name, or their id when Slack cannot tell."""
        hit = self._names.get(user_id)
        if hit is not None and hit[0] > self._now():
            return hit[1]
        name = user_id
        if self._client is not None:
            try:
                info = (await self._client.users_info(user=user_id)).get("user") or {}
                profile = info.get("profile") or {}
                name = str(profile.get("display_name") or profile.get("real_name") or info.get("name") or user_id)
            except (SlackApiError, OSError, TimeoutError) as exc:
                log.warning("users.info failed: %s", type(exc).__name__)
        self._names[user_id] = (self._now() + self._name_ttl_s, name)
        return name

    async def members(self, group_id: str) -> frozenset[str]:
        """The user ids of a user group (empty when Slack refuses, e.g. a missing usergroups:read scope)."""
        hit = self._groups.get(group_id)
        if hit is not None and hit[0] > self._now():
            return hit[1]
        members: frozenset[str] = frozenset()
        if self._client is not None:
            try:
                answer = await self._client.api_call(
                    "usergroups.users.list", http_verb="GET", params={"usergroup": group_id}
                )
                members = frozenset(str(u) for u in answer.get("users") or [])
            except (SlackApiError, OSError, TimeoutError) as exc:
                log.warning("usergroups.users.list failed for %s: %s", group_id, type(exc).__name__)
        self._groups[group_id] = (self._now() + self._group_ttl_s, members)
        return members

    async def principals(self, user_id: str, groups: Sequence[str]) -> set[str]:
        """The user id plus every group of `groups` the user belongs to."""
        found = {user_id}
        for group in groups:
            if user_id in await self.members(group):
                found.add(group)
        return found


# ---- SQL the Store does not offer (yet): listing and claiming approved proposals ----


class ProposalQueue:
    """Approved proposals of one cluster and their claim (a compare-and-set on `result`), on the store's engine."""

    def __init__(self, store: Store) -> None:
        self._engine = store.engine

    async def approved(self, cluster: str) -> list[int]:
        """Ids of approved proposals of `cluster` nobody has claimed, oldest first."""
        stmt = (
            select(PROPOSALS.c.id)
            .where(
                PROPOSALS.c.cluster == cluster,
                PROPOSALS.c.status == ProposalStatus.APPROVED.value,
                PROPOSALS.c.result.is_(None),
            )
            .order_by(PROPOSALS.c.id)
            .limit(100)
        )
        async with self._engine.connect() as conn:
            return [int(r[0]) for r in (await conn.execute(stmt)).all()]

    async def claim(self, proposal_id: int, worker: str) -> bool:
        """Claim an approved proposal for `worker`; True for exactly one caller."""
        stmt = (
            update(PROPOSALS)
            .where(
                PROPOSALS.c.id == proposal_id,
                PROPOSALS.c.status == ProposalStatus.APPROVED.value,
                PROPOSALS.c.result.is_(None),
            )
            .values(result=f"{RUNNING_PREFIX}{worker}"[:200])
        )
        async with self._engine.begin() as conn:
            return bool((await conn.execute(stmt)).rowcount == 1)

    async def stale_runs(self, cluster: str, decided_before: datetime) -> list[int]:
        """Ids of claimed proposals of `cluster` still running although decided before `decided_before`."""
        stmt = select(PROPOSALS.c.id).where(
            PROPOSALS.c.cluster == cluster,
            PROPOSALS.c.status == ProposalStatus.APPROVED.value,
            PROPOSALS.c.result.like(f"{RUNNING_PREFIX}%"),
            PROPOSALS.c.decided_at < decided_before,
        )
        async with self._engine.connect() as conn:
            return [int(r[0]) for r in (await conn.execute(stmt)).all()]


class PodReader:
    """Reads pods as the watcher sees them: their pull failures, with the freshest error text and their workload."""

    def __init__(
        self, api: Any, inspector: Inspector, cluster: str, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.api = api
        self.inspector = inspector
        self.cluster = cluster
        self._clock = clock
        self._core: Any = k8s.CoreV1Api(api)
        self._apps: Any = k8s.AppsV1Api(api)

    def _now(self) -> datetime:
        return self._clock()

    async def pod_dict(self, namespace: str, pod: str) -> tuple[Any, dict[str, Any]] | None:
        try:
            obj = await self._core.read_namespaced_pod(pod, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return obj, self.api.sanitize_for_serialization(obj)

    async def _workload(self, namespace: str, pod_obj: Any, pod_name: str) -> WorkloadRef:
        chain = await self.inspector.owners.resolve(namespace, owner_refs(pod_obj.metadata))
        return chain[-1] if chain else WorkloadRef("Pod", pod_name)

    async def _freshest_message(self, namespace: str, pod: str, container: str, waiting: str) -> tuple[str, str | None]:
        """The runtime's error: the waiting message, or the latest Failed event when the message says only
        "Back-off pulling image"."""
        if not is_generic_backoff(waiting):
            return waiting, None
        try:
            events = await self._core.list_namespaced_event(
                namespace, field_selector=f"involvedObject.name={pod}", limit=200
            )
        except ApiException:
            return waiting, None
        best: tuple[str, str] | None = None
        for ev in events.items or ():
            where = field_path_container(getattr(ev.involved_object, "field_path", None))
            if where is not None and where[1] != container:
                continue
            if is_pull_error_event(ev.reason, ev.message):
                stamp = str(ev.last_timestamp or ev.event_time or ev.metadata.creation_timestamp or "")
                if best is None or stamp >= best[0]:
                    best = (stamp, str(ev.message))
        return (best[1], "Failed") if best else (waiting, None)

    async def failures_of_pod(self, namespace: str, pod: str) -> list[PullFailure]:
        """The pull failures of one pod as the watcher would report them (empty when none or no such pod)."""
        found = await self.pod_dict(namespace, pod)
        if found is None:
            return []
        obj, data = found
        waits = pull_waits(data)
        if not waits:
            return []
        workload = await self._workload(namespace, obj, pod)
        out = []
        for c in waits:
            message, event_reason = await self._freshest_message(namespace, pod, c.name, c.waiting_message)
            out.append(
                PullFailure(
                    cluster=self.cluster,
                    namespace=namespace,
                    pod=pod,
                    pod_uid=str(data.get("metadata", {}).get("uid", "")),
                    container=c.name,
                    container_kind=c.kind,
                    image=c.image,
                    waiting_reason=c.waiting_reason or "",
                    message=message,
                    workload=workload,
                    node=(data.get("spec") or {}).get("nodeName"),
                    event_reason=event_reason,
                    observed_at=self._now(),
                )
            )
        return out

    async def deployment_pods(self, namespace: str, name: str) -> list[str] | None:
        try:
            deploy = await self._apps.read_namespaced_deployment(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        labels = (deploy.spec.selector.match_labels or {}) if deploy.spec and deploy.spec.selector else {}
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        pods = await self._core.list_namespaced_pod(namespace, label_selector=selector or None)
        return [p.metadata.name for p in pods.items or ()]


# ---- the flows ----


class Flows:
    """Every Slack-initiated flow of one bot (one cluster); see the module docstring."""

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
        settle_s: float = 5.0,
        stale_run_s: float = 600.0,
        holder_grace_s: float = 120.0,
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
        self.clock = clock
        self.settle_s = settle_s
        self.stale_run_s = stale_run_s
        self.holder_grace_s = holder_grace_s
        self._wake_outbox = wake_outbox
        self._wake_executor = asyncio.Event()
        self._core: Any = k8s.CoreV1Api(api)
        self.reader = PodReader(api, self.inspector, self.cluster, clock)
        diagnosis_book = book or IncidentBook(
            BookSettings(cluster=self.cluster, default_channel=settings.slack.default_channel), _Renderer()
        )
        self.pipeline: Diagnoser = Pipeline(
            book=diagnosis_book, store=_NoStore(), inspector=self.inspector, prober=_FreshProber(prober)
        )
        self._background: set[asyncio.Task[Any]] = set()

    @classmethod
    def from_bot(cls, bot: Any) -> Flows:
        """The flows of a running `bot.app.Bot` (its store, API client, prober, inspector, book, Slack client)."""
        return cls(
            settings=bot.settings,
            store=bot.store,
            api=bot.api,
            prober=bot.prober,
            slack=bot.slack,
            identity=bot.identity,
            inspector=bot.inspector,
            book=bot.book,
            wake_outbox=bot.outbox_wake,
        )

    # ---- small helpers ----

    def _now(self) -> datetime:
        return self.clock()

    async def _actor(self, actor: Actor) -> Actor:
        return actor if actor.name else Actor(actor.id, await self.users.name(actor.id))

    async def _audit(
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
        await self.store.append_audit(
            AuditEntry(
                actor_id=actor.id,
                actor_name=actor.name or actor.id,
                action=action,
                target=target,
                params=params or {},
                result=result,
                at=self._now(),
                proposal_id=proposal_id,
                incident_key=incident_key,
            )
        )

    def _target(self, cluster: str, namespace: str, kind: str, name: str) -> str:
        return f"{cluster}/{namespace}/{kind}/{name}"

    async def _enqueue(self, messages: Sequence[OutboxMessage]) -> None:
        if await self.store.enqueue(messages):
            self._wake_outbox()

    def _post_for(self, proposal: Proposal, tag: str, text: str, blocks: Sequence[Block] = ()) -> OutboxMessage:
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

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ---- entry point for typed commands and buttons ----

    async def command(self, cmd: Command, actor: Actor, where: Where) -> Reply:
        """Run a parsed command (typed, or made from a button) for `actor`; forward it when it names another cluster."""
        actor = await self._actor(actor)
        cluster = cmd.cluster or self.cluster
        if cmd.verb is Verb.HELP:
            return notice("*/imagepull commands*\n```\n" + escape(help_text()) + "\n```")
        if cmd.verb is Verb.STATUS:
            return await self.status()
        if cluster != self.cluster:
            return await self.forward(cmd, cluster, actor, where)
        try:
            return await self._run_local(cmd, actor, where)
        except ApiException as exc:
            log.warning("command %s: API error %s", cmd.verb.value, exc.status)
            return notice(f":warning: The Kubernetes API refused the request (HTTP {exc.status}).", ok=False)

    async def _run_local(self, cmd: Command, actor: Actor, where: Where) -> Reply:
        match cmd.verb:
            case Verb.DIAGNOSE:
                return await self.diagnose(cmd)
            case Verb.SCAN:
                return await self.scan(cmd.namespace)
            case Verb.DELETE_POD | Verb.LINK_SECRET | Verb.RECREATE_SECRET:
                return await self.propose(cmd, actor, where)
            case Verb.REDIAGNOSE:
                return await self.rediagnose(cmd.incident or "", actor)
            case Verb.SNOOZE | Verb.MUTE:
                return await self.quiet(cmd.incident or "", cmd.verb, actor)
        return notice("Unknown command.", ok=False)

    # ---- forwarding to another cluster's bot ----

    async def forward(self, cmd: Command, cluster: str, actor: Actor, where: Where) -> Reply:
        """Store a request for another cluster's bot (its executor answers); tell the user who will answer."""
        if cmd.verb is Verb.RECREATE_SECRET and cmd.source_name is None:
            return notice(
                f":no_entry: Typed credentials cannot be forwarded to the bot of cluster {code(cluster)}: they never"
                " leave the process that receives them. Use `--from <namespace>/<secret>`, or try again (Slack"
                " hands each request to one connected bot).",
                ok=False,
            )
        now = self._now()
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
            expires_at=now + timedelta(seconds=self.settings.access.proposal_ttl_s),
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
            params={"command": cmd.verb.value, "from_cluster": self.cluster},
            result="forwarded",
            at=now,
            incident_key=cmd.incident,
        )
        stored = await self.store.create_proposal(proposal, audit=audit)
        return notice(
            f":outbox_tray: This request reached the bot of cluster {code(self.cluster)}; the bot of cluster"
            f" {code(cluster)} will answer (request #{stored.id})."
        )

    # ---- read flows ----

    async def status(self) -> Reply:
        """This bot's cluster, its open incidents and the proposals waiting for a decision."""
        incidents = await self.store.open_incidents(self.cluster)
        pending = await self.store.pending_proposals()
        by_cluster: dict[str, int] = {}
        for p in pending:
            by_cluster[p.cluster] = by_cluster.get(p.cluster, 0) + 1
        waiting = ", ".join(f"{code(c)}: {n}" for c, n in sorted(by_cluster.items())) or "none"
        rule = "on" if self.policy.two_person_rule else "off"
        lines = [
            f":satellite: Bot of cluster {code(self.cluster)} ({code(self.identity)}).",
            f"*Open incidents on this cluster:* {len(incidents)}",
            f"*Proposals waiting for approval:* {waiting}",
            f"*Two-person rule:* {rule} · *proposals expire after* {int(self.settings.access.proposal_ttl_s)}s",
        ]
        return notice("\n".join(lines))

    async def diagnose_failures(self, failures: Sequence[PullFailure]) -> list[tuple[PullFailure, Diagnosis]]:
        """Full diagnosis (fresh registry probe) of each failure."""
        return [(f, await self.pipeline.diagnose(f)) for f in failures]

    async def diagnose(self, cmd: Command) -> Reply:
        """`diagnose ns/pod` or `diagnose deploy/name -n ns`: the verified diagnosis of each failing container."""
        ns, name = cmd.namespace or "", cmd.name or ""
        if cmd.workload_kind == "Deployment":
            pods = await self.reader.deployment_pods(ns, name)
            if pods is None:
                return notice(f"Deployment {code(f'{ns}/{name}')} does not exist on {code(self.cluster)}.", ok=False)
            what = f"deployment {code(f'{ns}/{name}')}"
        else:
            pods, what = [name], f"pod {code(f'{ns}/{name}')}"
            if await self.reader.pod_dict(ns, name) is None:
                return notice(f"Pod {code(f'{ns}/{name}')} does not exist on {code(self.cluster)}.", ok=False)
        failures: list[PullFailure] = []
        for pod in pods[:20]:
            failures.extend(await self.reader.failures_of_pod(ns, pod))
        if not failures:
            return notice(f":white_check_mark: No container of {what} is waiting on an image pull.")
        unique: dict[tuple[str, str], PullFailure] = {}
        for f in failures:
            unique.setdefault((f.container, f.image), f)
        results = await self.diagnose_failures(list(unique.values())[:3])
        blocks: list[Block] = []
        texts: list[str] = []
        for failure, diagnosis in results:
            incident = await self._incident_for(failure)
            shown = incident or _synthetic_incident(failure)
            message = render_diagnosis(shown, diagnosis)
            body = [b for b in message.blocks if incident is not None or b.get("type") != "actions"]
            blocks.append(section(f"*{escape(failure.pod)}* · container {code(failure.container)}"))
            blocks.extend(body)
            texts.append(message.text)
        return Reply(text=truncate(" | ".join(texts), 3000), blocks=tuple(blocks[:50]))

    async def _incident_for(self, failure: PullFailure) -> Incident | None:
        for inc in await self.store.open_incidents(self.cluster):
            if (
                inc.namespace == failure.namespace
                and inc.workload == failure.workload
                and inc.container == failure.container
                and inc.image == failure.image
            ):
                return inc
        return None

    async def scan(self, namespace: str | None) -> Reply:
        """Every container waiting on an image pull now, grouped by namespace, workload, image and cause."""
        if namespace:
            pods = await self._core.list_namespaced_pod(namespace)
        else:
            pods = await self._core.list_pod_for_all_namespaces()
        excluded = set(self.settings.kube.exclude_namespaces) if not namespace else set()
        groups: dict[tuple[str, str, str, str], list[str]] = {}
        for obj in pods.items or ():
            data = self.api.sanitize_for_serialization(obj)
            meta = data.get("metadata") or {}
            ns = str(meta.get("namespace", ""))
            if ns in excluded:
                continue
            owner = controller_owner(data)
            workload = f"pod/{meta.get('name', '')}"
            if owner is not None:
                kind, oname = str(owner.get("kind", "")), str(owner.get("name", ""))
                guess = deployment_name_guess(oname, meta.get("labels") or {}) if kind == "ReplicaSet" else None
                workload = f"deployment/{guess}" if guess else f"{kind.lower()}/{oname}"
            for c in pull_waits(data):
                cause = classify(error_text(c.waiting_message), None, c.waiting_reason).cause.value
                groups.setdefault((ns, workload, c.image, cause), []).append(str(meta.get("name", "")))
        scope = f"namespace {code(namespace)}" if namespace else "all namespaces"
        if not groups:
            return notice(f":white_check_mark: No pull failures in {scope} on {code(self.cluster)}.")
        lines = [f":mag: *{len(groups)} pull failure group(s)* in {scope} on {code(self.cluster)}:"]
        for (ns, workload, image, cause), pods_of in sorted(groups.items())[:30]:
            n = len(pods_of)
            lines.append(
                f"• {code(ns)} {code(workload)} image {code(image)}: {code(cause)}, {n} pod{'s' if n != 1 else ''}"
            )
        if len(groups) > 30:
            lines.append(f"_…and {len(groups) - 30} more groups._")
        return notice("\n".join(lines))

    # ---- buttons on an incident ----

    async def incident(self, key: str) -> Incident | None:
        """The stored incident with this key."""
        return await self.store.get_incident(key)

    async def button(self, kind: ActionKind, incident_key: str, actor: Actor, where: Where) -> Reply:
        """A diagnosis button that needs no modal: re-diagnose, delete pod, snooze, mute."""
        incident = await self.store.get_incident(incident_key)
        if incident is None:
            return notice("This incident is no longer known to the bot.", ok=False)
        match kind:
            case ActionKind.REDIAGNOSE:
                cmd = Command(Verb.REDIAGNOSE, namespace=incident.namespace, incident=incident.key)
            case ActionKind.SNOOZE:
                cmd = Command(Verb.SNOOZE, namespace=incident.namespace, incident=incident.key)
            case ActionKind.MUTE:
                cmd = Command(Verb.MUTE, namespace=incident.namespace, incident=incident.key)
            case ActionKind.DELETE_POD:
                pod = _first_pod(incident)
                if pod is None:
                    return notice("No pod of this incident is failing now: nothing to delete.", ok=False)
                cmd = Command(Verb.DELETE_POD, namespace=pod[0], name=pod[1], incident=incident.key)
            case _:
                return notice("This button opens a form.", ok=False)
        return await self.command(replace(cmd, cluster=incident.cluster), actor, where)

    async def rediagnose(self, incident_key: str, actor: Actor) -> Reply:
        """Diagnose an incident again with a fresh probe; the result goes into its thread and the parent."""
        incident = await self.store.get_incident(incident_key)
        if incident is None:
            return notice("This incident is no longer known to the bot.", ok=False)
        posted = await self._post_rediagnosis(incident, tag=f"rediagnose:{uuid.uuid4().hex[:12]}", by=actor.name)
        return notice(
            ":stethoscope: Re-diagnosed; the result is in the thread."
            if posted
            else ":white_check_mark: No pod of this incident is failing to pull now."
        )

    async def _current_failures(self, incident: Incident) -> list[PullFailure]:
        """Failing pods of the incident's workload now (its known pods first, then the namespace's other pods)."""
        pods = await self._core.list_namespaced_pod(incident.namespace)
        out: list[PullFailure] = []
        for obj in pods.items or ():
            data = self.api.sanitize_for_serialization(obj)
            waits = [w for w in pull_waits(data) if w.name == incident.container and w.image == incident.image]
            if not waits:
                continue
            name = obj.metadata.name
            for failure in await self.reader.failures_of_pod(incident.namespace, name):
                if failure.workload == incident.workload and failure.container == incident.container:
                    out.append(failure)
            if len(out) >= 3:
                break
        return out

    async def _post_rediagnosis(self, incident: Incident, *, tag: str, by: str = "") -> bool:
        failures = await self._current_failures(incident) if incident.scope is IncidentScope.WORKLOAD else []
        channel = incident.channel
        if not failures:
            text = (
                f":white_check_mark: Checked at {format_time(self._now())}: no pod of {code(str(incident.workload))}"
                f" in {code(incident.namespace)} is failing to pull {code(incident.image)} now; the thread resolves"
                " when the watcher sees the container start."
            )
            await self._enqueue(
                [
                    OutboxMessage(
                        OutboxKind.REPLY, incident.key, channel, text, (section(text),), f"{incident.key}:{tag}"
                    )
                ]
            )
            return False
        (_failure, diagnosis), *_ = await self.diagnose_failures(failures[:1])
        body = render_diagnosis(incident, diagnosis)
        lead = section(f":arrows_counterclockwise: Re-diagnosed{f' for {escape(by)}' if by else ''}:")
        parent = render_parent(replace(incident, diagnosis=diagnosis))
        await self._enqueue(
            [
                OutboxMessage(
                    OutboxKind.REPLY,
                    incident.key,
                    channel,
                    f"Re-diagnosed: {body.text}",  # the notification line differs from the first diagnosis
                    (lead, *body.blocks)[:50],
                    f"{incident.key}:{tag}",
                ),
                OutboxMessage(
                    OutboxKind.UPDATE_PARENT,
                    incident.key,
                    channel,
                    parent.text,
                    parent.blocks,
                    f"{incident.key}:{tag}:p",
                ),
            ]
        )
        return True

    async def quiet(self, incident_key: str, verb: Verb, actor: Actor) -> Reply:
        """Snooze an incident for an hour, or mute it; needs a grant; audited."""
        incident = await self.store.get_incident(incident_key)
        if incident is None:
            return notice("This incident is no longer known to the bot.", ok=False)
        action = ActionKind.SNOOZE if verb is Verb.SNOOZE else ActionKind.MUTE
        target = self._target(incident.cluster, incident.namespace, "incident", str(incident.workload))
        decision = await self._may_act(actor, incident.cluster, incident.namespace, action.value)
        if not decision.allowed:
            await self._audit(actor, f"incident.{action.value}", target, decision.reason, incident_key=incident.key)
            return notice(f":no_entry: {escape(decision.reason)}.", ok=False)
        now = self._now()
        if action is ActionKind.SNOOZE:
            until = now + SNOOZE_FOR
            changed = replace(incident, snoozed_until=until)
            text = f":zzz: Snoozed until {format_time(until)} by {escape(actor.name)}."
        else:
            changed = replace(incident, muted=True)
            text = f":no_bell: Muted by {escape(actor.name)}: no more updates in this thread."
        dedup = f"{incident.key}:{action.value}:{int(now.timestamp())}"
        message = OutboxMessage(OutboxKind.REPLY, incident.key, incident.channel, text, (section(text),), dedup)
        stored = await self.store.save_incident(changed, (message,))
        if self.book is not None:
            self.book.adopt(stored)
        self._wake_outbox()
        params = {"until": until.isoformat()} if action is ActionKind.SNOOZE else {}
        await self._audit(actor, f"incident.{action.value}", target, "ok", params, incident_key=incident.key)
        return notice(text)

    async def _may_act(self, actor: Actor, cluster: str, namespace: str, action: str) -> Decision:
        principals = await self.users.principals(actor.id, self.policy.groups)
        return self.policy.may_act(principals, cluster, namespace, action)

    # ---- modal defaults ----

    async def secret_defaults(self, incident_key: str | None, cmd: Command | None = None) -> SecretDefaults:
        """What to pre-fill in the recreate-secret / link-secret modals, from the incident and a quick inspection."""
        if cmd is not None:
            return SecretDefaults(
                cluster=cmd.cluster or self.cluster,
                namespace=cmd.namespace or "",
                secret=cmd.name or "",
                server=cmd.server or "",
                incident=cmd.incident,
            )
        incident = await self.store.get_incident(incident_key) if incident_key else None
        if incident is None:
            return SecretDefaults(cluster=self.cluster, namespace="")
        defaults = SecretDefaults(
            cluster=incident.cluster,
            namespace=incident.namespace,
            server=incident.registry if incident.registry != "unknown" else "",
            image=incident.image,
            incident=incident.key,
        )
        pod = _first_pod(incident)
        if incident.cluster != self.cluster or pod is None:
            return defaults
        try:
            inspection, _ = await self.inspector.inspect(pod[0], pod[1], incident.image)
        except Exception as exc:  # pre-filling is a convenience: never fail the modal for it
            log.warning("inspection for modal defaults failed: %s", type(exc).__name__)
            return defaults
        secrets = inspection.secrets
        broken = next((x for x in secrets if not x.exists or not x.matches_image), None)
        chosen = broken or next((x for x in secrets if x.exists and x.matches_image), None)
        return replace(
            defaults,
            secret=chosen.name if chosen is not None else "",
            serviceaccount=inspection.service_account or "default",
        )

    # ---- proposals ----

    async def propose(self, cmd: Command, actor: Actor, where: Where) -> Reply:
        """A typed or clicked fix on this cluster: dry run, then a proposal and its approval message."""
        ns, name = cmd.namespace or "", cmd.name or ""
        action = _FIX_ACTIONS[cmd.verb]
        params: dict[str, str] = {}
        if cmd.verb is Verb.DELETE_POD:
            dry = await self.kube.delete_pod(ns, name, dry_run=True)
        elif cmd.verb is Verb.LINK_SECRET:
            secret = cmd.secret or ""
            params["secret"] = secret
            dry = await self.kube.link_secret(ns, name, secret, dry_run=True)
        else:
            if cmd.source_name is None or cmd.source_namespace is None:
                return notice("Recreating a secret from typed credentials opens a form.", ok=False)
            params.update({"mode": "copy", "from": f"{cmd.source_namespace}/{cmd.source_name}"})
            dry = await self.kube.copy_secret(cmd.source_namespace, cmd.source_name, ns, name, dry_run=True)
        return await self._create_proposal(action, ns, name, params, dry, actor, where, cmd.incident)

    async def _create_proposal(
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
    ) -> Reply:
        now = self._now()
        incident = await self.store.get_incident(incident_key) if incident_key else None
        if incident is None and action is ActionKind.DELETE_POD:
            incident = await self._incident_of_pod(namespace, name)
        threaded = incident is not None and bool(incident.channel)
        params = {
            **params,
            "channel": incident.channel if incident is not None and threaded else where.channel,
            "threaded": "yes" if threaded else "no",
            "dry_run": truncate(dry.message, 400),
        }
        proposal = Proposal(
            action=action,
            cluster=self.cluster,
            namespace=namespace,
            target=name,
            params=params,
            requested_by=actor.id,
            requested_by_name=actor.name,
            created_at=now,
            expires_at=now + timedelta(seconds=self.settings.access.proposal_ttl_s),
            incident_key=incident.key if incident is not None else None,
        )
        target = proposal_target(proposal)
        audit_params = {k: v for k, v in params.items() if k not in {"channel", "threaded"}}
        if not dry.ok:
            await self._audit(
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
        stored = await self.store.create_proposal(proposal, audit=audit)
        assert stored.id is not None
        if credentials is not None:
            self.vault.put(stored.id, credentials, ttl_s=self.settings.access.proposal_ttl_s)
        text, blocks = self._approval_message(stored)
        await self._enqueue([self._post_for(stored, "approval", text, blocks)])
        where_to = "in the incident's thread" if threaded else "in this channel"
        return notice(
            f":memo: Proposal #{stored.id} ({escape(_describe(stored))}) is waiting for approval {where_to}."
            f" Dry run: {escape(dry.message)}"
        )

    async def _incident_of_pod(self, namespace: str, pod: str) -> Incident | None:
        for inc in await self.store.open_incidents(self.cluster):
            if inc.namespace == namespace and (pod in inc.pods or f"{namespace}/{pod}" in inc.pods):
                return inc
        return None

    def _approval_message(self, p: Proposal) -> tuple[str, tuple[Block, ...]]:
        who = "someone granted " + code(f"{p.namespace}:{p.action.value}")
        if self.policy.two_person_rule:
            who += " other than the requester"
        lines = [
            f":hammer_and_wrench: *Proposal #{p.id}* by {escape(p.requested_by_name or p.requested_by)}:"
            f" {escape(_describe(p))} on {code(p.cluster)}.",
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

    def credential_form_errors(
        self, defaults: SecretDefaults, *, secret: str, server: str, username: str, password: str, image: str
    ) -> dict[str, str]:
        """Field errors of the typed-credentials form (block id -> message); empty when it may go ahead."""
        errors: dict[str, str] = {}
        if defaults.cluster != self.cluster:
            errors["password"] = (
                f"This form reached the bot of cluster {self.cluster}, but the secret is on {defaults.cluster}; typed"
                " credentials never leave the bot that receives them. Submit again (another bot may answer) or copy"
                " from an existing secret."
            )
            return errors
        host = _host(server)
        if not is_subdomain(secret):
            errors["secret"] = "A secret name: lowercase letters, digits, '-' and '.'."  # noqa: S105 (a field or verb name, not a password)
        if not is_host(host):
            errors["server"] = "A registry host, e.g. registry.example.com or registry.example.com:5000."
        if not username or ":" in username or len(username) > 1024:
            errors["username"] = "A user name without ':'."
        if not password or len(password) > 16384:
            errors["password"] = "The password or token."  # noqa: S105 (a field or verb name, not a password)
        ref = imageref.try_parse(image.strip() or defaults.image)
        if ref is None:
            errors["image"] = "An image on that registry to test the credentials with, e.g. registry.example.com/app:1."
        elif is_host(host) and imageref.registry_key(ref.registry) != imageref.registry_key(host):
            errors["image"] = "This image is on another registry than the server."
        return errors

    async def refuse_command(self, actor: Actor, reason: str) -> None:
        """Audit a command the parser refused (the reason never holds the refused text)."""
        actor = await self._actor(actor)
        await self._audit(actor, "command.refused", f"{self.cluster}/-/command/-", f"refused: {reason}"[:500])

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
        actor = await self._actor(actor)
        errors = self.credential_form_errors(
            defaults, secret=secret, server=server, username=username, password=password, image=image
        )
        host = _host(server)
        ref = imageref.try_parse(image.strip() or defaults.image)
        if errors or ref is None:
            return Submitted(errors=errors or {"image": "An image to test the credentials with."})
        ns = defaults.namespace
        new_fp = fingerprint(host, username, password)
        target = self._target(self.cluster, ns, "secret", secret)
        probe = await self.prober.probe(ref, Credentials(username, password, new_fp), None, fresh=True)
        audit_params = {
            "action": "recreate_secret",
            "server": host,
            "new_fingerprint": new_fp,
            "probe": probe.outcome.value,
        }
        if probe.outcome in _REJECTED_PROBE:
            status = probe.http_status or (401 if probe.outcome is ProbeOutcome.UNAUTHORIZED else 403)
            await self._audit(
                actor,
                "proposal.refused",
                target,
                f"refused: the registry rejected the credential ({status})",
                audit_params,
                incident_key=defaults.incident,
            )
            return Submitted(
                errors={"password": f"The registry {host} rejected these credentials ({status}); nothing was stored."}
            )
        dry = await self.kube.upsert_pull_secret(ns, secret, host, username, password, dry_run=True)
        params = {
            "mode": "credentials",
            "server": host,
            "new_fingerprint": new_fp,
            "old_fingerprint": dry.old_fingerprint or "none",
            "probe": probe.outcome.value,
            "holder": self.identity,
        }
        held = HeldCredentials(server=host, username=username, password=password, fingerprint=new_fp)
        reply = await self._create_proposal(
            ActionKind.RECREATE_SECRET, ns, secret, params, dry, actor, where, defaults.incident, held
        )
        return Submitted(reply=reply)

    async def propose_from_form(self, cmd: Command, actor: Actor, where: Where) -> Submitted:
        """A copy or link form: the same as the typed command (forwarded when it names another cluster)."""
        return Submitted(reply=await self.command(cmd, actor, where))

    # ---- approvals ----

    async def approve(self, proposal_id: int, actor: Actor) -> Reply:
        """Approve a pending proposal: access check, two-person rule, expiry, then a CAS; refusals are audited."""
        actor = await self._actor(actor)
        proposal = await self.store.get_proposal(proposal_id)
        if proposal is None:
            return notice("This proposal does not exist.", ok=False)
        now = self._now()
        if proposal.status is ProposalStatus.PENDING and proposal.expires_at <= now:
            await self.store.transition_proposal(
                proposal_id,
                ProposalStatus.PENDING,
                ProposalStatus.EXPIRED,
                result="expired",
                audit=self._entry(actor, "proposal.expired", proposal, "expired"),
            )
            self.vault.drop(proposal_id)
            return notice(":hourglass: This proposal has expired; propose it again.", ok=False)
        principals = await self.users.principals(actor.id, self.policy.groups)
        decision = self.policy.may_approve(actor.id, principals, proposal, now)
        if not decision.allowed:
            return await self._refuse_decision(actor, proposal, decision.reason, "approve")
        approved = await self.store.transition_proposal(
            proposal_id,
            ProposalStatus.PENDING,
            ProposalStatus.APPROVED,
            decided_by=actor.id,
            now=now,
            audit=self._entry(actor, "proposal.approved", proposal, "approved"),
        )
        if approved is None:
            return notice("Someone decided on this proposal first; nothing more to do.", ok=False)
        runner = "this bot" if approved.cluster == self.cluster else f"the bot of cluster {code(approved.cluster)}"
        text = f":white_check_mark: Proposal #{proposal_id} approved by {escape(actor.name)}; {runner} runs it now."
        await self._enqueue([self._post_for(approved, "approved", text)])
        if approved.cluster == self.cluster:
            self._wake_executor.set()
        return Reply(text=text, blocks=(section(text),), replace_original=text)

    async def _refuse_decision(self, actor: Actor, proposal: Proposal, reason: str, attempt: str) -> Reply:
        await self._audit(
            actor,
            "proposal.refused",
            proposal_target(proposal),
            reason,
            {"action": proposal.action.value, "attempt": attempt},
            proposal_id=proposal.id,
            incident_key=proposal.incident_key,
        )
        return notice(f":no_entry: {escape(reason)}.", ok=False)

    async def reject(self, proposal_id: int, actor: Actor) -> Reply:
        """Reject (or, for the requester, withdraw) a pending proposal; refusals are audited."""
        actor = await self._actor(actor)
        proposal = await self.store.get_proposal(proposal_id)
        if proposal is None:
            return notice("This proposal does not exist.", ok=False)
        principals = await self.users.principals(actor.id, self.policy.groups)
        decision = self.policy.may_reject(actor.id, principals, proposal)
        if not decision.allowed:
            return await self._refuse_decision(actor, proposal, decision.reason, "reject")
        rejected = await self.store.transition_proposal(
            proposal_id,
            ProposalStatus.PENDING,
            ProposalStatus.REJECTED,
            decided_by=actor.id,
            result=decision.reason,
            audit=self._entry(actor, "proposal.rejected", proposal, decision.reason),
        )
        if rejected is None:
            return notice("Someone decided on this proposal first; nothing more to do.", ok=False)
        self.vault.drop(proposal_id)
        text = f":x: Proposal #{proposal_id} {escape(decision.reason)} ({escape(actor.name)}); nothing was changed."
        await self._enqueue([self._post_for(rejected, "rejected", text)])
        return Reply(text=text, blocks=(section(text),), replace_original=text)

    def _entry(self, actor: Actor, action: str, p: Proposal, result: str, **params: str) -> AuditEntry:
        return AuditEntry(
            actor_id=actor.id,
            actor_name=actor.name or actor.id,
            action=action,
            target=proposal_target(p),
            params={"action": p.action.value, **params},
            result=result,
            at=self._now(),
            proposal_id=p.id,
            incident_key=p.incident_key,
        )

    # ---- the executor ----

    async def run_executor(self, interval_s: float = 2.0) -> None:
        """Claim and run this cluster's approved proposals and forwarded requests, forever (until cancelled)."""
        while True:
            try:
                await self.run_executor_once()
            except Exception:
                log.exception("executor pass failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_executor.wait(), timeout=interval_s)
            self._wake_executor.clear()

    async def run_executor_once(self) -> int:
        """One pass: expire old proposals, fail interrupted runs, claim and run approved ones. Returns how many ran."""
        await self.store.expire_proposals(self._now(), audit=True)
        self.vault.purge()
        await self._fail_interrupted()
        ran = 0
        for proposal_id in await self.queue.approved(self.cluster):
            proposal = await self.store.get_proposal(proposal_id)
            if proposal is None:
                continue
            holder = proposal.params.get("holder")
            if holder and holder != self.identity:
                decided = proposal.decided_at or proposal.created_at
                if self._now() - decided < timedelta(seconds=self.holder_grace_s):
                    continue  # the holding process should claim it
            if not await self.queue.claim(proposal_id, self.identity):
                continue
            ran += 1
            try:
                await self._execute(proposal)
            except Exception as exc:
                log.exception("proposal %s raised", proposal_id)
                await self._finish(proposal, ActionResult(False, f"error: {type(exc).__name__}", dry_run=False))
        return ran

    async def _fail_interrupted(self) -> None:
        before = self._now() - timedelta(seconds=self.stale_run_s)
        for proposal_id in await self.queue.stale_runs(self.cluster, before):
            proposal = await self.store.get_proposal(proposal_id)
            if proposal is None:
                continue
            result = "interrupted: the bot stopped while running it; outcome unknown, check and propose again"
            done = await self.store.transition_proposal(
                proposal_id,
                ProposalStatus.APPROVED,
                ProposalStatus.FAILED,
                result=result,
                audit=self._entry(Actor("bot", "imagepull-doctor"), "action.interrupted", proposal, result),
            )
            if done is not None:
                await self._enqueue(
                    [self._post_for(done, "interrupted", f":warning: Proposal #{proposal_id}: {result}.")]
                )

    async def _execute(self, p: Proposal) -> None:
        if p.params.get("kind") == REQUEST_KIND:
            await self._answer_request(p)
            return
        ns, name = p.namespace, p.target
        if p.action is ActionKind.DELETE_POD:
            result = await self.kube.delete_pod(ns, name, dry_run=False)
        elif p.action is ActionKind.LINK_SECRET:
            result = await self.kube.link_secret(ns, name, p.params.get("secret", ""), dry_run=False)
        elif p.action is ActionKind.RECREATE_SECRET and p.params.get("mode") == "copy":
            src_ns, _, src = p.params.get("from", "").partition("/")
            result = await self.kube.copy_secret(src_ns, src, ns, name, dry_run=False)
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
                result = await self.kube.upsert_pull_secret(
                    ns, name, held.server, held.username, held.password, dry_run=False
                )
        else:
            result = ActionResult(False, f"unknown action {p.action.value}", dry_run=False)
        await self._finish(p, result)
        if result.ok and p.incident_key:
            if self.settle_s > 0:
                await asyncio.sleep(self.settle_s)
            incident = await self.store.get_incident(p.incident_key)
            if incident is not None and incident.status is IncidentStatus.OPEN:
                await self._post_rediagnosis(incident, tag=f"proposal:{p.id}:followup", by="the fix")

    async def _finish(self, p: Proposal, result: ActionResult) -> None:
        status = ProposalStatus.SUCCEEDED if result.ok else ProposalStatus.FAILED
        params: dict[str, str] = {"changed": "yes" if result.changed else "no"}
        if result.old_fingerprint or result.new_fingerprint:
            params["old_fingerprint"] = result.old_fingerprint or "none"
            params["new_fingerprint"] = result.new_fingerprint or "none"
        outcome = f"ok: {result.message}" if result.ok else f"error: {result.message}"
        entry = self._entry(
            Actor("bot", f"imagepull-doctor@{self.cluster}"),
            "action.executed" if result.ok else "action.failed",
            p,
            truncate(outcome, 500),
            **params,
        )
        done = await self.store.transition_proposal(
            p.id or 0, ProposalStatus.APPROVED, status, result=truncate(outcome, 500), audit=entry
        )
        if done is None:
            log.error("proposal %s changed state while it ran", p.id)
            return
        mark = ":white_check_mark:" if result.ok else ":x:"
        text = f"{mark} Proposal #{p.id} ({escape(_describe(p))}): {escape(result.message)}"
        await self._enqueue([self._post_for(done, "result", text)])

    async def _answer_request(self, p: Proposal) -> None:
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
                reply = await self._run_local(replace(cmd, cluster=self.cluster), actor, where)
            except ApiException as exc:
                reply = notice(f":warning: The Kubernetes API refused the request (HTTP {exc.status}).", ok=False)
        lead = f"_Answer from the bot of cluster {code(self.cluster)} to request #{p.id}:_"
        message = OutboxMessage(
            OutboxKind.EPHEMERAL,
            f"request:{p.id}",
            where.channel,
            reply.text,
            (section(lead), *reply.blocks)[:50],
            f"request:{p.id}:answer",
            user=actor.id,
        )
        await self._enqueue([message])
        entry = self._entry(
            Actor("bot", f"imagepull-doctor@{self.cluster}"),
            "request.answered",
            p,
            "ok" if reply.ok else "refused",
            command=cmd.verb.value if cmd else "unreadable",
        )
        await self.store.transition_proposal(
            p.id or 0,
            ProposalStatus.APPROVED,
            ProposalStatus.SUCCEEDED if reply.ok else ProposalStatus.FAILED,
            result="answered" if reply.ok else "refused",
            audit=entry,
        )

    def start_executor(self) -> asyncio.Task[None]:
        """Start `run_executor` as a background task of the running loop and return it."""
        task = asyncio.create_task(self.run_executor(), name=f"executor-{self.cluster}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task


def _host(server: str) -> str:
    """A typed registry server as host[:port]: lowercased, scheme and trailing slash removed."""
    host = server.strip().lower()
    for prefix in ("https://", "http://"):
        host = host.removeprefix(prefix)
    return host.rstrip("/")


def _first_pod(incident: Incident) -> tuple[str, str] | None:
    """(namespace, pod) of the incident's first failing pod."""
    for entry in incident.pods:
        ns, slash, pod = entry.rpartition("/")
        if is_subdomain(pod) and (not slash or is_label(ns)):
            return (ns if slash else incident.namespace), pod
    return None


def _describe(p: Proposal) -> str:
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


def _synthetic_incident(failure: PullFailure) -> Incident:
    """An unsaved incident for rendering a command's diagnosis (its buttons are left out)."""
    ref = imageref.try_parse(failure.image)
    return Incident(
        key="adhoc",
        cluster=failure.cluster,
        namespace=failure.namespace,
        workload=failure.workload,
        container=failure.container,
        image=failure.image,
        registry=imageref.registry_key(ref.registry) if ref is not None else "unknown",
        cause=classify(failure.message).cause,
    )


async def diagnose_pod_once(settings: Settings, namespace: str, pod: str) -> list[tuple[PullFailure, Diagnosis]]:
    """The CLI's `diagnose NS/POD`: build the clients, diagnose each failing container of one pod, close them."""
    from bot.kube.client import load_api_client

    api = await load_api_client(settings.kube)
    prober = RegistryProber(settings.registry)
    try:
        inspector = Inspector.from_settings(api, settings.kube)
        pipeline = Pipeline(
            book=IncidentBook(
                BookSettings(cluster=settings.kube.cluster_name, default_channel=settings.slack.default_channel),
                _Renderer(),
            ),
            store=_NoStore(),
            inspector=inspector,
            prober=_FreshProber(prober),
        )
        reader = PodReader(api, inspector, settings.kube.cluster_name)
        if await reader.pod_dict(namespace, pod) is None:
            raise LookupError(f"pod {namespace}/{pod} not found")
        failures = await reader.failures_of_pod(namespace, pod)
        return [(f, await pipeline.diagnose(f)) for f in failures]
    finally:
        await prober.close()
        await api.close()


class _NoStore:
    """The pipeline's store port for one-off diagnoses, which never save."""

    async def save_incident(self, incident: Incident, outbox: Sequence[OutboxMessage] = ()) -> Incident:
        return incident

    async def get_incident(self, key: str) -> Incident | None:
        return None
