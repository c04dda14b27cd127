"""Incident grouping and lifecycle: open -> updated -> resolved (-> reopened). Pure: no I/O, no clock.

`IncidentBook` turns watcher observations (with their diagnosis) into `Change`s: the incident's new state plus the
Slack writes it needs, which the caller stores in one transaction (the outbox sends them later). Rules:

- one incident per (cluster, namespace, workload, container, image, cause): more pods of it update the parent
  (throttled by `tick`) and add a reply only for a new fact, never one per event;
- registry-level causes (rate limit, DNS, ...) are held for a short window; when several workloads fail against one
  registry with the same cause, one registry incident lists them instead of one thread each;
- recovery of the last failing pod resolves the incident (a pod deleted without starting waits a grace period, so a
  rollout that replaces pods does not flap); a relapse within the relapse window reopens the same thread.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Protocol

from bot import imageref
from bot.model import (
    REGISTRY_LEVEL_CAUSES,
    Cause,
    Diagnosis,
    Incident,
    IncidentScope,
    IncidentStatus,
    OutboxKind,
    OutboxMessage,
    PullFailure,
    Recovery,
    WorkloadRef,
)


@dataclass(frozen=True, slots=True)
class SlackText:
    """What a renderer returns: fallback text plus Block Kit blocks."""

    text: str
    blocks: tuple[dict[str, object], ...] = ()


class Rendered(Protocol):
    """Any rendered message: fallback text and blocks (bot.slack.render.SlackMessage, SlackText)."""

    @property
    def text(self) -> str: ...

    @property
    def blocks(self) -> tuple[dict[str, object], ...]: ...


class Renderer(Protocol):
    """How incidents look in Slack (bot.slack.render.SlackRenderer implements it)."""

    def parent(self, incident: Incident) -> Rendered: ...

    def diagnosis(self, incident: Incident, diagnosis: Diagnosis) -> Rendered: ...

    def new_fact(self, incident: Incident, lines: Sequence[str]) -> Rendered: ...

    def resolved(self, incident: Incident, reason: str) -> Rendered: ...

    def reopened(self, incident: Incident, diagnosis: Diagnosis) -> Rendered: ...


@dataclass(frozen=True, slots=True)
class Change:
    """An incident's new state and the Slack writes it needs, to be stored together."""

    incident: Incident
    outbox: tuple[OutboxMessage, ...] = ()


@dataclass(frozen=True, slots=True)
class BookSettings:
    cluster: str
    default_channel: str
    routes: Mapping[str, str] = field(default_factory=dict)
    storm_threshold: int = 3
    storm_window: timedelta = timedelta(seconds=2)
    relapse_window: timedelta = timedelta(hours=1)
    resolve_grace: timedelta = timedelta(seconds=30)
    update_interval: timedelta = timedelta(seconds=15)


def route_channel(routes: Mapping[str, str], default: str, cluster: str, namespace: str) -> str:
    """Channel for a cluster and namespace: "cluster/ns", then "cluster/*", then "*/ns", then the default."""
    for pattern in (f"{cluster}/{namespace}", f"{cluster}/*", f"*/{namespace}", "*/*"):
        if pattern in routes:
            return routes[pattern]
    return default


def registry_of(image: str) -> str:
    """The registry host of an image, or "unknown" when the reference does not parse."""
    try:
        return imageref.parse(image).registry
    except imageref.InvalidImageReference:
        return "unknown"


def fingerprint(cluster: str, namespace: str, workload: WorkloadRef, container: str, image: str, cause: Cause) -> str:
    """The grouping key of a workload incident, readable and stable across restarts."""
    return f"{cluster}|{namespace}|{workload.kind}/{workload.name}|{container}|{image}|{cause.value}"


def registry_fingerprint(cluster: str, registry: str, cause: Cause) -> str:
    """The grouping key of a registry incident."""
    return f"{cluster}|*registry*|{registry}|{cause.value}"


def fact_ids(diagnosis: Diagnosis) -> tuple[str, ...]:
    """Short ids of the evidence lines, so a line is told in a thread once."""
    return tuple(hashlib.sha256(e.text.encode()).hexdigest()[:12] for e in diagnosis.evidence)


@dataclass(slots=True)
class _Held:
    """Registry-level failures waiting out the storm window before they are posted."""

    since: datetime
    items: list[tuple[PullFailure, Diagnosis]] = field(default_factory=list)


