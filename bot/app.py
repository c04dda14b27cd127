"""Composition root: builds every adapter from Settings and runs the bot. Nothing below this module creates clients.

Roles inside one process:
- every replica: the outbox worker (rows are claimed, so replicas never send one twice), the Slack app (slash
  commands and buttons), /metrics, /healthz and /readyz;
- the leader only (a coordination.k8s.io Lease): the pod and event watcher, the incident book and its ticker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from slack_sdk.web.async_client import AsyncWebClient

from bot.incidents import BookSettings, IncidentBook
from bot.kube.client import load_api_client
from bot.kube.inspect import Inspector
from bot.kube.lease import LeaderElector
from bot.kube.watcher import PodWatcher
from bot.model import Diagnosis, PullFailure
from bot.observability import Metrics, health_app
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
    is_leader: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    async def create(cls, settings: Settings, *, slack: AsyncWebClient | None = None, migrate: bool = True) -> Bot:
        """Migrate the database, open every client, restore open incidents."""
        if migrate:
            await upgrade(settings.database_url)
        store = await Store.open(settings.database_url)
        api = await load_api_client(settings.kube)
        prober = RegistryProber(settings.registry)
        inspector = Inspector.from_settings(api, settings.kube)
        book = IncidentBook(book_settings(settings), SlackRenderer())
        relapse = timedelta(seconds=settings.incidents.relapse_window_s)
        cutoff = datetime.now(UTC) - relapse
        restored = [
            i
            for i in await store.recent_incidents(limit=5000, cluster=settings.kube.cluster_name)
            if i.resolved_at is None or i.resolved_at >= cutoff
        ]
        book.load(restored)
        metrics = Metrics()
        client = slack or slack_client(settings)
        identity = settings.ha.identity or f"{socket.gethostname()}-{os.getpid()}"
        outbox = OutboxWorker(store, client, worker_id=identity)
        bot_ref: list[Bot] = []

        def observe(failure: PullFailure, diagnosis: Diagnosis, elapsed_ms: float) -> None:
            metrics.diagnosis_seconds.observe(elapsed_ms / 1000)

        pipeline = Pipeline(
            book=book,
            store=store,
            inspector=inspector,
            prober=prober,
            wake_outbox=lambda: bot_ref[0].outbox_wake() if bot_ref else None,
            on_diagnosis=observe,
        )
        bot = cls(settings, store, api, prober, inspector, book, pipeline, outbox, client, metrics, identity)
        bot_ref.append(bot)
        log.info("bot ready: cluster %s, %d incidents restored", settings.kube.cluster_name, len(restored))
        return bot

    def outbox_wake(self) -> None:
        self.outbox.notify()

    # ---- the leader's duties ----

    async def lead(self) -> None:
        """Watch, diagnose and keep incidents; until cancelled (leadership lost or shutdown)."""
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
                tg.create_task(self.pipeline.run_ticker())
        finally:
            self.metrics.leader.set(0)

    async def _reconcile_when_synced(self, watcher: PodWatcher) -> None:
        await watcher.synced.wait()
        await self.pipeline.reconcile()

    async def run_leader_elected(self) -> None:
        """Lead while holding the Lease; stop leading the moment it is lost; try again."""
        if not self.settings.ha.enabled:
            self.is_leader.set()
            await self.lead()
            return
        ha = self.settings.ha
        elector = LeaderElector(
            self.api,
            namespace=ha.lease_namespace,
            name=f"{ha.lease_name}-{self.settings.kube.cluster_name}",
            identity=self.identity,
            lease_duration_s=ha.lease_duration_s,
            renew_s=ha.renew_s,
        )
        election = asyncio.create_task(elector.run())
        try:
            while True:
                await elector.is_leader.wait()
                self.is_leader.set()
                log.info("leading as %s", self.identity)
                duties = asyncio.create_task(self.lead())
                lost = asyncio.create_task(elector.lost.wait())
                done, _ = await asyncio.wait({duties, lost}, return_when=asyncio.FIRST_COMPLETED)
                self.is_leader.clear()
                for t in (duties, lost):
                    t.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await t
                if duties in done and duties.exception() is not None:
                    raise duties.exception()  # type: ignore[misc]
                log.warning("leadership lost; watcher stopped")
        finally:
            election.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await election

    # ---- health ----

    def health(self) -> web.Application:
        async def db() -> bool:
            return await self.store.ping()

        async def synced() -> bool:
            if not self.is_leader.is_set():
                return True  # a follower is ready when it can answer Slack
            return self.watcher is not None and self.watcher.synced.is_set()

        return health_app(self.metrics, {"database": db, "watch_synced": synced})

    async def close(self) -> None:
        await self.prober.close()
        await self.api.close()
        await self.store.close()


async def serve(app: web.Application, port: int) -> Callable[[], Awaitable[None]]:
    """Start an aiohttp app on 0.0.0.0:port; return its cleanup."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", port).start()  # noqa: S104 (probes and Prometheus reach the pod IP)
    return runner.cleanup
