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
import logging
import os
import random
import socket
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from aiohttp import web
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.aio import cancel_and_wait
from bot.diagnoser import Diagnoser
from bot.incidents import BookSettings, IncidentBook
from bot.kube.client import credentials_ready, load_api_client
from bot.kube.inspect import Inspector
from bot.kube.lease import LeaderElector
from bot.kube.watcher import PodWatcher
from bot.logging_setup import incident_id
from bot.model import Diagnosis, Incident, IncidentScope, OutboxMessage, PullFailure
from bot.observability import Check, MeteredProber, MeteredWebClient, Metrics, health_app
from bot.pipeline import Pipeline
from bot.prevention.scanner import LatentScanner, ScanReport, ScanSettings
from bot.prevention.threads import plan_threads
from bot.registry.probe import RegistryProber
from bot.reporting import build_report, next_weekly, render_report, weekly_post
from bot.settings import Settings
from bot.slack.channels import ChannelDirectory
from bot.slack.outbox import OutboxWorker
from bot.slack.render import SlackRenderer
from bot.store.migrate import upgrade
from bot.store.store import Store

log = logging.getLogger(__name__)


def book_settings(settings: Settings, channels: ChannelDirectory | None = None) -> BookSettings:
    """The incident book's settings from the bot's; channels resolved by `channels` are given as IDs."""
    inc = settings.incidents
    as_id = channels.id_of if channels is not None else (lambda ref: ref)
    return BookSettings(
        cluster=settings.kube.cluster_name,
        default_channel=as_id(settings.slack.default_channel),
        routes={pattern: as_id(channel) for pattern, channel in settings.slack.routes.items()},
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

    async def reserve_slack_slot(self, bucket: str, interval_s: float, burst: int) -> float:
        return await self._store.reserve_slack_slot(bucket, interval_s, burst)


async def check_channels(settings: Settings, channels: ChannelDirectory) -> None:
    """Resolve the default and routed channels to IDs and report the unusable ones (logged, and in /readyz).

    Without a bot token there is nothing to check; a Slack that does not answer leaves the report unchecked (the
    outbox then resolves names when it first posts)."""
    if not settings.slack.configured:
        return
    configured = [settings.slack.default_channel, *settings.slack.routes.values()]
    try:
        await asyncio.wait_for(channels.check(configured), 30)
    except (TimeoutError, OSError, aiohttp.ClientError) as exc:
        log.warning("Slack channels not checked at start-up: %s", type(exc).__name__)
    except SlackApiError as exc:
        log.warning("Slack channels not checked at start-up: %s", exc.response.get("error"))


async def restorable_incidents(settings: Settings, store: Store) -> list[Incident]:
    """This cluster's open incidents and those resolved inside the relapse window (what the book reloads)."""
    cutoff = datetime.now(UTC) - timedelta(seconds=settings.incidents.relapse_window_s)
    return [
        i
        for i in await store.recent_incidents(limit=5000, cluster=settings.kube.cluster_name)
        if (i.resolved_at is None or i.resolved_at >= cutoff)
        and i.scope in (IncidentScope.WORKLOAD, IncidentScope.REGISTRY)
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
    channels: ChannelDirectory | None = None
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
        metrics = Metrics()
        client = MeteredWebClient.like(slack or slack_client(settings), metrics)
        channels = ChannelDirectory(client)
        await check_channels(settings, channels)
        book = IncidentBook(book_settings(settings, channels), SlackRenderer())
        book.load(await restorable_incidents(settings, store))
        metrics.reset_open(book.open_incidents())
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
            channels=channels,
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
            # A diagnosis is as fresh as the registry probe it used: re-verifying a workload before the prober's
            # cache expires only repeats the cluster reads, once per workload for every minute a storm lasts.
            diagnosis_ttl_s=settings.registry.cache_ttl_s,
        )
        bot = cls(settings, store, api, prober, inspector, book, pipeline, outbox, client, metrics, identity, channels)
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
        for error, count in list(self.outbox.permanent.items()):
            self.metrics.sync_total(self.metrics.slack_permanent.labels(error=error), "outbox", count)
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
            workers=self.settings.kube.diagnosis_workers,
            api_timeout_s=self.settings.kube.api_timeout_s,
            silence_s=self.settings.kube.watch_silence_s,
        )
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.watcher.run())
                tg.create_task(self._reconcile_when_synced(self.watcher))
                tg.create_task(self.pipeline.run_ticker(self.settings.incidents.tick_interval_s))
                if self.settings.prevention.enabled:
                    tg.create_task(self._scan_on_schedule())
                if self.settings.report.weekly:
                    tg.create_task(self._report_on_schedule())
        finally:
            self.metrics.leader.set(0)
            self._copy_counters()

    async def _scan_on_schedule(self) -> None:
        """The latent-failure scan, every `prevention.interval_s` (jittered), while this replica leads."""
        p = self.settings.prevention
        delay = p.first_after_s
        while True:
            await asyncio.sleep(max(0.0, delay))
            try:
                await self.scan_and_post()
            except Exception:
                log.exception("latent-failure scan failed; trying again at the next interval")
            delay = p.interval_s + random.uniform(-p.jitter_s, p.jitter_s)

    async def _report_on_schedule(self) -> None:
        """Post the weekly report to every route channel at `report.weekday` `report.hour_utc`, while leading."""
        r = self.settings.report
        while True:
            now = datetime.now(UTC)
            await asyncio.sleep((next_weekly(now, r.weekday, r.hour_utc) - now).total_seconds())
            try:
                await self.post_weekly_report()
            except Exception:
                log.exception("weekly report failed; trying again next week")

    async def post_weekly_report(self, now: datetime | None = None) -> int:
        """The last 7 days' report to each route channel, once per ISO week; returns how many were queued."""
        now = now or datetime.now(UTC)
        incidents = await self.store.recent_incidents(limit=20_000, cluster=self.cluster)
        audit = await self.store.list_audit(since=now - timedelta(days=7), limit=100_000)
        text = render_report(build_report(incidents, audit, now=now, days=7), self.cluster)
        routing = book_settings(self.settings, self.channels)  # channel IDs where start-up resolved them
        queued = 0
        for channel in sorted({routing.default_channel, *routing.routes.values()}):
            row, outbox = weekly_post(self.cluster, channel, text, now)
            if await self.store.get_incident(row.key) is None:
                await self.store.save_incident(row, outbox)
                queued += 1
        if queued:
            self.outbox_wake()
        return queued

    async def scan_and_post(self) -> ScanReport:
        """Scan now; open, edit or close each channel's "at risk" thread through the outbox."""
        p = self.settings.prevention
        scanner = LatentScanner(
            self.api,
            self.prober,
            ScanSettings(
                max_per_registry_per_minute=p.max_per_registry_per_minute,
                warn_before=timedelta(seconds=p.warn_before_s),
            ),
            exclude_namespaces=self.settings.kube.exclude_namespaces,
        )
        report = await scanner.scan()
        self.metrics.set_findings(report.by_risk())
        routing = book_settings(self.settings, self.channels)  # channel IDs where start-up resolved them
        changes = plan_threads(
            cluster=self.cluster,
            findings=report.findings,
            open_incidents=await self.store.open_incidents(self.cluster),
            routes=routing.routes,
            default_channel=routing.default_channel,
            now=datetime.now(UTC),
        )
        for incident, outbox in changes:
            await self.store.save_incident(incident, outbox)
        if changes:
            self.outbox_wake()
        log.info(
            "latent-failure scan: %d workloads, %d checks, findings %s, %d thread changes in %.1fs",
            report.workloads,
            report.checks,
            report.by_risk(),
            len(changes),
            report.seconds,
        )
        return report

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
                await cancel_and_wait(duties, lost)
                self.metrics.reset_open(())
                if duties in done and not duties.cancelled() and duties.exception() is not None:
                    raise duties.exception()  # type: ignore[misc]
                if election in done:
                    election.result()  # the election ended by itself: surface why
                    return
                log.warning("leadership lost; watcher stopped")
        finally:
            self.is_leader.clear()
            await cancel_and_wait(election)

    # ---- health ----

    def health(self) -> web.Application:
        """`/metrics`, `/healthz`, `/readyz` (database answers; when this replica leads: the watch has synced and no
        stream has been silent past its deadline)."""

        async def db() -> bool:
            return await self.store.ping()

        async def synced() -> bool:
            if not self.is_leader.is_set():
                return True  # a follower is ready when it can answer Slack
            return self.watcher is not None and self.watcher.synced.is_set()

        async def streams() -> bool:
            if not self.is_leader.is_set() or self.watcher is None:
                return True
            stuck = self.watcher.stuck_streams()
            if stuck:
                log.warning("readyz: %s stream(s) silent past the deadline: %s", self.cluster, ", ".join(stuck))
            return not stuck

        async def slack_channels() -> bool:
            return self.channels is None or not self.settings.slack.configured or self.channels.report.ok

        def details() -> dict[str, object]:
            report = self.channels.report if self.channels is not None else None
            if report is None:
                return {}
            return {
                "slack_channels": {
                    "checked": report.checked,
                    "ids": dict(report.ids),
                    "unusable": {ref: p.line() for ref, p in report.problems.items()},
                }
            }

        async def kube_credentials() -> bool:
            return await credentials_ready(self.api)  # False while the exec plugin / token file gives nothing usable

        checks: dict[str, Check] = {
            "database": db,
            "watch_synced": synced,
            "watch_streams": streams,
            "slack_channels": slack_channels,
            "kube_credentials": kube_credentials,
        }
        return health_app(self.metrics, checks, details)

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
            await cancel_and_wait(waiter)
    if election in done and waiter not in done:
        election.result()
        raise RuntimeError("leader election ended")
