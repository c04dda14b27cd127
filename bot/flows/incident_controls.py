"""Following an incident through: re-diagnose it now, snooze or mute it (audited, needs a grant)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import timedelta
from typing import Any

from kubernetes_asyncio import client as k8s

from bot.chatops.grammar import Verb, is_label, is_subdomain
from bot.chatops.port import Actor, Reply, notice, section
from bot.diagnoser import Diagnoser
from bot.flows.context import FlowContext, target_of
from bot.flows.reader import PodReader
from bot.incidents import IncidentBook
from bot.kube.podstate import pull_waits
from bot.model import ActionKind, Incident, IncidentScope, OutboxKind, OutboxMessage, PullFailure
from bot.slack.render import code, escape, format_time, render_diagnosis, render_parent

SNOOZE_FOR = timedelta(hours=1)


class IncidentFollowups:
    """Re-diagnosis, snooze and mute of a stored incident, answered in its thread."""

    def __init__(
        self, ctx: FlowContext, *, api: Any, reader: PodReader, diagnoser: Diagnoser, book: IncidentBook | None
    ) -> None:
        self.ctx = ctx
        self.api = api
        self.reader = reader
        self.diagnoser = diagnoser
        self.book = book
        self._core: Any = k8s.CoreV1Api(api)

    async def rediagnose(self, incident_key: str, actor: Actor) -> Reply:
        """Diagnose an incident again with a fresh probe; the result goes into its thread and the parent."""
        incident = await self.ctx.store.get_incident(incident_key)
        if incident is None:
            return notice("This incident is no longer known to the bot.", ok=False)
        posted = await self.post_rediagnosis(incident, tag=f"rediagnose:{uuid.uuid4().hex[:12]}", by=actor.name)
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

    async def post_rediagnosis(self, incident: Incident, *, tag: str, by: str = "") -> bool:
        """Post a fresh diagnosis (or "no pod fails now") in the incident's thread; True when one was posted."""
        failures = await self._current_failures(incident) if incident.scope is IncidentScope.WORKLOAD else []
        channel = incident.channel
        if not failures:
            text = (
                f":white_check_mark: Checked at {format_time(self.ctx.now())}: no pod of {code(str(incident.workload))}"
                f" in {code(incident.namespace)} is failing to pull {code(incident.image)} now; the thread resolves"
                " when the watcher sees the container start."
            )
            await self.ctx.enqueue(
                [
                    OutboxMessage(
                        OutboxKind.REPLY, incident.key, channel, text, (section(text),), f"{incident.key}:{tag}"
                    )
                ]
            )
            return False
        diagnosis = await self.diagnoser.diagnose(failures[0])
        body = render_diagnosis(incident, diagnosis)
        lead = section(f":arrows_counterclockwise: Re-diagnosed{f' for {escape(by)}' if by else ''}:")
        parent = render_parent(replace(incident, diagnosis=diagnosis))
        await self.ctx.enqueue(
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
        incident = await self.ctx.store.get_incident(incident_key)
        if incident is None:
            return notice("This incident is no longer known to the bot.", ok=False)
        action = ActionKind.SNOOZE if verb is Verb.SNOOZE else ActionKind.MUTE
        target = target_of(incident.cluster, incident.namespace, "incident", str(incident.workload))
        decision = await self.ctx.may_act(actor, incident.cluster, incident.namespace, action.value)
        if not decision.allowed:
            await self.ctx.audit(
                actor, f"incident.{action.value}", target, decision.reason, decision.params, incident_key=incident.key
            )
            return notice(f":no_entry: {escape(decision.reason)}.", ok=False)
        now = self.ctx.now()
        if action is ActionKind.SNOOZE:
            until = now + SNOOZE_FOR
            changed = replace(incident, snoozed_until=until)
            text = f":zzz: Snoozed until {format_time(until)} by {escape(actor.name)}."
        else:
            changed = replace(incident, muted=True)
            text = f":no_bell: Muted by {escape(actor.name)}: no more updates in this thread."
        dedup = f"{incident.key}:{action.value}:{int(now.timestamp())}"
        message = OutboxMessage(OutboxKind.REPLY, incident.key, incident.channel, text, (section(text),), dedup)
        stored = await self.ctx.store.save_incident(changed, (message,))
        if self.book is not None and stored.scope in (IncidentScope.WORKLOAD, IncidentScope.REGISTRY):
            self.book.adopt(stored)  # an "at risk" thread of the scan is no incident of the watcher's book
        self.ctx.wake_outbox()
        params = {"until": until.isoformat()} if action is ActionKind.SNOOZE else {}
        params.update(decision.params)
        await self.ctx.audit(actor, f"incident.{action.value}", target, "ok", params, incident_key=incident.key)
        return notice(text)


def first_pod(incident: Incident) -> tuple[str, str] | None:
    """(namespace, pod) of the incident's first failing pod."""
    for entry in incident.pods:
        ns, slash, pod = entry.rpartition("/")
        if is_subdomain(pod) and (not slash or is_label(ns)):
            return (ns if slash else incident.namespace), pod
    return None