@dataclass(slots=True)
class _Live:
    """What the book knows about one incident beyond its stored state."""

    incident: Incident
    pods: dict[str, str] = field(default_factory=dict)  # pod -> "ns/workload" (registry incidents) or container
    dirty_since: datetime | None = None  # parent needs an update (throttled)
    last_update: datetime | None = None
    empty_since: datetime | None = None  # all pods gone without starting: resolve after the grace period
    generation: int = 0
    # The keys of `pods`, kept sorted as pods come and go: the incident's pod tuple is then a copy, not a sort per
    # observation (sorting 10,000 pods of a registry incident for each of them was quadratic in a storm).
    order: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.order = sorted(self.pods)

    def put_pod(self, pod: str, value: str) -> None:
        """Add a pod (or change what it maps to)."""
        if pod not in self.pods:
            bisect.insort(self.order, pod)
        self.pods[pod] = value

    def drop_pod(self, pod: str) -> None:
        """Remove a pod the incident holds."""
        del self.pods[pod]
        del self.order[bisect.bisect_left(self.order, pod)]

    def set_pods(self, pods: dict[str, str]) -> None:
        """Replace every pod."""
        self.pods = pods
        self.order = sorted(pods)

    def pod_tuple(self) -> tuple[str, ...]:
        """The pods, sorted, as `Incident.pods` holds them."""
        return tuple(self.order)


