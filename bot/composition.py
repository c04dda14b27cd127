"""Composition root: builds every adapter from Settings and runs the bot. Nothing below this module creates clients.

Roles inside one process:
- every replica: the outbox worker (rows are claimed, so replicas never send one twice), the Slack app (slash
  commands and buttons), /metrics, /healthz and /readyz;
- the leader only (a coordination.k8s.io Lease named `<ha.lease_name>-<cluster>`): the pod and event watcher, the
  incident book and its ticker. Each leadership term starts by reloading the book from the store, so a replica that
  followed while another one posted continues that one's threads instead of opening new ones.

Several clusters: one deployment per cluster, sharing the database and the Slack app. Incidents, the book, the
reconciliation and the Lease are per cluster; the outbox is not: any replica of any cluster may send any due row
(claims keep each row to one sender, in order per incident), which is right because every cluster posts with the same
Slack app. Clusters that post to different Slack workspaces need separate databases.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from slack_sdk.web.async_client import AsyncWebClient

from bot.diagnoser import Diagnoser
from bot.incidents import BookSettings, IncidentBook
from bot.kube.client import load_api_client
from bot.kube.inspect import Inspector
from bot.kube.lease import LeaderElector
from bot.kube.watcher import PodWatcher
from bot.logging_setup import incident_id
from bot.model import Diagnosis, Incident, OutboxMessage, PullFailure
from bot.observability import MeteredProber, MeteredWebClient, Metrics, health_app
from bot.pipeline import Pipeline
from bot.registry.probe import RegistryProber
from bot.settings import Settings
from bot.slack.outbox import OutboxWorker
from bot.slack.render import SlackRenderer
from bot.store.migrate import upgrade
from bot.store.store import Store

log = logging.getLogger(__name__)


def book_settings(settings: Settings) -> BookSettings:
    """The incident book's settings from the bot's."""
    inc = settings.incidents
    return BookSettings(
        cluster=settings.kube.cluster_name,
        default_channel=settings.slack.default_channel,
        routes=dict(settings.slack.routes),
        storm_threshold=inc.storm_threshold,
        storm_window=timedelta(seconds=inc.storm_window_s),
        relapse_window=timedelta(seconds=inc.relapse_window_s),
        resolve_grace=timedelta(seconds=inc.resolve_grace_s),
        update_interval=timedelta(seconds=inc.update_interval_s),
    )


def slack_client(settings: Settings) -> AsyncWebClient:
    """The Slack Web API client (the fake Slack API in tests and the demo, via base_url)."""
    token = settings.slack.bot_token.get_secret_value() if settings.slack.bot_token else None
    return AsyncWebClient(token=token, base_url=settings.slack.base_url)


class _OutboxStoreView:
    """The store as the outbox worker sees it; tags the worker's log records with the incident they concern.

    The worker sends each incident's rows in a task of its own and reads the incident first, so setting the
    `incident_id` context variable there labels every later record of that task."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def claim_outbox(self, limit: int, worker_id: str, lease_s: float) -> list[OutboxMessage]:
        return await self._store.claim_outbox(limit, worker_id, lease_s)

    async def get_incident(self, key: str) -> Incident | None:
        incident_id.set(key)
        return await self._store.get_incident(key)

    async def set_thread(self, incident_key: str, channel: str, ts: str) -> object:
        return await self._store.set_thread(incident_key, channel, ts)

    async def mark_outbox_sent(self, outbox_id: int, ts: str | None) -> object:
        return await self._store.mark_outbox_sent(outbox_id, ts)

    async def mark_outbox_retry(self, outbox_id: int, not_before: datetime, error: str) -> object:
        return await self._store.mark_outbox_retry(outbox_id, not_before, error)

    async def mark_outbox_failed(self, outbox_id: int, error: str) -> object:
        return await self._store.mark_outbox_failed(outbox_id, error)

    async def outbox_attempts(self, outbox_id: int) -> int | None:
        return await self._store.outbox_attempts(outbox_id)


