"""End to end: the real Bot (bot.app) on the simulated API server, simulated registries, the fake Slack Web API and
SQLite. Only the kubelet is played here (pod statuses and events with containerd's texts).

The harness (`World`, `Kubelet`, `bot_settings`, `running`, `until`) is also used by tests/test_ha.py,
tests/test_multicluster.py and tests/test_observability.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from bot.app import Bot
from bot.kube.sim import objects as k8s
from bot.kube.sim.server import SimCluster
from bot.model import Cause, Incident, IncidentScope, IncidentStatus
from bot.registry.sim import SimRegistry
from bot.settings import HASettings, IncidentSettings, KubeSettings, RegistrySettings, Settings, SlackSettings
from bot.slack.fake_api import FakeSlackApi, Thread

TOKEN = "xoxb-test-not-a-real-token"

# ---- harness ----


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 15.0, what: str = "condition") -> None:
    """Poll `check` until true, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout}s")
        await asyncio.sleep(0.1)


def not_found(image: str) -> str:
    """containerd's message for a tag the registry does not have."""
    return k8s.pull_error(image, f'failed to resolve reference "{image}": {image}: not found')


def too_many_requests(image: str, host: str) -> str:
    """containerd's message for a registry answering 429."""
    tag = image.rsplit(":", 1)[1]
    tail = f"pulling from host {host} failed with status code [manifests {tag}]: 429 Too Many Requests"
    return k8s.pull_error(image, f'failed to resolve reference "{image}": {tail}')


@dataclass
class Kubelet:
    """Plays kubelet on a simulated cluster: workloads whose pods fail to pull, start, or fail again."""

    cluster: SimCluster
    owners: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    pods: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    images: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)  # image, error message

    def workload(self, namespace: str, name: str, image: str, message: str, replicas: int = 1) -> None:
        """A Deployment whose pods wait on a failed pull of `image` with `message`."""
        self.cluster.put(k8s.namespace(namespace))
        self.cluster.put(k8s.service_account("default", namespace))
        deploy = k8s.deployment(name, namespace, image, replicas)
        rs = k8s.replicaset(deploy)
        self.cluster.put(deploy)
        self.cluster.put(rs)
        self.owners[(namespace, name)] = rs
        self.images[(namespace, name)] = (image, message)
        self.pods[(namespace, name)] = []
        for _ in range(replicas):
            self.add_pod(namespace, name)

    def add_pod(self, namespace: str, name: str) -> str:
        """One more failing pod of the workload; returns its name."""
        rs = self.owners[(namespace, name)]
        _, message = self.images[(namespace, name)]
        index = len(self.pods[(namespace, name)])
        pod = self.cluster.put(k8s.pod_for(rs, index, waiting={name: ("ErrImagePull", message)}, node_name="node-a"))
        self.cluster.put(k8s.failed_pull_event(pod, name, message))
        self.pods[(namespace, name)].append(pod["metadata"]["name"])
        return str(pod["metadata"]["name"])

    def start(self, namespace: str, name: str) -> None:
        """Every pod of the workload pulls its image and runs."""
        for pod_name in self.pods[(namespace, name)]:
            current = self.cluster.get("Pod", namespace, pod_name)
            if current is not None:
                self.cluster.put(k8s.set_running(current, name))

    def fail(self, namespace: str, name: str) -> None:
        """Every pod of the workload fails to pull again (a relapse)."""
        _, message = self.images[(namespace, name)]
        for pod_name in self.pods[(namespace, name)]:
            current = self.cluster.get("Pod", namespace, pod_name)
            if current is not None:
                pod = self.cluster.put(k8s.set_waiting(current, name, "ErrImagePull", message))
                self.cluster.put(k8s.failed_pull_event(pod, name, message))


@dataclass
class World:
    """A simulated cluster, a private registry, a rate-limited registry and a fake Slack."""

    cluster: SimCluster
    registry: SimRegistry
    host: str
    hub: SimRegistry
    hub_host: str
    slack: FakeSlackApi
    kubeconfig: Path
    kubelet: Kubelet

    def threads_by_incident(self, channel: str | None = None) -> dict[str, list[Thread]]:
        """The fake's threads grouped by the incident key in their parent's metadata."""
        out: dict[str, list[Thread]] = {}
        for t in self.slack.threads(channel):
            meta = t.parent.metadata or {}
            key = str((meta.get("event_payload") or {}).get("incident_key", ""))
            out.setdefault(key, []).append(t)
        return out


