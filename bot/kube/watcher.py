"""Watches pods and events cluster-wide and reports image pull failures and their recoveries.

Two streams, each list-then-watch from the list's resourceVersion with bookmarks: pods (waiting reasons) and Warning
events about pods (kubelet's `Failed to pull image ...` text, which older kubelets leave out of ImagePullBackOff).
Lists are paginated and both streams are read as raw JSON lines (`_preload_content=False`), and only pods with a
failing container are remembered, with a few strings each, so memory stays small with many pods.

On 410 Gone a stream relists and reconciles against what it remembers: recoveries that happened during the gap are
reported once, failures already reported are not reported again. Other errors and dropped streams reconnect with
exponential backoff and full jitter (honouring Retry-After on 429).

A failure is reported when a container starts failing or its error changes. ErrImagePull and ImagePullBackOff
alternate on every kubelet retry: a flip between them with the same error text is not a change.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import sys
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import aiohttp
from kubernetes_asyncio import client

from bot.aio import cancel_and_wait
from bot.kube import podstate
from bot.kube.observations import ObservationQueue
from bot.model import PULL_ATTEMPT_REASONS, PullFailure, Recovery, WorkloadRef
from bot.settings import KubeSettings

log = logging.getLogger(__name__)

OnFailure = Callable[[PullFailure], Awaitable[None]]
OnRecovery = Callable[[Recovery], Awaitable[None]]

# kubelet alternates a failed attempt's reason with ImagePullBackOff on every retry: one family.
_PULL_FAMILY = dict.fromkeys((*PULL_ATTEMPT_REASONS, "ImagePullBackOff"), "pull")
_EVENT_SELECTOR = "involvedObject.kind=Pod,type=Warning"
_SECRET_EVENT = "FailedToRetrieveImagePullSecret"  # noqa: S105 - an event reason, not a password


def _shared(text: str) -> str:
    """One string object for equal texts kept per failing pod: the pods of a workload share their image, node,
    waiting reason and error message, so 20,000 failing pods hold a few hundred strings, not 20,000 copies."""
    return sys.intern(text) if type(text) is str else text  # a subclass or a value of unexpected shape stays as is


class _Gone(Exception):
    """The stream's resourceVersion is too old (410): relist."""


class _HttpError(Exception):
    def __init__(self, status: int, body: str, retry_after: float | None) -> None:
        super().__init__(f"HTTP {status}: {body[:200]}")
        self.status = status
        self.retry_after = retry_after


@dataclass(slots=True)
class _Failing:
    """What is remembered about one failing container."""

    kind: str
    image: str
    waiting_reason: str
    waiting_message: str
    reported: tuple[str, str, str | None]  # (waiting reason, message, event reason) last told to on_failure


@dataclass(slots=True)
class _PodState:
    """A pod with at least one failing container."""

    uid: str
    node: str | None
    workload: WorkloadRef
    failing: dict[str, _Failing] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _EventNote:
    uid: str
    reason: str
    message: str
    at: str  # lastTimestamp (RFC 3339 sorts as text)


