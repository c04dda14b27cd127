"""The diagnosis flow: watcher observation -> classify -> inspect -> probe -> verify -> incident -> store + outbox.

This module wires pure stages to adapters it receives as arguments; it creates no client itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from bot.diagnoser import Diagnoser
from bot.diagnosis.classify import classify
from bot.incidents import Change, IncidentBook, registry_of
from bot.logging_setup import incident_id
from bot.model import (
    Cause,
    Classification,
    Diagnosis,
    Incident,
    IncidentScope,
    IncidentStatus,
    OutboxMessage,
    PullFailure,
    Recovery,
)

log = logging.getLogger(__name__)


class StorePort(Protocol):
    def save_incident(self, incident: Incident, outbox: Sequence[OutboxMessage] = ...) -> Awaitable[Incident]: ...

    def get_incident(self, key: str) -> Awaitable[Incident | None]: ...


# Causes whose verification depends on the node the pod runs on, not only on the workload's spec.
_NODE_BOUND = frozenset({Cause.PLATFORM_MISMATCH, Cause.DISK_FULL})


@dataclass(slots=True)
class PipelineStats:
    failures_seen: int = 0
    diagnoses: int = 0
    diagnosis_cache_hits: int = 0
    recoveries_seen: int = 0
    changes_saved: int = 0
    latencies_ms: list[float] = field(default_factory=list)


class Pipeline:
    """Turns watcher callbacks into stored incidents and queued Slack writes."""

    def __init__(
        self,
        *,
        book: IncidentBook,
        store: StorePort,
        diagnoser: Diagnoser,
        wake_outbox: Callable[[], None] = lambda: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        diagnosis_ttl_s: float = 30.0,
        on_diagnosis: Callable[[PullFailure, Diagnosis, float], Awaitable[None] | None] | None = None,
        on_saved: Callable[[Incident, tuple[OutboxMessage, ...]], None] | None = None,
        save_attempts: int = 8,
    ) -> None:
        self._book = book
        self._store = store
        self._diagnoser = diagnoser
        self._wake = wake_outbox
        self._clock = clock
        self._ttl = diagnosis_ttl_s
        self._cache: dict[tuple[str, ...], tuple[float, Diagnosis]] = {}
        self._locks: dict[tuple[str, ...], asyncio.Lock] = {}
        self._save_lock = asyncio.Lock()
        self._on_diagnosis = on_diagnosis
        self._on_saved = on_saved
        self._failing: set[tuple[str, str]] = set()  # (namespace, pod) reported failing since start
        # After a takeover, until the first sync is reconciled: "ns/workload" of open registry incidents -> (registry,
        # diagnosis), for the workloads such an incident lists (their container and image are not stored): their
        # pods, reported again by the first list, join the incident without a diagnosis of their own.
        self._restored_registry: dict[str, tuple[str, Diagnosis]] = {}
        self._deferred: dict[str, Change] = {}  # incident key -> latest change that posts nothing
        self._save_attempts = max(1, save_attempts)
        self.stats = PipelineStats()

    async def restore(self, incidents: Sequence[Incident]) -> None:
        """Start over from stored incidents: a replica that becomes leader forgets what it knew and reloads.

        The diagnoses of open workload incidents go into the diagnosis cache, as if just made, and the workloads an
        open registry incident lists join it again without a diagnosis until the first sync is reconciled: the first
        list after a failover reports every failing pod again, and what the previous leader verified and posted is
        not verified again for them (a diagnosis older than the cache's lifetime is made again for the next new
        failure)."""
        async with self._save_lock:
            self._book.clear()
            self._book.load(incidents)
            self._failing.clear()
            self._deferred.clear()
            now = time.monotonic()
            self._restored_registry.clear()
            for inc in incidents:
                key = self._known_key(inc)
                if key is not None and inc.diagnosis is not None:
                    self._cache.setdefault(key, (now, inc.diagnosis))
                elif self._reusable_registry(inc) and inc.diagnosis is not None:
                    for workload in inc.affected:
                        self._restored_registry[workload] = (inc.registry, inc.diagnosis)

    async def on_failure(self, failure: PullFailure) -> None:
        """Watcher callback: diagnose (once per workload and cause for a while) and fold into an incident."""
        self.stats.failures_seen += 1
        self._failing.add((failure.namespace, failure.pod))
        started = time.monotonic()
        classification = classify(failure.message, failure.event_reason, failure.waiting_reason)
        diagnosis = await self.diagnose_cached(failure, classification)
        if self._on_diagnosis is not None:
            result = self._on_diagnosis(failure, diagnosis, (time.monotonic() - started) * 1000)
            if result is not None:
                await result
        async with self._save_lock:
            await self._apply(self._book.observe(failure, diagnosis, self._clock()))

    async def on_recovery(self, recovery: Recovery) -> None:
        """Watcher callback: a container started or its pod went away."""
        self.stats.recoveries_seen += 1
        if recovery.reason in ("pod_deleted", "pod_terminating"):
            self._failing.discard((recovery.namespace, recovery.pod))
        async with self._save_lock:
            await self._apply(self._book.recover(recovery, self._clock()))

    async def reconcile(self) -> None:
        """Once the watcher has synced: resolve stored incidents whose pods recovered while nobody watched."""
        self._restored_registry.clear()  # the first list has reported every failing pod
        async with self._save_lock:
            await self._apply(self._book.reconcile(set(self._failing), self._clock()))

    async def tick(self) -> None:
        """Write deferred quiet changes; release held storms, throttled parent updates and grace-period resolutions."""
        async with self._save_lock:
            await self.flush()
            await self._apply(self._book.tick(self._clock()))

    async def flush(self) -> None:
        """Write the latest state of incidents whose quiet changes were deferred."""
        deferred, self._deferred = list(self._deferred.values()), {}
        await self._apply(deferred, defer_quiet=False)

    async def run_ticker(self, interval_s: float) -> None:
        """Call `tick` forever (until cancelled)."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.tick()
            except Exception:
                log.exception("incident tick failed; retrying next interval")

    async def diagnose(self, failure: PullFailure, classification: Classification | None = None) -> Diagnosis:
        """Full diagnosis of one failure (see `bot.diagnoser`). Never raises."""
        self.stats.diagnoses += 1
        return await self._diagnoser.diagnose(failure, classification)

    @staticmethod
    def _reusable_registry(inc: Incident) -> bool:
        told = inc.diagnosis.message_cause if inc.diagnosis is not None else None
        return inc.status is IncidentStatus.OPEN and inc.scope is IncidentScope.REGISTRY and told is not None

    @staticmethod
    def _known_key(inc: Incident) -> tuple[str, ...] | None:
        """The diagnosis cache key of an open workload incident's failures (None: not one to reuse; node-bound
        causes depend on each pod's node)."""
        diagnosis = inc.diagnosis
        if inc.status is not IncidentStatus.OPEN or inc.scope is not IncidentScope.WORKLOAD or diagnosis is None:
            return None
        told = diagnosis.message_cause
        if told is None or told in _NODE_BOUND or inc.cause in _NODE_BOUND:
            return None
        return _cache_key(inc.namespace, str(inc.workload), inc.container, inc.image, told, None)

    async def diagnose_cached(self, failure: PullFailure, classification: Classification) -> Diagnosis:
        """Pods of one workload share a spec: verify once per workload, image and message cause for a while."""
        key = _cache_key(
            failure.namespace,
            str(failure.workload),
            failure.container,
            failure.image,
            classification.cause,
            failure.node,
        )
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            hit = self._cache.get(key)
            now = time.monotonic()
            restored = self._restored_registry.get(f"{failure.namespace}/{failure.workload}")
            if hit is None and restored is not None:
                registry, known = restored
                if known.message_cause is classification.cause and registry_of(failure.image) == registry:
                    # The registry incident's diagnosis (another workload's fix commands): it only joins the pod to
                    # that incident, and is not cached under this workload's key.
                    self.stats.diagnosis_cache_hits += 1
                    return known
            if hit is not None and now - hit[0] < self._ttl:
                self.stats.diagnosis_cache_hits += 1
                return hit[1]
            diagnosis = await self.diagnose(failure, classification)
            self._cache[key] = (now, diagnosis)
            if len(self._cache) > 4096:
                oldest = min(self._cache, key=lambda k: self._cache[k][0])
                self._cache.pop(oldest, None)
                self._locks.pop(oldest, None)
            return diagnosis

    async def _apply(self, changes: list[Change], *, defer_quiet: bool = True) -> None:
        """Store changes. A change that posts nothing (a pod joined or left) waits for the next tick, where only the
        incident's latest state is written: a storm of 1000 pods costs a few writes, not one per pod. Losing such a
        change in a crash loses nothing that the watcher's relist does not report again."""
        sent = False
        for change in changes:
            if defer_quiet and not change.outbox:
                self._deferred[change.incident.key] = change
                continue
            self._deferred.pop(change.incident.key, None)
            token = incident_id.set(change.incident.key)
            try:
                stored = await self._save(change)
                self._book.adopt(stored)
                self.stats.changes_saved += 1
                sent = sent or bool(change.outbox)
                log.log(
                    logging.INFO if change.outbox else logging.DEBUG,
                    "incident %s %s: %d pods, %d Slack writes queued",
                    change.incident.key,
                    change.incident.status.value,
                    len(change.incident.pods),
                    len(change.outbox),
                )
                if self._on_saved is not None:
                    self._on_saved(stored, change.outbox)
            finally:
                incident_id.reset(token)
        if sent:
            self._wake()

    async def _save(self, change: Change) -> Incident:
        """Store one change, retrying while the database is away.

        The book already holds the change and the watcher reports a failure only once, so a change given up on
        would be lost. Saving is idempotent (upsert by key, outbox rows deduplicated), so a retry after a commit
        whose answer was lost does no harm.
        """
        attempt = 0
        while True:
            try:
                return await self._store.save_incident(change.incident, change.outbox)
            except Exception as exc:
                attempt += 1
                if attempt >= self._save_attempts:
                    raise
                delay = min(5.0, 0.1 * 2 ** (attempt - 1))
                log.warning(
                    "saving incident %s failed (%s); retry in %.1fs", change.incident.key, type(exc).__name__, delay
                )
                await asyncio.sleep(delay)


def _cache_key(
    namespace: str, workload: str, container: str, image: str, cause: Cause, node: str | None
) -> tuple[str, ...]:
    """The diagnosis cache key: one diagnosis per workload, container, image and message cause (and node, for the
    causes that depend on the pod's node), whether made now or restored from a stored incident."""
    return (namespace, workload, container, image, cause.value, (node or "") if cause in _NODE_BOUND else "")