async def restorable_incidents(settings: Settings, store: Store) -> list[Incident]:
    """This cluster's open incidents and those resolved inside the relapse window (what the book reloads)."""
    cutoff = datetime.now(UTC) - timedelta(seconds=settings.incidents.relapse_window_s)
    return [
        i
        for i in await store.recent_incidents(limit=5000, cluster=settings.kube.cluster_name)
        if i.resolved_at is None or i.resolved_at >= cutoff
    ]


@dataclass
class Bot:
    """Every long-lived part of a running bot, built once by `create`."""

    settings: Settings
    store: Store
    api: Any  # kubernetes_asyncio ApiClient
    prober: RegistryProber
    inspector: Inspector
    book: IncidentBook
    pipeline: Pipeline
    outbox: OutboxWorker
    slack: AsyncWebClient
    metrics: Metrics
    identity: str
    watcher: PodWatcher | None = None
    elector: LeaderElector | None = None
    is_leader: asyncio.Event = field(default_factory=asyncio.Event)
    terms: int = 0  # how many times this replica started leading
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    async def create(cls, settings: Settings, *, slack: AsyncWebClient | None = None, migrate: bool = True) -> Bot:
        """Migrate the database, open every client, restore open incidents."""
        if migrate:
            await upgrade(settings.database_url)
        store = await Store.open(settings.database_url, audit_key=settings.audit.key)
        if settings.audit.key is None:
            log.warning(
                "audit.hmac_key (IMAGEPULL_AUDIT__HMAC_KEY) is not set: the audit chain is unkeyed and a database"
                " writer could recompute it; see docs/SECURITY.md"
            )
        api = await load_api_client(settings.kube)
        prober = RegistryProber(settings.registry)
        inspector = Inspector.from_settings(api, settings.kube)
        book = IncidentBook(book_settings(settings), SlackRenderer())
        book.load(await restorable_incidents(settings, store))
        metrics = Metrics()
        metrics.reset_open(book.open_incidents())
        client = MeteredWebClient.like(slack or slack_client(settings), metrics)
        identity = settings.ha.identity or f"{socket.gethostname()}-{os.getpid()}"
        released = await store.release_claims(identity)
        if released:
            log.info("outbox: %d rows claimed by this identity before a restart are claimable again", released)
        out = settings.outbox
        outbox = OutboxWorker(
            _OutboxStoreView(store),
            client,
            worker_id=identity,
            rate_per_channel=out.rate_per_channel,
            lease_s=out.lease_s,
            poll_interval=out.poll_interval_s,
        )
        bot_ref: list[Bot] = []

        def observe(failure: PullFailure, diagnosis: Diagnosis, elapsed_ms: float) -> None:
            metrics.diagnosis_seconds.observe(elapsed_ms / 1000)

        pipeline = Pipeline(
            book=book,
            store=store,
            diagnoser=Diagnoser(inspector, MeteredProber(prober, metrics)),
            wake_outbox=lambda: bot_ref[0].outbox_wake() if bot_ref else None,
            on_diagnosis=observe,
            on_saved=metrics.incident_saved,
        )
        bot = cls(settings, store, api, prober, inspector, book, pipeline, outbox, client, metrics, identity)
        bot_ref.append(bot)
        metrics.before_render(bot._copy_counters)
        log.info(
            "bot ready: cluster %s, identity %s, %d incidents restored",
            settings.kube.cluster_name,
            identity,
            len(book.open_incidents()),
        )
        return bot

    def outbox_wake(self) -> None:
        """Wake the outbox worker now (rows were stored)."""
        self.outbox.notify()

    def _copy_counters(self) -> None:
        self.metrics.sync_total(self.metrics.slack_retries, "outbox", self.outbox.retries)
        if self.watcher is not None:
            child = self.metrics.watch_restarts.labels(resource="pods_and_events")
            self.metrics.sync_total(child, f"term{self.terms}", self.watcher.restarts)

    # ---- the leader's duties ----

    async def refresh_book(self) -> None:
        """Reload the incident book from the store (what another replica stored while this one followed)."""
        await self.pipeline.restore(await restorable_incidents(self.settings, self.store))
        self.metrics.reset_open(self.book.open_incidents())

    async def lead(self) -> None:
        """Watch, diagnose and keep incidents; until cancelled (leadership lost or shutdown)."""
        self.terms += 1
        self.watcher = None
        await self.refresh_book()
        log.info(
            "leading cluster %s (term %d): %d open incidents", self.cluster, self.terms, len(self.book.open_incidents())
        )
        self.metrics.leader.set(1)
        self.watcher = PodWatcher(
            self.api,
            self.settings.kube.cluster_name,
            self.settings.kube,
            self.pipeline.on_failure,
            self.pipeline.on_recovery,
        )
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.watcher.run())
                tg.create_task(self._reconcile_when_synced(self.watcher))
                tg.create_task(self.pipeline.run_ticker(self.settings.incidents.tick_interval_s))
        finally:
            self.metrics.leader.set(0)
            self._copy_counters()

    @property
    def cluster(self) -> str:
        """The name of the cluster this bot watches."""
        return self.settings.kube.cluster_name

    async def _reconcile_when_synced(self, watcher: PodWatcher) -> None:
        await watcher.synced.wait()
        await self.pipeline.reconcile()

    def make_elector(self) -> LeaderElector:
        """The Lease election of this cluster (`<lease_name>-<cluster>`)."""
        ha = self.settings.ha
        return LeaderElector(
            self.api,
            namespace=ha.lease_namespace,
            name=f"{ha.lease_name}-{self.cluster}",
            identity=self.identity,
            lease_duration_s=ha.lease_duration_s,
            renew_s=ha.renew_s,
            retry_s=min(2.0, ha.renew_s),
        )

    async def run_leader_elected(self) -> None:
        """Lead while holding the Lease; stop leading the moment it is lost; try again."""
        if not self.settings.ha.enabled:
            self.is_leader.set()
            try:
                await self.lead()
            finally:
                self.is_leader.clear()
            return
        elector = self.elector = self.make_elector()
        election = asyncio.create_task(elector.run(), name="lease")
        try:
            while True:
                await _first(election, elector.is_leader.wait())
                self.is_leader.set()
                log.info("leading as %s", self.identity)
                duties = asyncio.create_task(self.lead(), name="lead")
                lost = asyncio.create_task(elector.lost.wait())
                done, _ = await asyncio.wait({duties, lost, election}, return_when=asyncio.FIRST_COMPLETED)
                self.is_leader.clear()
                for t in (duties, lost):
                    t.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await t
                self.metrics.reset_open(())
                if duties in done and not duties.cancelled() and duties.exception() is not None:
                    raise duties.exception()  # type: ignore[misc]
                if election in done:
                    election.result()  # the election ended by itself: surface why
                    return
                log.warning("leadership lost; watcher stopped")
        finally:
            self.is_leader.clear()
            election.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await election

    # ---- health ----

    def health(self) -> web.Application:
        """`/metrics`, `/healthz`, `/readyz` (database answers; the watch has synced when this replica leads)."""

        async def db() -> bool:
            return await self.store.ping()

        async def synced() -> bool:
            if not self.is_leader.is_set():
                return True  # a follower is ready when it can answer Slack
            return self.watcher is not None and self.watcher.synced.is_set()

        return health_app(self.metrics, {"database": db, "watch_synced": synced})

    async def close(self) -> None:
        """Close the registry, Kubernetes and database clients."""
        await self.prober.close()
        await self.api.close()
        await self.store.close()


async def _first(election: asyncio.Task[None], waiting: Awaitable[object]) -> None:
    """Wait for `waiting`; if the election task ends first, raise what ended it."""
    waiter = asyncio.ensure_future(waiting)
    try:
        done, _ = await asyncio.wait({waiter, election}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not waiter.done():
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiter
    if election in done and waiter not in done:
        election.result()
        raise RuntimeError("leader election ended")
