"""The end-to-end harness: the real bot (run_bot) on the simulated API server, simulated registries, the fake Slack
Web API and SQLite, with the kubelet played here (pod statuses and events with containerd's texts).

Used by tests/test_e2e_pipeline.py, tests/test_app.py, tests/test_ha.py, tests/test_multicluster.py and
tests/test_observability.py; each defines its own thin `world` fixture over `world_for`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from bot.composition import Bot
from bot.model import Incident
from bot.registry.netguard import LOOPBACK_NETWORKS
from bot.settings import HASettings, IncidentSettings, KubeSettings, RegistrySettings, Settings, SlackSettings
from bot.store.store import Store
from testkit.inprocess import BotInProcess
from testkit.kube import objects as k8s
from testkit.kube.apiserver import SimCluster
from testkit.oci.simregistry import SimRegistry
from testkit.slack.web_api import FakeSlackApi, Thread

TOKEN = "xoxb-test-not-a-real-token"
RBAC_NAMESPACE = "default"  # the release namespace: where the bots' Lease lives (HASettings.lease_namespace)
RBAC_CLUSTERS = (
    "e2e",
    "prod-eu",
    "east",
    "west",
)  # cluster names the tests give the bot; the Lease Role names <lease>-<cluster>
ACTION_NAMESPACES = ["default", "shop", "billing", "web", "data"]
FULLNAME = "ipd-imagepull-doctor"  # the chart's ServiceAccount for release "ipd" (tests/deploy/test_chart.py)


@functools.cache
def _chart_rbac_json() -> str:
    from tests.deploy.test_chart import manifests, render_helm

    kinds = ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")
    objects: list[dict[str, Any]] = []
    for cluster in RBAC_CLUSTERS:
        values = {
            "cluster": {"name": cluster},
            "existingSecret": {"name": "imagepull-doctor-credentials"},
            "leaderElection": {"leaseName": HASettings().lease_name},
            "secrets": {"readClusterWide": True},  # KubeSettings.secret_namespaces is empty: every namespace
            "actions": {
                "deletePod": True,
                "recreateSecret": True,
                "linkSecret": True,
                "namespaces": ACTION_NAMESPACES,
            },
        }
        rendered = manifests(render_helm(values, namespace=RBAC_NAMESPACE))
        objects.extend(obj for obj in rendered if obj["kind"] in kinds)
    return json.dumps(objects)


def chart_rbac() -> list[dict[str, Any]]:
    """The Helm chart's RBAC objects as installed in the release namespace "default" for the tests' cluster names."""
    loaded: list[dict[str, Any]] = json.loads(_chart_rbac_json())
    return loaded


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


# Every channel the e2e and multi-cluster tests route to; the fake knows them, with the bot a member.
E2E_CHANNELS = ("#alerts", "#billing-oncall", "#web-team", "#elsewhere", "#east-alerts", "#west-alerts")


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
        for name in E2E_CHANNELS:
            if slack.channel(name) is None:
                slack.add_channel(name)
        cluster.put(k8s.node("node-a", arch="amd64"))
        cluster.put(k8s.namespace("default"))
        await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
        # The bot runs as the chart's ServiceAccount, held to the chart's own Roles (issue 13, point 9).
        cluster.load_rbac(chart_rbac())
        token = cluster.service_account_token(RBAC_NAMESPACE, FULLNAME)
        kubeconfig = cluster.write_kubeconfig(workdir / "kubeconfig", token=token)
        yield World(cluster, registry, host, hub, hub_host, slack, kubeconfig, Kubelet(cluster))
        refused = sorted(
            {f"{a.verb} {a.resource} in {a.namespace or '*'}" for _u, a, ok in cluster.authorizations if not ok}
        )
        assert not refused, f"the bot made calls the chart's RBAC does not grant: {refused}"


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
        metrics_port=0,
        slack=SlackSettings(
            bot_token=SecretStr(TOKEN),
            base_url=world.slack.url,
            default_channel=default_channel,
            routes=routes or {},
        ),
        kube=KubeSettings(kubeconfig=world.kubeconfig, cluster_name=cluster, exclude_namespaces=["kube-system"]),
        registry=RegistrySettings(
            insecure_registries=[world.host, world.hub_host],
            probe_budget_s=3.0,
            allow_networks=list(LOOPBACK_NETWORKS),
        ),
        incidents=IncidentSettings(storm_window_s=1.0, update_interval_s=0.3, resolve_grace_s=1.0),
        ha=HASettings(enabled=ha, lease_namespace="default", lease_duration_s=3.0, renew_s=0.5, identity=identity),
    )


@contextlib.asynccontextmanager
async def running(settings: Settings, *, slack_pacing: bool = False) -> AsyncIterator[Bot]:
    """The bot run as production runs it (`bot.runtime.run_bot`), in this process; stopped and closed on exit."""
    if not slack_pacing:
        settings.outbox.rate_per_channel = None
    runner = BotInProcess(settings)
    await runner.start()
    try:
        yield runner.bot
    finally:
        await runner.stop()


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


def holder(world: World, cluster: str) -> str | None:
    """Who holds this cluster's Lease on the simulated API server."""
    lease = world.cluster.get("Lease", "default", f"imagepull-doctor-{cluster}")
    return None if lease is None else lease.get("spec", {}).get("holderIdentity")


def parents_per_incident(world: World) -> Counter[str]:
    """How many top-level messages each incident key has in the fake Slack."""
    return Counter({key: len(threads) for key, threads in world.threads_by_incident().items()})


async def outbox_idle(store: Store) -> bool:
    return (await store.outbox_counts()).get("pending", 0) == 0