class IncidentBook:
    """In-memory index of live incidents; `observe`, `recover` and `tick` return the changes to store."""

    def __init__(self, settings: BookSettings, renderer: Renderer) -> None:
        self._s = settings
        self._render = renderer
        self._by_fp: dict[str, _Live] = {}
        self._pod_index: dict[tuple[str, str], set[str]] = {}  # (namespace, pod) -> fingerprints
        self._held: dict[tuple[str, Cause], _Held] = {}
        self._seq = 0

    # ---- restore after a restart ----

    def clear(self) -> None:
        """Forget every incident and held failure (before `load` on a replica that starts leading)."""
        self._by_fp.clear()
        self._pod_index.clear()
        self._held.clear()

    def load(self, incidents: Sequence[Incident], fp_of: Callable[[Incident], str] | None = None) -> None:
        """Adopt stored incidents (open ones, and resolved ones still inside the relapse window)."""
        for inc in incidents:
            fp = (fp_of or self.incident_fingerprint)(inc)
            live = _Live(incident=inc, last_update=inc.last_seen)
            if inc.status is IncidentStatus.OPEN:
                for pod in inc.pods:
                    live.put_pod(pod, "")
                    namespace, _, name = pod.rpartition("/") if "/" in pod else (inc.namespace, "/", pod)
                    self._index(namespace, name, fp)
            current = self._by_fp.get(fp)
            if current is None or (current.incident.first_seen or _EPOCH) <= (inc.first_seen or _EPOCH):
                self._by_fp[fp] = live

    @staticmethod
    def incident_fingerprint(inc: Incident) -> str:
        if inc.scope is IncidentScope.REGISTRY:
            return registry_fingerprint(inc.cluster, inc.registry, inc.cause)
        return fingerprint(inc.cluster, inc.namespace, inc.workload, inc.container, inc.image, inc.cause)

    def open_incidents(self) -> list[Incident]:
        return [x.incident for x in self._by_fp.values() if x.incident.status is IncidentStatus.OPEN]

    def get(self, fp: str) -> Incident | None:
        live = self._by_fp.get(fp)
        return live.incident if live else None

    def adopt(self, incident: Incident) -> None:
        """Take fields another actor changed in the store (thread ts, snooze, mute) into the book."""
        live = self._by_fp.get(self.incident_fingerprint(incident))
        if live and live.incident.key == incident.key:
            live.incident = replace(
                live.incident,
                thread_ts=incident.thread_ts or live.incident.thread_ts,
                channel=incident.channel or live.incident.channel,
                snoozed_until=incident.snoozed_until,
                muted=incident.muted,
                id=incident.id or live.incident.id,
            )

    # ---- observations ----

    def observe(self, failure: PullFailure, diagnosis: Diagnosis, now: datetime) -> list[Change]:
        """A pod's container fails to pull: open, extend or reopen an incident."""
        registry = registry_of(failure.image)
        if diagnosis.cause in REGISTRY_LEVEL_CAUSES:
            reg_fp = registry_fingerprint(failure.cluster, registry, diagnosis.cause)
            reg = self._by_fp.get(reg_fp)
            if reg is not None and reg.incident.status is IncidentStatus.OPEN:
                return self._join_registry(reg_fp, reg, failure, now)
            own = self._by_fp.get(self._fp(failure, diagnosis.cause))
            if own is None or own.incident.status is not IncidentStatus.OPEN:
                held = self._held.setdefault((registry, diagnosis.cause), _Held(since=now))
                held.items.append((failure, diagnosis))
                return []
        return self._observe_workload(failure, diagnosis, registry, now)

    def recover(self, recovery: Recovery, now: datetime) -> list[Change]:
        """A container started, or its pod went away: shrink incidents, resolve the ones left with no pod."""
        self._drop_held(recovery)
        fps = self._pod_index.get((recovery.namespace, recovery.pod), set())
        changes: list[Change] = []
        for fp in sorted(fps):
            live = self._by_fp.get(fp)
            if live is None or live.incident.status is not IncidentStatus.OPEN:
                continue
            pod_id = self._pod_id(live.incident, recovery.namespace, recovery.pod)
            if pod_id not in live.pods:
                continue
            if live.incident.scope is IncidentScope.WORKLOAD and live.pods[pod_id] not in ("", recovery.container):
                continue
            live.drop_pod(pod_id)
            live.incident = replace(live.incident, pods=live.pod_tuple(), last_seen=now)
            if live.pods:
                live.dirty_since = live.dirty_since or now
                changes.append(Change(live.incident))
            elif recovery.reason in ("started", "not_failing") or self._s.resolve_grace <= timedelta(0):
                changes.append(self._resolve(live, now, _REASONS.get(recovery.reason, recovery.reason)))
            else:
                live.empty_since = now
                changes.append(Change(live.incident))
        self._pod_index.pop((recovery.namespace, recovery.pod), None)
        return changes

    def reconcile(self, failing: set[tuple[str, str]], now: datetime) -> list[Change]:
        """After a (re)sync: pods of open incidents that are no longer failing have recovered while nobody watched."""
        gone: dict[tuple[str, str], Incident] = {}
        for live in self._by_fp.values():
            if live.incident.status is not IncidentStatus.OPEN:
                continue
            for pod_id in live.pods:
                namespace, _, pod = pod_id.rpartition("/") if "/" in pod_id else (live.incident.namespace, "", pod_id)
                if (namespace, pod) not in failing:
                    gone[(namespace, pod)] = live.incident
        changes: list[Change] = []
        for (namespace, pod), inc in sorted(gone.items()):
            r = Recovery(inc.cluster, namespace, pod, "", "", inc.image, inc.workload, "not_failing")
            changes.extend(self.recover(r, now))
        return changes

    def tick(self, now: datetime) -> list[Change]:
        """Time passes: release held storms, send throttled parent updates, resolve after the grace period."""
        changes: list[Change] = []
        for group, held in list(self._held.items()):
            if now - held.since >= self._s.storm_window:
                del self._held[group]
                changes.extend(self._release(group, held, now))
        for live in list(self._by_fp.values()):
            inc = live.incident
            if inc.status is not IncidentStatus.OPEN:
                continue
            if live.empty_since is not None and not live.pods and now - live.empty_since >= self._s.resolve_grace:
                changes.append(self._resolve(live, now, "its pods are gone"))
                continue
            due = live.last_update is None or now - live.last_update >= self._s.update_interval
            if live.dirty_since is not None and due:
                changes.append(self._update_parent(live, now))
        return changes

    # ---- internals ----

    def _fp(self, failure: PullFailure, cause: Cause) -> str:
        return fingerprint(
            failure.cluster, failure.namespace, failure.workload, failure.container, failure.image, cause
        )

    @staticmethod
    def _pod_id(inc: Incident, namespace: str, pod: str) -> str:
        return f"{namespace}/{pod}" if inc.scope is IncidentScope.REGISTRY else pod

    def _observe_workload(
        self, failure: PullFailure, diagnosis: Diagnosis, registry: str, now: datetime
    ) -> list[Change]:
        fp = self._fp(failure, diagnosis.cause)
        live = self._by_fp.get(fp)
        if live is None or (
            live.incident.status is IncidentStatus.RESOLVED
            and (live.incident.resolved_at or now) + self._s.relapse_window < now
        ):
            return [self._open(fp, failure, diagnosis, registry, now)]
        if live.incident.status is IncidentStatus.RESOLVED:
            return [self._reopen(fp, live, failure, diagnosis, now)]
        return self._extend(fp, live, failure, diagnosis, now)

    def _new_key(self, fp: str, now: datetime) -> str:
        digest = hashlib.sha256(fp.encode()).hexdigest()[:16]
        return f"{digest}-{int(now.timestamp() * 1000)}"

    def _open(self, fp: str, failure: PullFailure, diagnosis: Diagnosis, registry: str, now: datetime) -> Change:
        inc = Incident(
            key=self._new_key(fp, now),
            cluster=failure.cluster,
            namespace=failure.namespace,
            workload=failure.workload,
            container=failure.container,
            image=failure.image,
            registry=registry,
            cause=diagnosis.cause,
            pods=(failure.pod,),
            pods_seen=1,
            first_seen=now,
            last_seen=now,
            diagnosis=diagnosis,
            channel=route_channel(self._s.routes, self._s.default_channel, failure.cluster, failure.namespace),
            posted_facts=fact_ids(diagnosis),
        )
        live = _Live(incident=inc, pods={failure.pod: failure.container}, last_update=now)
        self._by_fp[fp] = live
        self._index(failure.namespace, failure.pod, fp)
        return Change(
            inc,
            (
                self._msg(inc, OutboxKind.POST_PARENT, self._render.parent(inc), "parent"),
                self._msg(inc, OutboxKind.REPLY, self._render.diagnosis(inc, diagnosis), "diagnosis"),
            ),
        )

    def _reopen(self, fp: str, live: _Live, failure: PullFailure, diagnosis: Diagnosis, now: datetime) -> Change:
        inc = replace(
            live.incident,
            status=IncidentStatus.OPEN,
            resolved_at=None,
            pods=(failure.pod,),
            pods_seen=live.incident.pods_seen + 1,
            last_seen=now,
            diagnosis=diagnosis,
            reopened=live.incident.reopened + 1,
            posted_facts=tuple(dict.fromkeys(live.incident.posted_facts + fact_ids(diagnosis))),
        )
        live.incident, live.empty_since, live.dirty_since = inc, None, None
        live.set_pods({failure.pod: failure.container})
        live.last_update = now
        self._index(failure.namespace, failure.pod, fp)
        tag = f"reopen{inc.reopened}"
        return Change(
            inc,
            (
                self._msg(inc, OutboxKind.UPDATE_PARENT, self._render.parent(inc), f"{tag}:parent"),
                self._msg(inc, OutboxKind.REPLY, self._render.reopened(inc, diagnosis), tag),
            ),
        )

    def _extend(self, fp: str, live: _Live, failure: PullFailure, diagnosis: Diagnosis, now: datetime) -> list[Change]:
        inc = live.incident
        new_pod = failure.pod not in live.pods
        new_ids = [(i, e.text) for i, e in zip(fact_ids(diagnosis), diagnosis.evidence, strict=True)]
        fresh = [(i, text) for i, text in new_ids if i not in inc.posted_facts]
        if not new_pod and not fresh:
            return []
        live.put_pod(failure.pod, failure.container)
        live.empty_since = None
        self._index(failure.namespace, failure.pod, fp)
        inc = replace(
            inc,
            pods=live.pod_tuple(),
            pods_seen=inc.pods_seen + (1 if new_pod else 0),
            last_seen=now,
            posted_facts=inc.posted_facts + tuple(i for i, _ in fresh),
        )
        live.incident = inc
        outbox: tuple[OutboxMessage, ...] = ()
        if fresh and not self._quiet(inc, now):
            note = f"fact{len(inc.posted_facts)}"
            outbox = (self._msg(inc, OutboxKind.REPLY, self._render.new_fact(inc, [t for _, t in fresh]), note),)
        if new_pod:
            live.dirty_since = live.dirty_since or now
        return [Change(inc, outbox)]

    def _join_registry(self, fp: str, live: _Live, failure: PullFailure, now: datetime) -> list[Change]:
        pod_id = f"{failure.namespace}/{failure.pod}"
        if pod_id in live.pods:
            return []
        workload = f"{failure.namespace}/{failure.workload}"
        live.put_pod(pod_id, workload)
        live.empty_since = None
        self._index(failure.namespace, failure.pod, fp)
        inc = live.incident
        affected = inc.affected if workload in inc.affected else (*inc.affected, workload)
        live.incident = replace(
            inc, pods=live.pod_tuple(), pods_seen=inc.pods_seen + 1, affected=affected, last_seen=now
        )
        live.dirty_since = live.dirty_since or now
        return [Change(live.incident)]

    def _release(self, group: tuple[str, Cause], held: _Held, now: datetime) -> list[Change]:
        registry, cause = group
        workloads = {(f.namespace, f.workload) for f, _ in held.items}
        if len(workloads) < self._s.storm_threshold:
            changes: list[Change] = []
            for failure, diagnosis in held.items:
                changes.extend(self._observe_workload(failure, diagnosis, registry, now))
            return changes
        first, diagnosis = held.items[0]
        fp = registry_fingerprint(first.cluster, registry, cause)
        inc = Incident(
            key=self._new_key(fp, now),
            cluster=first.cluster,
            namespace="*",
            workload=WorkloadRef("Registry", registry),
            container="*",
            image=registry,
            registry=registry,
            cause=cause,
            scope=IncidentScope.REGISTRY,
            first_seen=held.since,
            last_seen=now,
            diagnosis=diagnosis,
            channel=route_channel(self._s.routes, self._s.default_channel, first.cluster, "*"),
            posted_facts=fact_ids(diagnosis),
        )
        live = _Live(incident=inc, last_update=now)
        self._by_fp[fp] = live
        for failure, _ in held.items:
            self._join_registry(fp, live, failure, now)
        live.dirty_since = None
        inc = live.incident
        return [
            Change(
                inc,
                (
                    self._msg(inc, OutboxKind.POST_PARENT, self._render.parent(inc), "parent"),
                    self._msg(inc, OutboxKind.REPLY, self._render.diagnosis(inc, diagnosis), "diagnosis"),
                ),
            )
        ]

    def _drop_held(self, recovery: Recovery) -> None:
        for group, held in list(self._held.items()):
            held.items = [
                (f, d) for f, d in held.items if not (f.namespace == recovery.namespace and f.pod == recovery.pod)
            ]
            if not held.items:
                del self._held[group]

    def _update_parent(self, live: _Live, now: datetime) -> Change:
        live.dirty_since, live.last_update = None, now
        inc = live.incident
        if self._quiet(inc, now):
            return Change(inc)
        tag = f"update:{int(now.timestamp() * 1000)}"
        return Change(inc, (self._msg(inc, OutboxKind.UPDATE_PARENT, self._render.parent(inc), tag),))

    def _resolve(self, live: _Live, now: datetime, reason: str) -> Change:
        inc = replace(live.incident, status=IncidentStatus.RESOLVED, resolved_at=now, pods=(), last_seen=now)
        live.incident, live.dirty_since, live.empty_since = inc, None, None
        live.set_pods({})
        if inc.muted:
            return Change(inc)
        tag = f"resolved{inc.reopened}"
        return Change(
            inc,
            (
                self._msg(inc, OutboxKind.UPDATE_PARENT, self._render.parent(inc), f"{tag}:parent"),
                self._msg(inc, OutboxKind.REPLY, self._render.resolved(inc, reason), tag),
            ),
        )

    def _quiet(self, inc: Incident, now: datetime) -> bool:
        return inc.muted or (inc.snoozed_until is not None and inc.snoozed_until > now)

    def _index(self, namespace: str, pod: str, fp: str) -> None:
        self._pod_index.setdefault((namespace, pod), set()).add(fp)

    def _msg(self, inc: Incident, kind: OutboxKind, body: Rendered, tag: str) -> OutboxMessage:
        return OutboxMessage(
            kind=kind,
            incident_key=inc.key,
            channel=inc.channel,
            text=body.text,
            blocks=body.blocks,
            dedup_key=f"{inc.key}:{tag}",
        )


_EPOCH = datetime(1970, 1, 1).astimezone()
_REASONS = {
    "started": "the container started",
    "pod_deleted": "the pod was deleted",
    "pod_terminating": "the pod is being deleted",
    "image_changed": "the image was changed",
    "not_failing": "the pod no longer fails to pull",
}