@contextlib.asynccontextmanager
async def world_for(workdir: Path, slack: FakeSlackApi | None = None) -> AsyncIterator[World]:
    """Start a simulated cluster and two registries (and a fake Slack unless one is given)."""
    async with contextlib.AsyncExitStack() as stack:
        cluster = SimCluster(bookmark_interval_s=0.5)
        await cluster.start()
        stack.push_async_callback(cluster.stop)
        registry, hub = SimRegistry(), SimRegistry()
        host, hub_host = await registry.start(), await hub.start()
        stack.push_async_callback(registry.stop)
        stack.push_async_callback(hub.stop)
        for tag in ("1.4.0", "1.5.0"):
            registry.add_image("shop/api", tag)
        registry.add_image("shop/cart", "2.0.0")
        hub.set_fault("rate_limit")
        if slack is None:
            slack = FakeSlackApi()
            await slack.start()
            stack.push_async_callback(slack.close)
        cluster.put(k8s.node("node-a", arch="amd64"))
        cluster.put(k8s.namespace("default"))
        await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
        kubeconfig = cluster.write_kubeconfig(workdir / "kubeconfig")
        yield World(cluster, registry, host, hub, hub_host, slack, kubeconfig, Kubelet(cluster))


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    """One simulated world per test."""
    async with world_for(tmp_path / "world") as w:
        yield w


def bot_settings(
    world: World,
    database_url: str,
    *,
    cluster: str = "e2e",
    identity: str = "bot-a",
    ha: bool = False,
    routes: dict[str, str] | None = None,
    default_channel: str = "#alerts",
) -> Settings:
    """Settings of a bot on `world` with fast timings."""
    return Settings(
        database_url=database_url,
        slack=SlackSettings(
            bot_token=SecretStr(TOKEN),
            base_url=world.slack.url,
            default_channel=default_channel,
            routes=routes or {},
        ),
        kube=KubeSettings(kubeconfig=world.kubeconfig, cluster_name=cluster, exclude_namespaces=["kube-system"]),
        registry=RegistrySettings(insecure_registries=[world.host, world.hub_host], probe_budget_s=3.0),
        incidents=IncidentSettings(storm_window_s=1.0, update_interval_s=0.3, resolve_grace_s=1.0),
        ha=HASettings(enabled=ha, lease_namespace="default", lease_duration_s=3.0, renew_s=0.5, identity=identity),
    )


@contextlib.asynccontextmanager
async def running(settings: Settings, *, slack_pacing: bool = False) -> AsyncIterator[Bot]:
    """A created bot with its outbox worker and leader-elected duties running; closed on exit."""
    bot = await Bot.create(settings)
    if not slack_pacing:
        bot.outbox.pacer.rate = None
    tasks = [
        asyncio.create_task(bot.outbox.run(), name=f"outbox-{bot.identity}"),
        asyncio.create_task(bot.run_leader_elected(), name=f"leader-{bot.identity}"),
    ]
    try:
        yield bot
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await bot.close()


async def settled(bot: Bot) -> bool:
    """Every open incident has a thread and no Slack write is pending."""
    counts = await bot.store.outbox_counts()
    incidents = await bot.store.open_incidents(bot.cluster)
    return counts.get("pending", 0) == 0 and all(i.thread_ts for i in incidents)


async def incident_of(bot: Bot, workload: str) -> Incident | None:
    """The most recent incident of a workload (by name) in the bot's cluster."""
    for inc in await bot.store.recent_incidents(limit=100, cluster=bot.cluster):
        if inc.workload.name == workload:
            return inc
    return None


