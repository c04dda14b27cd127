"""Leader election on a coordination.k8s.io/v1 Lease, after client-go's leaderelection package.

One replica holds the Lease and does the work (watching, posting to Slack); the others wait. The holder writes
`renewTime` every `renew_s`; anyone may take the Lease once it has seen no change of it for `leaseDurationSeconds`
of its own monotonic clock, or at once when it was released (no holder). As client-go's leaderelection does
(`observedRecord`/`observedTime`), expiry is measured from when THIS replica observed the last change of the record,
never from the holder's `renewTime`: a holder whose clock runs behind is not robbed of a live Lease, and a holder
whose clock ran ahead and then died does not keep it for ever. Writes carry the resourceVersion they read, so of two
replicas racing for an expired Lease exactly one wins (the other gets 409 Conflict). A leader that cannot renew for
`renew_deadline_s` (shorter than the lease duration) steps down before anyone else could take over.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from kubernetes_asyncio import client as k8s
from kubernetes_asyncio.client.exceptions import ApiException

log = logging.getLogger(__name__)

Callback = Callable[[], Awaitable[None]]


class _Try(enum.Enum):
    HELD = "held"  # we hold the Lease now
    OTHER = "other"  # another live holder has it
    CONFLICT = "conflict"  # lost a write race (409); read again
    ERROR = "error"  # the API did not answer usefully


def micro_time(value: datetime) -> str:
    """A datetime in the Kubernetes MicroTime wire format (RFC 3339, six fractional digits, UTC)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _aware(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class LeaderElector:
    """Campaigns for a Lease and keeps it; `is_leader` and `lost` events and callbacks report changes."""

    def __init__(
        self,
        api_client: Any,
        *,
        namespace: str,
        name: str,
        identity: str,
        lease_duration_s: float = 15.0,
        renew_s: float = 5.0,
        retry_s: float = 2.0,
        renew_deadline_s: float | None = None,
        release_on_cancel: bool = True,
        on_started_leading: Callback | None = None,
        on_stopped_leading: Callback | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        deadline = renew_deadline_s if renew_deadline_s is not None else lease_duration_s * 2 / 3
        if not identity:
            raise ValueError("identity must not be empty")
        if not 0 < renew_s < deadline < lease_duration_s:
            raise ValueError("need 0 < renew_s < renew_deadline_s < lease_duration_s")
        if not 0 < retry_s < deadline:
            raise ValueError("need 0 < retry_s < renew_deadline_s")
        # Any: the generated stubs ask for model objects where the client also takes plain dicts (sent as is).
        self._api: Any = k8s.CoordinationV1Api(api_client)
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration_s = lease_duration_s
        self.renew_s = renew_s
        self.retry_s = retry_s
        self.renew_deadline_s = deadline
        self.release_on_cancel = release_on_cancel
        self._on_started = on_started_leading
        self._on_stopped = on_stopped_leading
        self._clock = clock
        self._monotonic = monotonic
        self._observed_record: tuple[Any, ...] | None = None  # the Lease spec as last read
        self._observed_at = 0.0  # this replica's monotonic time when that record last changed
        self.is_leader = asyncio.Event()  # set while this replica holds the Lease
        self.lost = asyncio.Event()  # set when this replica stops leading (lost, stepped down or released)
        self.observed_holder: str | None = None  # the holder seen at the last read
        self.transitions = 0  # leaseTransitions seen at the last read or write
        self._last_renew: float | None = None  # loop time at the start of the last successful write

    # ---- public ----

    async def run(self) -> None:
        """Campaign, lead, renew; step down when renewing fails; release the Lease when cancelled."""
        try:
            while True:
                await self._acquire()
                await self._started()
                reason = await self._renew()
                log.warning(
                    "leader election: %s stops leading %s/%s: %s", self.identity, self.namespace, self.name, reason
                )
                await self._stopped()
        finally:
            if self.is_leader.is_set():
                await self._stopped()  # stop the work first, then let a successor in
            if self.release_on_cancel and self.observed_holder == self.identity:
                await self.release()

    async def release(self) -> bool:
        """Give the Lease up now (no holder, so another replica takes it at once); True when released."""
        try:
            async with asyncio.timeout(max(self.retry_s, 1.0)):
                lease = await self._api.read_namespaced_lease(self.name, self.namespace)
                if lease.spec is None or lease.spec.holder_identity != self.identity:
                    return False
                now = self._clock()
                body = self._body(
                    lease.metadata.resource_version,
                    holder=None,
                    acquire=now,
                    renew=now,
                    transitions=lease.spec.lease_transitions or 0,
                    duration=1,
                )
                await self._api.replace_namespaced_lease(self.name, self.namespace, body)
        except (ApiException, TimeoutError, OSError, ValueError) as exc:
            log.warning("leader election: %s could not release the lease: %s", self.identity, _words(exc))
            return False
        self.observed_holder = None
        log.info("leader election: %s released %s/%s", self.identity, self.namespace, self.name)
        return True

    # ---- the loops ----

    async def _acquire(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            outcome = await self._try(timeout=self.retry_s * 2)
            if outcome is _Try.HELD:
                self._last_renew = started
                return
            await asyncio.sleep(self.retry_s * random.uniform(1.0, 1.2))

    async def _renew(self) -> str:
        loop = asyncio.get_running_loop()
        while True:
            assert self._last_renew is not None
            await asyncio.sleep(max(0.0, self._last_renew + self.renew_s - loop.time()))
            while True:
                remaining = self._last_renew + self.renew_deadline_s - loop.time()
                if remaining <= 0:
                    return f"could not renew for {self.renew_deadline_s:g}s"
                started = loop.time()
                outcome = await self._try(timeout=min(remaining, self.retry_s * 2))
                if outcome is _Try.HELD:
                    self._last_renew = started
                    break
                if outcome is _Try.OTHER:
                    return f"the lease is held by {self.observed_holder}"
                remaining = self._last_renew + self.renew_deadline_s - loop.time()
                await asyncio.sleep(max(0.0, min(self.retry_s, remaining)))

    async def _try(self, timeout: float) -> _Try:
        """One read and, if the Lease is ours to take or keep, one write."""
        try:
            async with asyncio.timeout(timeout):
                return await self._try_once()
        except ApiException as exc:
            log.info("leader election: %s: API answered HTTP %s", self.identity, exc.status)
            return _Try.ERROR
        except (TimeoutError, OSError, ValueError) as exc:
            log.info("leader election: %s: %s", self.identity, _words(exc))
            return _Try.ERROR

    async def _try_once(self) -> _Try:
        now = self._clock()
        try:
            lease = await self._api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            body = self._body(None, holder=self.identity, acquire=now, renew=now, transitions=0)
            try:
                await self._api.create_namespaced_lease(self.namespace, body)
            except ApiException as create_exc:
                if create_exc.status == 409:  # another replica created it first
                    return _Try.CONFLICT
                raise
            self.observed_holder, self.transitions = self.identity, 0
            return _Try.HELD
        spec = lease.spec
        holder = (spec.holder_identity if spec else None) or None
        transitions = (spec.lease_transitions if spec else None) or 0
        self.observed_holder, self.transitions = holder, transitions
        self._observe(spec)
        if holder is not None and holder != self.identity and not self._expired(spec):
            return _Try.OTHER
        if holder == self.identity:
            acquire = _aware(spec.acquire_time) or now
        else:
            acquire = now
            transitions += 1
        body = self._body(
            lease.metadata.resource_version, holder=self.identity, acquire=acquire, renew=now, transitions=transitions
        )
        try:
            await self._api.replace_namespaced_lease(self.name, self.namespace, body)
        except ApiException as exc:
            if exc.status == 409:  # someone wrote in between: our read is stale
                return _Try.CONFLICT
            raise
        self.observed_holder, self.transitions = self.identity, transitions
        return _Try.HELD

    def _observe(self, spec: Any) -> None:
        """Remember when this replica saw the Lease record change (any field the holder writes)."""
        record = (
            None
            if spec is None
            else (
                spec.holder_identity,
                spec.renew_time,
                spec.acquire_time,
                spec.lease_transitions,
                spec.lease_duration_seconds,
            )
        )
        if record != self._observed_record:
            self._observed_record = record
            self._observed_at = self._monotonic()

    def _expired(self, spec: Any) -> bool:
        """No change of the record for a lease duration, by this replica's clock since it observed the last one."""
        duration = (spec.lease_duration_seconds if spec is not None else None) or math.ceil(self.lease_duration_s)
        return self._monotonic() > self._observed_at + duration

    def _body(
        self,
        resource_version: str | None,
        *,
        holder: str | None,
        acquire: datetime,
        renew: datetime,
        transitions: int,
        duration: int | None = None,
    ) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if resource_version:
            metadata["resourceVersion"] = resource_version
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": {
                "holderIdentity": holder,
                "leaseDurationSeconds": duration if duration is not None else math.ceil(self.lease_duration_s),
                "acquireTime": micro_time(acquire),
                "renewTime": micro_time(renew),
                "leaseTransitions": transitions,
            },
        }

    # ---- transitions ----

    async def _started(self) -> None:
        log.info("leader election: %s leads %s/%s", self.identity, self.namespace, self.name)
        self.lost.clear()
        self.is_leader.set()
        await self._call(self._on_started, "on_started_leading")

    async def _stopped(self) -> None:
        self.is_leader.clear()
        self.lost.set()
        self._last_renew = None
        await self._call(self._on_stopped, "on_stopped_leading")

    async def _call(self, callback: Callback | None, what: str) -> None:
        if callback is None:
            return
        try:
            await callback()
        except Exception:
            log.exception("leader election: %s callback failed", what)


def _words(exc: BaseException) -> str:
    if isinstance(exc, ApiException):
        return f"HTTP {exc.status}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return type(exc).__name__
