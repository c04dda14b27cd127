"""The "at risk" thread of each channel: opened, edited in place and closed as scans change their minds (pure).

One thread per route (channel) and cluster, stored as an incident of scope FINDINGS whose `posted_facts` are the keys
of the findings it shows, so the next scan can tell what is new and what was fixed, and whose `pods_seen` counts the
findings fixed before a pod failed (prevented; read by `bot.reporting`):
- findings and no open thread: a new parent;
- other findings than last time: the parent is edited in place, and a reply names what is new and what was fixed
  (no reply while the thread is snoozed or muted: its Snooze and Mute buttons need a grant on every namespace,
  `*:snooze` / `*:mute`, since the thread covers the whole cluster);
- no finding left: the parent says all is well, a reply says how many were fixed before any pod failed, and the
  thread is closed (the next finding opens a new one).
A finding whose workload already has an open incident is left out: the failure has happened, its thread tells it.
"Could not check" lines are shown but never open a thread by themselves.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from bot.incidents import route_channel
from bot.model import (
    ActionKind,
    Cause,
    Incident,
    IncidentScope,
    IncidentStatus,
    OutboxKind,
    OutboxMessage,
    WorkloadRef,
)
from bot.prevention.findings import Finding, Risk
from bot.prevention.render import MAX_BLOCKS, at_risk, finding_lines, sections
from bot.slack.render import action_block, code, escape

SCAN_WORKLOAD = WorkloadRef("LatentScan", "at-risk")


def is_findings_thread(incident: Incident) -> bool:
    return incident.scope is IncidentScope.FINDINGS


def _already_failing(incidents: Sequence[Incident]) -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    for i in incidents:
        if i.status is not IncidentStatus.OPEN or is_findings_thread(i):
            continue
        out.add((i.namespace, i.workload.name))
        for entry in i.affected:  # registry incidents: "ns/workload"
            ns, _, name = entry.partition("/")
            out.add((ns, name.split("/")[-1]))
    return out


def _workload_name(ref: str) -> str:
    return ref.split("/", 1)[-1]


def _digest(keys: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()[:12]


def plan_threads(
    *,
    cluster: str,
    findings: Sequence[Finding],
    open_incidents: Sequence[Incident],
    routes: Mapping[str, str],
    default_channel: str,
    now: datetime,
) -> list[tuple[Incident, tuple[OutboxMessage, ...]]]:
    """The incidents to store and the Slack writes to queue after a scan of `cluster`."""
    failing = _already_failing(open_incidents)
    current = {i.channel: i for i in open_incidents if is_findings_thread(i) and i.status is IncidentStatus.OPEN}
    by_channel: dict[str, list[Finding]] = defaultdict(list)
    became_incidents: set[str] = set()  # finding keys whose workload fails now: not prevented
    for f in findings:
        if (f.namespace, _workload_name(f.workload)) in failing:
            became_incidents.add(f.key)
            continue
        by_channel[route_channel(routes, default_channel, cluster, f.namespace)].append(f)
    changes: list[tuple[Incident, tuple[OutboxMessage, ...]]] = []
    for channel in sorted(set(by_channel) | set(current)):
        shown = by_channel.get(channel, [])
        verdicts = [f for f in shown if f.risk is not Risk.UNCHECKED]
        keys = tuple(sorted(f.key for f in verdicts))
        thread = current.get(channel)
        if thread is None:
            if verdicts:
                changes.append(_open(cluster, channel, shown, keys, now))
            continue
        if not verdicts:
            changes.append(_close(thread, now, became_incidents))
        elif keys != thread.posted_facts:
            changes.append(_update(thread, shown, keys, now, became_incidents))
    return changes


def _message(thread: Incident, findings: Sequence[Finding]) -> tuple[str, tuple[dict[str, object], ...]]:
    n = at_risk(findings)
    lead = f":rotating_light: *{n} workload(s) at risk* on {code(thread.cluster)}: their next pod would fail to pull."
    text = "\n".join([lead, *finding_lines(findings)])
    buttons = action_block(thread, (ActionKind.SNOOZE, ActionKind.MUTE))
    blocks = sections(text)[: MAX_BLOCKS - 1] + ((buttons,) if buttons else ())
    return f"{n} workload(s) at risk of an image pull failure on {thread.cluster}", blocks


def _open(
    cluster: str, channel: str, findings: Sequence[Finding], keys: tuple[str, ...], now: datetime
) -> tuple[Incident, tuple[OutboxMessage, ...]]:
    key = f"findings|{cluster}|{channel}|{now.strftime('%Y%m%dT%H%M%S')}"
    incident = Incident(
        key=key,
        cluster=cluster,
        namespace="*",
        workload=SCAN_WORKLOAD,
        container="",
        image="",
        registry="",
        cause=Cause.OTHER,
        scope=IncidentScope.FINDINGS,
        first_seen=now,
        last_seen=now,
        channel=channel,
        posted_facts=keys,
    )
    text, blocks = _message(incident, findings)
    parent = OutboxMessage(OutboxKind.POST_PARENT, key, channel, text, blocks, dedup_key=f"{key}:parent")
    return incident, (parent,)


def _update(
    thread: Incident, findings: Sequence[Finding], keys: tuple[str, ...], now: datetime, became: set[str]
) -> tuple[Incident, tuple[OutboxMessage, ...]]:
    text, blocks = _message(thread, findings)
    tag = _digest(keys)
    writes = [
        OutboxMessage(OutboxKind.UPDATE_PARENT, thread.key, thread.channel, text, blocks, f"{thread.key}:u:{tag}")
    ]
    quiet = thread.muted or (thread.snoozed_until is not None and thread.snoozed_until > now)
    if not quiet:
        before, after = set(thread.posted_facts), set(keys)
        new = sorted(after - before)
        fixed = sorted(before - after)
        lines = []
        if new:
            lines.append(f":heavy_plus_sign: {len(new)} new: " + ", ".join(_short(k) for k in new[:10]))
        if fixed:
            lines.append(f":white_check_mark: {len(fixed)} fixed: " + ", ".join(_short(k) for k in fixed[:10]))
        reply = "\n".join(lines)
        writes.append(
            OutboxMessage(
                OutboxKind.REPLY,
                thread.key,
                thread.channel,
                reply,
                (_section(reply),),
                f"{thread.key}:d:{tag}",
            )
        )
    prevented = len(set(thread.posted_facts) - set(keys) - became)
    return replace(thread, posted_facts=keys, last_seen=now, pods_seen=thread.pods_seen + prevented), tuple(writes)


def _close(thread: Incident, now: datetime, became: set[str]) -> tuple[Incident, tuple[OutboxMessage, ...]]:
    failed = len(set(thread.posted_facts) & became)
    fixed = len(thread.posted_facts) - failed
    text = f":white_check_mark: No workload at risk on {code(thread.cluster)} any more."
    reply = f":white_check_mark: {fixed} finding(s) fixed before a pod failed"
    reply += f"; {failed} became incident(s) with threads of their own." if failed else "."
    reply += " Closing this thread."
    block = _section(text)
    writes = (
        OutboxMessage(OutboxKind.UPDATE_PARENT, thread.key, thread.channel, text, (block,), f"{thread.key}:closed"),
        OutboxMessage(
            OutboxKind.REPLY,
            thread.key,
            thread.channel,
            reply,
            (_section(reply),),
            f"{thread.key}:closed-reply",
        ),
    )
    closed = replace(
        thread,
        status=IncidentStatus.RESOLVED,
        resolved_at=now,
        last_seen=now,
        posted_facts=(),
        pods_seen=thread.pods_seen + fixed,
    )
    return closed, writes


def _section(text: str) -> dict[str, object]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _short(key: str) -> str:
    """`risk ns/workload container` of a finding key, escaped."""
    risk, ns, workload, container, _image = (key.split("|") + [""] * 5)[:5]
    return escape(f"{risk} {ns}/{workload} {container}")