def replies_of(world: World, inc: Incident) -> list[str]:
    """The texts of the replies in an incident's thread."""
    threads = world.threads_by_incident().get(inc.key, [])
    assert len(threads) == 1, f"incident {inc.key} has {len(threads)} threads"
    return [m.text for m in threads[0].replies]


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A new SQLite file (the bot migrates it)."""
    return f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"


# ---- tests ----


async def test_one_thread_per_incident_then_updates_resolution_and_relapse(world: World, sqlite_url: str) -> None:
    api = f"{world.host}/shop/api:v1.5.0"
    world.kubelet.workload("shop", "api", api, not_found(api), replicas=2)
    async with running(bot_settings(world, sqlite_url)) as bot:
        await until(lambda: _has_thread(bot, "api"), what="api thread posted")
        await until(lambda: settled(bot), what="outbox drained")
        inc = await incident_of(bot, "api")
        assert inc is not None and inc.cause is Cause.TAG_NOT_FOUND
        [thread] = world.threads_by_incident()[inc.key]
        assert thread.channel == "#alerts" and len(thread.replies) == 1  # the diagnosis
        assert "1.5.0" in thread.replies[0].text  # the nearest existing tag is suggested

        # more pods of the same workload: the parent is edited, no reply per pod
        edits = thread.parent.edits
        for _ in range(3):
            world.kubelet.add_pod("shop", "api")

        async def parent_counts_five() -> bool:
            current = await incident_of(bot, "api")
            return current is not None and current.pods_seen == 5 and thread.parent.edits > edits

        await until(parent_counts_five, what="parent updated for 5 pods")
        await until(lambda: settled(bot), what="outbox drained")
        assert len(world.threads_by_incident()[inc.key][0].replies) == 1
        assert len(world.slack.threads()) == 1

        # the tag is pushed, the containers start: parent says resolved, one closing reply
        world.kubelet.start("shop", "api")

        async def resolved() -> bool:
            current = await incident_of(bot, "api")
            return current is not None and current.status is IncidentStatus.RESOLVED and await settled(bot)

        await until(resolved, what="incident resolved")
        replies = replies_of(world, inc)
        assert len(replies) == 2 and "Resolved" in replies[1]
        assert "resolved" in thread.parent.text.lower()

        # relapse within the window: the SAME thread reopens
        world.kubelet.fail("shop", "api")

        async def reopened() -> bool:
            current = await incident_of(bot, "api")
            return current is not None and current.status is IncidentStatus.OPEN and current.reopened == 1

        await until(reopened, what="incident reopened")
        await until(lambda: settled(bot), what="outbox drained")
        again = await incident_of(bot, "api")
        assert again is not None and again.key == inc.key and again.thread_ts == inc.thread_ts
        assert len(world.slack.threads()) == 1
        assert len(replies_of(world, inc)) == 3
        assert "resolved" not in thread.parent.text.lower()


async def _has_thread(bot: Bot, workload: str) -> bool:
    inc = await incident_of(bot, workload)
    return inc is not None and inc.thread_ts is not None


async def test_registry_storm_gives_one_registry_thread(world: World, sqlite_url: str) -> None:
    for ns, name in (("cache", "redis"), ("data", "postgres"), ("search", "elastic")):
        image = f"{world.hub_host}/library/{name}:7"
        world.kubelet.workload(ns, name, image, too_many_requests(image, world.hub_host))
    async with running(bot_settings(world, sqlite_url)) as bot:

        async def one_registry_thread() -> bool:
            incidents = await bot.store.open_incidents(bot.cluster)
            return len(incidents) == 1 and incidents[0].thread_ts is not None and await settled(bot)

        await until(one_registry_thread, what="one registry incident posted")
        [inc] = await bot.store.open_incidents(bot.cluster)
        assert inc.scope is IncidentScope.REGISTRY and inc.cause is Cause.RATE_LIMITED
        assert sorted(inc.affected) == [
            "cache/deployment/redis",
            "data/deployment/postgres",
            "search/deployment/elastic",
        ]
        assert len(world.slack.threads()) == 1
        assert world.hub_host in world.slack.threads()[0].parent.text


async def test_channel_routing_per_cluster_and_namespace(world: World, sqlite_url: str) -> None:
    for ns in ("billing", "web", "shop"):
        image = f"{world.host}/{ns}/app:9.9.9"
        world.kubelet.workload(ns, "app", image, not_found(image))
    routes = {"e2e/billing": "#billing-oncall", "*/web": "#web-team", "other/*": "#elsewhere"}
    async with running(bot_settings(world, sqlite_url, routes=routes)) as bot:

        async def three_posted() -> bool:
            incidents = await bot.store.open_incidents(bot.cluster)
            return len(incidents) == 3 and await settled(bot)

        await until(three_posted, what="three incidents posted")
        channels = {i.namespace: i.channel for i in await bot.store.open_incidents(bot.cluster)}
        assert channels == {"billing": "#billing-oncall", "web": "#web-team", "shop": "#alerts"}
        posted = {t.channel for t in world.slack.threads()}
        assert posted == {"#billing-oncall", "#web-team", "#alerts"}
        assert all(len(ts) == 1 for ts in world.threads_by_incident().values())


async def test_restart_continues_threads_and_resolves_what_recovered_meanwhile(world: World, sqlite_url: str) -> None:
    api, cart = f"{world.host}/shop/api:v1.5.0", f"{world.host}/shop/cart:2.0.1"
    world.kubelet.workload("shop", "api", api, not_found(api))
    world.kubelet.workload("shop", "cart", cart, not_found(cart), replicas=2)
    settings = bot_settings(world, sqlite_url)
    async with running(settings) as bot:

        async def both_posted() -> bool:
            incidents = await bot.store.open_incidents(bot.cluster)
            return len(incidents) == 2 and await settled(bot)

        await until(both_posted, what="two incidents posted")
        before = {i.workload.name: i for i in await bot.store.open_incidents(bot.cluster)}
    assert len(world.slack.threads()) == 2

    world.kubelet.start("shop", "cart")  # fixed while no bot was running
    posts_before = len(world.slack.calls_to("chat.postMessage"))

    async with running(settings) as bot:

        async def cart_resolved() -> bool:
            inc = await incident_of(bot, "cart")
            return inc is not None and inc.status is IncidentStatus.RESOLVED and await settled(bot)

        await until(cart_resolved, what="cart resolved after the restart")
        await asyncio.sleep(1.5)  # a few ticks: nothing else may be posted
        await until(lambda: settled(bot), what="outbox drained")
        api_now = await incident_of(bot, "api")
        assert api_now is not None and api_now.status is IncidentStatus.OPEN
        assert api_now.key == before["api"].key and api_now.thread_ts == before["api"].thread_ts
    assert len(world.slack.threads()) == 2  # no new thread for either incident
    cart_replies = replies_of(world, before["cart"])
    assert len(cart_replies) == 2 and "Resolved" in cart_replies[1]
    assert len(replies_of(world, before["api"])) == 1
    new_posts = world.slack.calls_to("chat.postMessage")[posts_before:]
    assert [c.payload.get("thread_ts") for c in new_posts] == [before["cart"].thread_ts]