class PodWatcher:
    """Reports PullFailure and Recovery through async callbacks while `run()` runs."""

    def __init__(
        self,
        api_client: client.ApiClient,
        cluster: str,
        settings: KubeSettings,
        on_failure: OnFailure,
        on_recovery: OnRecovery,
        *,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 30.0,
        watch_timeout_s: int = 300,
        page_size: int = 250,  # a parsed page of 500 pods costs ~15 MB of transient RSS; 250 halves it
        max_event_notes: int = 20_000,
        owner_cache_size: int = 4096,
        workers: int = 4,
        api_timeout_s: float = 30.0,
        silence_s: float = 120.0,
    ) -> None:
        self._core = client.CoreV1Api(api_client)
        self._apps = client.AppsV1Api(api_client)
        self._batch = client.BatchV1Api(api_client)
        self.cluster = cluster
        self._include = set(settings.include_namespaces)
        self._exclude = set(settings.exclude_namespaces)
        self._on_failure = on_failure
        self._on_recovery = on_recovery
        self._backoff_base_s = backoff_base_s
        self._backoff_cap_s = backoff_cap_s
        self._watch_timeout_s = watch_timeout_s
        self._page_size = page_size
        self._max_event_notes = max_event_notes
        self._owner_cache_size = owner_cache_size
        self._api_timeout_s = api_timeout_s
        # A watch that delivers nothing (no change, no bookmark: real servers send one about every minute) for this
        # long is taken for stuck and restarted; while a stream stays silent past it, `stuck_streams` names it.
        self._silence_s = silence_s
        self._last_heard: dict[str, float] = {}
        self.stalls = 0  # watches restarted because they were silent past the deadline
        # Observations go to a bounded worker pool: the watch loops never wait for a diagnosis.
        self.observations = ObservationQueue(on_failure, on_recovery, workers=workers, name=f"watcher {cluster}")
        self.synced = asyncio.Event()
        self.restarts = 0  # streams re-established after a drop, an error or 410 Gone
        self.relists = 0  # lists made after the first ones (410 Gone)
        self._pods: dict[tuple[str, str], _PodState] = {}
        self._events: OrderedDict[tuple[str, str, str], _EventNote] = OrderedDict()
        self._owners: OrderedDict[tuple[str, str, str], WorkloadRef] = OrderedDict()

    # ---- public ----

    @property
    def failing_pods(self) -> int:
        """How many pods have a container failing to pull right now."""
        return len(self._pods)

    def stuck_streams(self) -> list[str]:
        """The streams (pods, events) that delivered nothing and could not reconnect for longer than the deadline
        (the silence deadline, then the time a reconnect may take)."""
        now = time.monotonic()
        limit = self._silence_s + self._api_timeout_s
        return [what for what, at in self._last_heard.items() if now - at > limit]

    async def run(self) -> None:
        """List, then watch pods and events until cancelled.

        The events watch starts as soon as the events are listed, not after the (possibly long) pod list: its
        resourceVersion would otherwise have left the server's watch history by then, a certain 410 and a relist.
        `synced` is set once both lists are read and what they showed has been delivered."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.observations.run(), name="observations")
            self._last_heard["events"] = time.monotonic()
            events_rv = await self._retrying("events", self._list_events)
            tg.create_task(self._stream("events", events_rv), name="events")
            self._last_heard["pods"] = time.monotonic()
            pods_rv = await self._retrying("pods", self._list_pods)
            tg.create_task(self._stream("pods", pods_rv), name="pods")
            await self.observations.join()
            self.synced.set()
            log.info("watcher %s: synced, %d pods failing", self.cluster, len(self._pods))

    # ---- stream loops ----

    async def _retrying(self, what: str, list_fn: Callable[[], Awaitable[str]]) -> str:
        attempt = 0
        while True:
            try:
                return await list_fn()
            except (_Gone, _HttpError, aiohttp.ClientError, TimeoutError, ValueError) as exc:
                attempt += 1
                await self._backoff(what, attempt, exc)

    async def _stream(self, what: str, rv: str) -> None:
        list_fn = self._list_pods if what == "pods" else self._list_events
        attempt = 0
        while True:
            try:
                started = time.monotonic()
                rv, delivered = await self._watch(what, rv)
                # A stream the server ended after its full timeout reconnects at once; an early end is a drop.
                if time.monotonic() - started >= self._watch_timeout_s - 1:
                    attempt = 0
                    continue
                attempt = 0 if delivered else attempt
                attempt += 1
                await self._backoff(what, attempt, "stream closed")
            except _Gone:
                log.info("watcher %s: %s resourceVersion %s expired, relisting", self.cluster, what, rv)
                self.relists += 1
                rv = await self._retrying(what, list_fn)
                attempt = 0
            except (_HttpError, aiohttp.ClientError, TimeoutError, ValueError) as exc:
                if isinstance(exc, TimeoutError):
                    self.stalls += 1
                    log.warning(
                        "watcher %s: %s watch silent for %.1fs, restarting it", self.cluster, what, self._silence_s
                    )
                attempt += 1
                await self._backoff(what, attempt, exc)

    async def _backoff(self, what: str, attempt: int, reason: object) -> None:
        self.restarts += 1
        delay = random.uniform(0, min(self._backoff_cap_s, self._backoff_base_s * 2 ** (attempt - 1)))
        if isinstance(reason, _HttpError) and reason.retry_after is not None:
            delay = max(delay, reason.retry_after)
        log.warning("watcher %s: %s stream: %s; retrying in %.2fs", self.cluster, what, reason, delay)
        await asyncio.sleep(delay)

    # ---- HTTP ----

    async def _call(self, what: str, **kwargs: Any) -> aiohttp.ClientResponse:
        kwargs.setdefault("_request_timeout", aiohttp.ClientTimeout(total=self._api_timeout_s))
        raw: Any
        if what == "pods":
            raw = await self._core.list_pod_for_all_namespaces(_preload_content=False, **kwargs)
        else:
            raw = await self._core.list_event_for_all_namespaces(
                _preload_content=False, field_selector=_EVENT_SELECTOR, **kwargs
            )
        resp = cast(aiohttp.ClientResponse, raw)
        if resp.status != 200:
            body = (await resp.read()).decode(errors="replace")
            resp.release()
            if resp.status == 410:
                raise _Gone(body)
            retry_after = resp.headers.get("Retry-After")
            raise _HttpError(resp.status, body, float(retry_after) if retry_after and retry_after.isdigit() else None)
        return resp

    async def _pages(self, what: str) -> AsyncIterator[tuple[list[dict[str, Any]], str]]:
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"limit": self._page_size}
            if token:
                kwargs["_continue"] = token
            async with asyncio.timeout(self._api_timeout_s):
                resp = await self._call(what, **kwargs)
                try:
                    page = json.loads(await resp.read())
                finally:
                    resp.release()
            self._last_heard[what] = time.monotonic()
            meta = page.get("metadata") or {}
            yield page.get("items") or [], str(meta.get("resourceVersion", ""))
            token = meta.get("continue")
            if not token:
                return

    async def _watch(self, what: str, rv: str) -> tuple[str, bool]:
        # sock_read bounds the wait for the answer and for every next line: a silent stream raises TimeoutError.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=self._silence_s)
        resp = await self._call(
            what,
            watch=True,
            resource_version=rv,
            allow_watch_bookmarks=True,
            timeout_seconds=self._watch_timeout_s,
            _request_timeout=timeout,
        )
        delivered = False
        self._last_heard[what] = time.monotonic()
        try:
            buf = bytearray()
            async for chunk in resp.content.iter_any():
                self._last_heard[what] = time.monotonic()
                buf.extend(chunk)
                while (nl := buf.find(b"\n")) >= 0:
                    line = bytes(buf[:nl])
                    del buf[: nl + 1]
                    if line.strip():
                        rv = await self._watch_line(what, line, rv)
                        delivered = True
        except aiohttp.ClientPayloadError:
            log.info("watcher %s: %s stream cut", self.cluster, what)
        finally:
            resp.release()
        return rv, delivered

    async def _watch_line(self, what: str, line: bytes, rv: str) -> str:
        event = json.loads(line)
        if not isinstance(event, dict) or not isinstance(event.get("object") or {}, dict):
            raise ValueError(f"not a watch event: {line[:100]!r}")
        type_ = event.get("type")
        obj = event.get("object") or {}
        if type_ == "ERROR":
            if obj.get("code") == 410:
                raise _Gone(obj.get("message", ""))
            raise _HttpError(int(obj.get("code") or 500), str(obj.get("message", "")), None)
        new_rv = str((obj.get("metadata") or {}).get("resourceVersion") or rv)
        if type_ == "BOOKMARK":
            return new_rv
        if what == "pods":
            if not self._nothing_to_do(obj):
                await self._guarded(self._pod_changed(obj, deleted=type_ == "DELETED"), obj)
        elif type_ != "DELETED":
            await self._guarded(self._event_seen(obj), obj)
        return new_rv

    async def _guarded(self, step: Awaitable[None], obj: Any) -> None:
        """One object's processing: an object of an unexpected shape is logged and skipped, never ends a stream."""
        try:
            await step
        except (AttributeError, TypeError, ValueError, KeyError) as exc:
            meta = obj.get("metadata") if isinstance(obj, dict) else None
            name = meta.get("name") if isinstance(meta, dict) else None
            log.warning("watcher %s: skipped an object of unexpected shape (%s): %s", self.cluster, name, exc)

    # ---- lists and reconciliation ----

    async def _list_events(self) -> str:
        rv = ""
        async for items, page_rv in self._pages("events"):
            rv = rv or page_rv
            for item in items:
                await self._guarded(self._event_seen(item), item)
        return rv

    async def _list_pods(self) -> str:
        # Only keys of pods the watcher remembers (failing ones) are collected: those not listed again are gone.
        seen: set[tuple[str, str]] = set()
        rv = ""
        async for items, page_rv in self._pages("pods"):
            rv = rv or page_rv
            for item in items:
                if self._nothing_to_do(item):
                    continue
                await self._guarded(self._pod_changed(item, deleted=False), item)
                meta = (item.get("metadata") if isinstance(item, dict) else None) or {}
                key = (meta.get("namespace", ""), meta.get("name", ""))
                if key in self._pods:
                    seen.add(key)
        for key in [k for k in self._pods if k not in seen]:
            await self._recover_pod(key, "pod_deleted")
        return rv

    # ---- pods ----

    def _nothing_to_do(self, pod: Any) -> bool:
        """A pod the watcher remembers nothing about and whose status waits on no image pull: most pods, skipped
        after a few dictionary reads (nothing is kept or built for them). An object of unexpected shape is not
        skipped here: `_pod_changed` logs it."""
        try:
            meta = pod.get("metadata") or {}
            key = (meta.get("namespace", ""), meta.get("name", ""))
            return key not in self._pods and not podstate.may_wait_on_pull(pod)
        except (AttributeError, TypeError):
            return False

    def _wanted(self, namespace: str) -> bool:
        if self._include and namespace not in self._include:
            return False
        return namespace not in self._exclude

    async def _pod_changed(self, pod: dict[str, Any], deleted: bool) -> None:
        meta = pod.get("metadata") or {}
        namespace, name, uid = meta.get("namespace", ""), meta.get("name", ""), meta.get("uid", "")
        if not self._wanted(namespace):
            return
        key = (namespace, name)
        state = self._pods.get(key)
        if state is not None and state.uid != uid:
            await self._recover_pod(key, "pod_deleted")  # same name, new pod (StatefulSet)
            state = None
        if deleted:
            if state is not None:
                await self._recover_pod(key, "pod_deleted")
            return
        if podstate.is_terminating(pod):
            # Terminating (deletionTimestamp set) for its grace period, for ever on a lost node: leaving, not failing.
            if state is not None:
                await self._recover_pod(key, "pod_terminating")
            return
        waits = {c.name: c for c in podstate.pull_waits(pod)}
        if state is not None:
            images = {c.name: c.image for c in podstate.containers(pod)}
            for cname, failing in list(state.failing.items()):
                current = waits.get(cname)
                changed_image = images.get(cname, failing.image) != failing.image
                if current is None or changed_image:
                    del state.failing[cname]
                    await self._tell_recovery(
                        key, state, cname, failing, "image_changed" if changed_image else "started"
                    )
        if not waits:
            if state is not None and not state.failing:
                del self._pods[key]
            return
        if state is None:
            node = (pod.get("spec") or {}).get("nodeName")
            state = _PodState(uid, _shared(node) if node else None, await self._workload(namespace, pod))
            self._pods[(_shared(namespace), name)] = state
        for cname, wait in waits.items():
            entry = state.failing.get(cname)
            if entry is None:
                entry = _Failing(wait.kind, _shared(wait.image), "", "", ("", "", None))
                state.failing[cname] = entry
            entry.waiting_reason = _shared(wait.waiting_reason or "")
            entry.waiting_message = _shared(wait.waiting_message)
            await self._maybe_report(key, state, cname, entry)

    def _freshest(self, key: tuple[str, str], uid: str, cname: str, failing: _Failing) -> tuple[str, str | None]:
        """The most specific error text known for a failing container, and the event reason it came from.

        The pod status is the source; events only fill in what a bare `Back-off pulling image "x"` (kubelets before
        1.32) leaves out, and nothing depends on an event still existing (they expire after an hour)."""
        if failing.waiting_reason == "ImagePullBackOff":
            carried = podstate.carried_error(failing.waiting_message)
            if carried is not None:  # kubelet >= 1.32: the back-off carries the last attempt's error
                return carried[1], None
        if failing.waiting_reason != "ImagePullBackOff" or not podstate.is_generic_backoff(failing.waiting_message):
            return failing.waiting_message, None
        note = self._events.get((*key, cname))
        if note is not None and note.uid in ("", uid):
            return note.message, note.reason
        if failing.reported[1] and not podstate.is_generic_backoff(failing.reported[1]):
            return failing.reported[1], failing.reported[2]
        note = self._events.get((*key, ""))
        if note is not None and note.uid in ("", uid):
            return note.message, note.reason
        return failing.waiting_message, None

    async def _maybe_report(self, key: tuple[str, str], state: _PodState, cname: str, failing: _Failing) -> None:
        message, event_reason = self._freshest(key, state.uid, cname, failing)
        old_reason, old_message, _ = failing.reported
        family = _PULL_FAMILY.get(failing.waiting_reason, failing.waiting_reason)
        same_family = old_reason and _PULL_FAMILY.get(old_reason, old_reason) == family
        if same_family and podstate.error_text(old_message) == podstate.error_text(message):
            return
        failing.reported = (failing.waiting_reason, message, event_reason)
        failure = PullFailure(
            cluster=self.cluster,
            namespace=key[0],
            pod=key[1],
            pod_uid=state.uid,
            container=cname,
            container_kind=failing.kind,
            image=failing.image,
            waiting_reason=failing.waiting_reason,
            message=message,
            workload=state.workload,
            node=state.node,
            event_reason=event_reason,
            observed_at=datetime.now(UTC),
        )
        self.observations.put(failure)

    async def _recover_pod(self, key: tuple[str, str], reason: str) -> None:
        state = self._pods.pop(key, None)
        if state is None:
            return
        for cname, failing in state.failing.items():
            await self._tell_recovery(key, state, cname, failing, reason)

    async def _tell_recovery(
        self, key: tuple[str, str], state: _PodState, cname: str, failing: _Failing, reason: str
    ) -> None:
        recovery = Recovery(
            cluster=self.cluster,
            namespace=key[0],
            pod=key[1],
            pod_uid=state.uid,
            container=cname,
            image=failing.image,
            workload=state.workload,
            reason=reason,
            observed_at=datetime.now(UTC),
        )
        self.observations.put(recovery)

    # ---- events ----

    async def _event_seen(self, ev: dict[str, Any]) -> None:
        involved = ev.get("involvedObject") or {}
        if involved.get("kind") != "Pod":
            return
        namespace = involved.get("namespace") or (ev.get("metadata") or {}).get("namespace", "")
        if not self._wanted(namespace):
            return
        reason, message = ev.get("reason"), podstate.strip_combined(str(ev.get("message") or ""))
        if podstate.is_pull_error_event(reason, message):
            target = podstate.field_path_container(involved.get("fieldPath"))
            if target is None:
                return
            cname = target[1]
        elif reason == _SECRET_EVENT:
            cname = ""
        else:
            return
        key = (namespace, str(involved.get("name", "")), cname)
        at = str(
            ev.get("lastTimestamp") or ev.get("eventTime") or (ev.get("metadata") or {}).get("creationTimestamp") or ""
        )
        old = self._events.get(key)
        if old is not None and old.at > at:
            return
        key = (_shared(namespace), key[1], _shared(cname))
        self._events[key] = _EventNote(
            str(involved.get("uid") or ""), _shared(str(reason)), _shared(message), _shared(at)
        )
        self._events.move_to_end(key)
        while len(self._events) > self._max_event_notes:
            self._events.popitem(last=False)
        state = self._pods.get(key[:2])
        if state is not None:
            targets = list(state.failing) if cname == "" else [cname] if cname in state.failing else []
            for name in targets:
                await self._maybe_report(key[:2], state, name, state.failing[name])

    # ---- owners ----

    async def _workload(self, namespace: str, pod: dict[str, Any]) -> WorkloadRef:
        meta = pod.get("metadata") or {}
        owner = podstate.controller_owner(pod)
        if owner is None:
            return WorkloadRef("Pod", meta.get("name", ""))
        kind, name = str(owner.get("kind", "")), str(owner.get("name", ""))
        if kind not in ("ReplicaSet", "Job"):
            return WorkloadRef(kind, name)
        cache_key = (namespace, kind, name)
        cached = self._owners.get(cache_key)
        if cached is not None:
            return cached
        guess = WorkloadRef(kind, name)
        if kind == "ReplicaSet":
            deployment = podstate.deployment_name_guess(name, meta.get("labels") or {})
            if deployment:
                guess = WorkloadRef("Deployment", deployment)
        resp: Any
        try:
            async with asyncio.timeout(self._api_timeout_s):
                timeout = aiohttp.ClientTimeout(total=self._api_timeout_s)
                if kind == "ReplicaSet":
                    resp = await self._apps.read_namespaced_replica_set(
                        name, namespace, _preload_content=False, _request_timeout=timeout
                    )
                else:
                    resp = await self._batch.read_namespaced_job(
                        name, namespace, _preload_content=False, _request_timeout=timeout
                    )
                try:
                    status = resp.status
                    body = json.loads(await resp.read()) if status == 200 else None
                finally:
                    resp.release()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.info("watcher %s: owner %s/%s unreadable (%s), guessing %s", self.cluster, kind, name, exc, guess)
            return guess
        if body is None:
            result = guess if status in (403, 404) else None
            if result is None:
                return guess  # transient: do not cache
        else:
            parent = podstate.controller_owner(body)
            top = {"ReplicaSet": "Deployment", "Job": "CronJob"}[kind]
            result = (
                WorkloadRef(top, str(parent["name"]))
                if parent and parent.get("kind") == top
                else WorkloadRef(kind, name)
            )
        self._owners[cache_key] = result
        while len(self._owners) > self._owner_cache_size:
            self._owners.popitem(last=False)
        return result


async def run_until_synced(watcher: PodWatcher) -> asyncio.Task[None]:
    """Start `watcher.run()` in a task and wait until its first lists are reconciled."""
    task = asyncio.create_task(watcher.run())
    synced = asyncio.create_task(watcher.synced.wait())
    done, _ = await asyncio.wait({task, synced}, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        await cancel_and_wait(synced)
        await task  # raises what run() raised
    return task
