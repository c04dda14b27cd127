"""`imagepull-doctor demo`: the real bot against a built-in simulated cluster, registry and Slack; exits by itself.

What runs is the production bot (bot.runtime.run_bot): the real kubernetes_asyncio client over HTTP to the simulated
API server, the real registry probe over HTTP to simulated OCI registries, SQLite through SQLAlchemy and Alembic, the
outbox worker through the real slack_sdk client to a fake Slack Web API (or to real Slack when a bot token is set).
Only the "kubelet" is played by this module: it writes pod statuses and events with the exact texts containerd and
kubelet produce for each situation (copied from tests/corpus/containerd.jsonl, which real pulls produced).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
from pydantic import SecretStr

from bot.model import AuditEntry, IncidentStatus
from bot.settings import (
    AccessSettings,
    AuditSettings,
    HASettings,
    IncidentSettings,
    KubeSettings,
    RegistrySettings,
    Settings,
    SlackSettings,
)
from bot.slack.bolt_app import EVENTS_PATH
from bot.slack.signing import signed_headers
from testkit.inprocess import BotInProcess
from testkit.kube import objects as k8s
from testkit.kube.apiserver import SimCluster
from testkit.oci.docker_registry import free_port
from testkit.oci.simregistry import SimRegistry
from testkit.slack.terminal import render_threads
from testkit.slack.web_api import FakeSlackApi

log = logging.getLogger(__name__)

DNS_HOST = "registry.corp.invalid"
SIGNING_SECRET = "demo-signing-secret-not-real"
DEV, LEAD = "U0DEVALICE", "U0LEADBOB"  # a developer asks, the team lead approves (two-person rule)
REGISTRY_USER, REGISTRY_PASSWORD = "ci-bot", "demo-password-not-real"


@dataclass(frozen=True, slots=True)
class Workload:
    namespace: str
    name: str
    image: str
    replicas: int
    error: str | None  # containerd's text after `failed to pull and unpack image "<ref>": `; None: healthy


def _resolve_error(ref: str, tail: str) -> str:
    return f'failed to resolve reference "{ref}": {tail}'


def scenario(private_host: str, hub_host: str) -> list[Workload]:
    """Four failing situations and one healthy workload."""
    api = f"{private_host}/shop/api:v1.5.0"
    ledger = f"{private_host}/billing/ledger:2.3.1"
    worker = f"{DNS_HOST}/platform/worker:3.1"
    out = [
        Workload("shop", "api", api, 3, _resolve_error(api, f"{api}: not found")),
        Workload(
            "billing",
            "ledger",
            ledger,
            2,
            _resolve_error(
                ledger, f"pulling from host {private_host} failed with status code [manifests 2.3.1]: 401 Unauthorized"
            ),
        ),
        Workload(
            "batch",
            "worker",
            worker,
            1,
            _resolve_error(
                worker,
                f'failed to do request: Head "https://{DNS_HOST}/v2/platform/worker/manifests/3.1": '
                f"dial tcp: lookup {DNS_HOST} on 10.96.0.10:53: no such host",
            ),
        ),
        Workload("web", "frontend", f"{private_host}/web/frontend:2.0.1", 2, None),
    ]
    for ns, name, repo in (
        ("cache", "redis", "library/redis:7.2"),
        ("data", "postgres", "library/postgres:16"),
        ("search", "elastic", "library/elasticsearch:8.11"),
    ):
        image = f"{hub_host}/{repo}"
        tag = repo.rsplit(":", 1)[1]
        tail = f"pulling from host {hub_host} failed with status code [manifests {tag}]: 429 Too Many Requests"
        out.append(Workload(ns, name, image, 1, _resolve_error(image, tail)))
    return out


class DemoKubelet:
    """Plays kubelet on the simulated cluster: creates the workloads' objects and their pull-failure statuses."""

    def __init__(self, cluster: SimCluster) -> None:
        self.cluster = cluster
        self.pods: dict[tuple[str, str], list[dict[str, object]]] = {}

    def seed(self, workloads: list[Workload]) -> None:
        self.cluster.put(k8s.node("node-a", arch="amd64"))
        self.cluster.put(k8s.node("node-b", arch="amd64"))
        for ns in sorted({"default", *(w.namespace for w in workloads)}):
            self.cluster.put(k8s.namespace(ns))
            self.cluster.put(k8s.service_account("default", ns))
        for w in workloads:
            self.start(w)

    def start(self, w: Workload) -> None:
        deploy = k8s.deployment(w.name, w.namespace, w.image, w.replicas)
        rs = k8s.replicaset(deploy)
        self.cluster.put(deploy)
        self.cluster.put(rs)
        pods = []
        for i in range(w.replicas):
            node = "node-a" if i % 2 == 0 else "node-b"
            if w.error is None:
                pod = k8s.set_running(k8s.pod_for(rs, i, node_name=node), w.name)
            else:
                message = k8s.pull_error(w.image, w.error)
                # The ServiceAccount admission plugin copies the SA's pull secrets into a pod that lists none.
                sa = self.cluster.get("ServiceAccount", w.namespace, "default") or {}
                secrets = [str(ref["name"]) for ref in sa.get("imagePullSecrets") or () if ref.get("name")]
                pod = k8s.pod_for(
                    rs, i, waiting={w.name: ("ErrImagePull", message)}, node_name=node, image_pull_secrets=secrets
                )
            pod = self.cluster.put(pod)
            pods.append(pod)
            if w.error is not None:
                self.cluster.put(k8s.failed_pull_event(pod, w.name, k8s.pull_error(w.image, w.error)))
        self.pods[(w.namespace, w.name)] = pods

    def back_off(self) -> None:
        """ImagePullBackOff after the first failure, as kubelet reports it."""
        for (_, name), pods in self.pods.items():
            for pod in pods:
                current = self.cluster.get("Pod", pod["metadata"]["namespace"], pod["metadata"]["name"])  # type: ignore[index]
                if current is None:
                    continue
                statuses = current.get("status", {}).get("containerStatuses", [])
                if statuses and statuses[0].get("state", {}).get("waiting"):
                    image = statuses[0]["image"]
                    message = f'Back-off pulling image "{image}"'
                    self.cluster.put(k8s.set_waiting(current, name, "ImagePullBackOff", message))

    def retry_with_service_account(self, namespace: str, name: str) -> bool:
        """Kubelet's next pull attempt: succeeds once the ServiceAccount carries a pull secret that exists."""
        sa = self.cluster.get("ServiceAccount", namespace, "default") or {}
        names = [ref.get("name") for ref in sa.get("imagePullSecrets") or []]
        if not any(self.cluster.get("Secret", namespace, str(n)) for n in names):
            return False
        for pod in self.pods.get((namespace, name), []):
            current = self.cluster.get("Pod", namespace, pod["metadata"]["name"])  # type: ignore[index]
            if current is not None:
                self.cluster.put(k8s.set_running(current, name))
        return True

    def fix(self, namespace: str, name: str, image: str) -> None:
        """The team pushes the right tag: the rollout's new image pulls and the containers start."""
        for pod in self.pods.get((namespace, name), []):
            current = self.cluster.get("Pod", namespace, pod["metadata"]["name"])  # type: ignore[index]
            if current is None:
                continue
            self.cluster.put(k8s.set_running(k8s.set_image(current, name, image), name))


class ChatOps:
    """Slack users talking to the bot's real Bolt app over HTTP, with correctly signed (v0 HMAC) requests."""

    def __init__(self, url: str, channel: str, fake: FakeSlackApi | None = None) -> None:
        self.url = url
        self.fake = fake
        # Slack sends the channel's ID, and a response_url and trigger_id of its own (the fake mints both).
        self.channel = fake.channel_id(channel) if fake is not None else channel

    def _response_url(self, user: str) -> str:
        return self.fake.response_url(self.channel, user) if self.fake else "https://hooks.slack.invalid/demo"

    def _trigger_id(self) -> str:
        return self.fake.trigger_id() if self.fake else "1.2.3"

    async def _post(self, body: str) -> int:
        headers = signed_headers(body, SIGNING_SECRET)
        async with aiohttp.ClientSession() as session, session.post(self.url, data=body, headers=headers) as r:
            return r.status

    async def command(self, user: str, text: str) -> int:
        """`/imagepull <text>` typed by `user`."""
        print(f"demo: {user} types  /imagepull {text}")
        fields = {
            "team_id": "TDEMO",
            "channel_id": self.channel,
            "user_id": user,
            "user_name": user.lower(),
            "command": "/imagepull",
            "text": text,
            "trigger_id": self._trigger_id(),
            "api_app_id": "ADEMO",
            "response_url": self._response_url(user),
        }
        return await self._post(urlencode(fields))

    async def click(self, user: str, action_id: str, value: dict[str, object]) -> int:
        """`user` clicks a button."""
        print(f"demo: {user} clicks {action_id.removeprefix('imagepull:')} {json.dumps(value)}")
        payload = {
            "type": "block_actions",
            "team": {"id": "TDEMO"},
            "user": {"id": user},
            "api_app_id": "ADEMO",
            "trigger_id": self._trigger_id(),
            "response_url": self._response_url(user),
            "channel": {"id": self.channel},
            "container": {"type": "message", "message_ts": "1.000001", "channel_id": self.channel},
            "actions": [
                {
                    "type": "button",
                    "action_id": action_id,
                    "block_id": "b",
                    "value": json.dumps(value),
                    "action_ts": "1",
                }
            ],
        }
        return await self._post(urlencode({"payload": json.dumps(payload)}))


async def _until(condition: Callable[[], Awaitable[bool]], deadline: float, step: float = 0.2) -> bool:
    while time.monotonic() < deadline:
        if await condition():
            return True
        await asyncio.sleep(step)
    return await condition()


DEMO_CHANNEL = "#imagepull-demo"


def demo_settings(base: Settings, workdir: Path, kubeconfig: Path, hosts: list[str], slack_url: str | None) -> Settings:
    """The bot's settings for the demo: SQLite in the work folder, the simulated cluster, fast timings."""
    slack = base.slack
    if slack_url is not None:
        slack = SlackSettings(
            bot_token=SecretStr("xoxb-demo-not-a-real-token"), base_url=slack_url, default_channel=DEMO_CHANNEL
        )
    slack = slack.model_copy(
        update={
            "signing_secret": SecretStr(SIGNING_SECRET),
            "mode": "http",
            "http_host": "127.0.0.1",
            "http_port": free_port(),
        }
    )
    return Settings(
        database_url=f"sqlite+aiosqlite:///{workdir / 'imagepull-doctor.db'}",
        log_level=base.log_level,
        metrics_port=0,
        slack=slack,
        kube=KubeSettings(kubeconfig=kubeconfig, cluster_name="demo", exclude_namespaces=["kube-system"]),
        registry=RegistrySettings(
            insecure_registries=hosts, probe_budget_s=3.0, allow_networks=["127.0.0.0/8", "::1/128"]
        ),
        incidents=IncidentSettings(storm_window_s=1.0, update_interval_s=1.0, resolve_grace_s=2.0),
        ha=HASettings(lease_namespace="default", lease_duration_s=6.0, renew_s=1.0, identity="demo-bot"),
        # Both may link secrets in billing; the two-person rule still stops the developer approving her own request.
        # The demo's own audit key (a real install takes it from a Kubernetes Secret): the chain is keyed and signed.
        audit=AuditSettings(hmac_key=SecretStr("imagepull-demo-audit-key-not-a-secret")),
        access=AccessSettings(
            grants={DEV: ["billing:link_secret"], LEAD: ["billing:link_secret", "billing:delete_pod"]},
            two_person_rule=True,
        ),
    )


async def run_demo(settings: Settings, *, seconds: float = 45.0, workdir: str = ".demo") -> int:
    """Run the scenario end to end; print each Slack thread; 0 when every expected thread was posted."""
    started = time.monotonic()
    deadline = started + seconds
    wd = await asyncio.to_thread(_fresh_workdir, Path(workdir))
    async with contextlib.AsyncExitStack() as stack:
        cluster = SimCluster(bookmark_interval_s=2.0, replace_deleted_pods=True)
        await cluster.start()
        stack.push_async_callback(cluster.stop)
        private, hub = SimRegistry(), SimRegistry()
        private_host, hub_host = await private.start(), await hub.start()
        stack.push_async_callback(private.stop)
        stack.push_async_callback(hub.stop)
        for tag in ("1.4.0", "1.4.1", "1.5.0", "1.5.1"):
            private.add_image("shop/api", tag)
        private.add_image("web/frontend", "2.0.1")
        private.add_image("billing/ledger", "2.3.1")
        private.require_auth("billing/*", REGISTRY_USER, REGISTRY_PASSWORD)
        hub.set_fault("rate_limit")
        hub.ratelimit = (100, 0)

        fake: FakeSlackApi | None = None
        if not settings.slack.configured:
            fake = FakeSlackApi()
            await fake.start()
            stack.push_async_callback(fake.close)
            fake.add_channel(DEMO_CHANNEL)
        kubeconfig = cluster.write_kubeconfig(wd / "kubeconfig")
        s = demo_settings(settings, wd, kubeconfig, [private_host, hub_host], fake.url if fake else None)
        workloads = scenario(private_host, hub_host)
        kubelet = DemoKubelet(cluster)
        kubelet.seed(workloads)
        print(
            f"demo: simulated cluster {cluster.url}, registries {private_host} (private) and {hub_host} "
            f"(rate-limited), unresolvable {DNS_HOST}; {len(workloads)} workloads, "
            f"{sum(1 for w in workloads if w.error)} failing"
        )

        runner = BotInProcess(s)
        bot = (await runner.start()).bot
        stack.push_async_callback(runner.stop)
        if bot.channels is not None:  # what start-up found: channel IDs, and the channels the bot cannot use
            report = bot.channels.report
            for ref, cid in report.ids.items():
                print(f"demo: Slack channel {ref} = {cid}")
            for problem in report.problems.values():
                print(f"demo: Slack channel unusable: {problem.line()}")

        expected = 4  # wrong tag, private image, unresolvable host, one registry incident for the rate limit

        async def all_posted() -> bool:
            incidents = await bot.store.open_incidents("demo")
            counts = await bot.store.outbox_counts()
            return len(incidents) >= expected and all(i.thread_ts for i in incidents) and counts.get("pending", 0) == 0

        ok = await _until(all_posted, deadline - 8)
        kubelet.back_off()
        print(
            f"demo: {'all' if ok else 'NOT all'} incidents posted after {time.monotonic() - started:.1f}s; "
            "now the team fixes shop/api (tag 1.5.0)"
        )
        kubelet.fix("shop", "api", f"{private_host}/shop/api:1.5.0")

        async def api_resolved() -> bool:
            incidents = await bot.store.recent_incidents(limit=50, cluster="demo")
            done = [i for i in incidents if i.workload.name == "api" and i.status is IncidentStatus.RESOLVED]
            counts = await bot.store.outbox_counts()
            return bool(done) and counts.get("pending", 0) == 0

        resolved = await _until(api_resolved, deadline)

        # ChatOps: the team adds the pull secret; a developer asks the bot to link it; a lead approves.
        cluster.put(
            k8s.docker_config_secret(
                "regcred", "billing", {private_host: {"username": REGISTRY_USER, "password": REGISTRY_PASSWORD}}
            )
        )
        chat = ChatOps(f"http://127.0.0.1:{s.slack.http_port}{EVENTS_PATH}", s.slack.default_channel, fake)
        await chat.command(DEV, "link-secret billing/default regcred")

        async def proposed() -> bool:
            return bool(await bot.store.pending_proposals())

        linked = False
        if await _until(proposed, deadline):
            (proposal,) = (await bot.store.pending_proposals())[:1]
            await chat.click(DEV, "imagepull:approve", {"proposal": proposal.id})  # refused: the two-person rule
            await chat.click(LEAD, "imagepull:approve", {"proposal": proposal.id})

            async def executed() -> bool:
                current = await bot.store.get_proposal(proposal.id or 0)
                return current is not None and current.status.value in ("succeeded", "failed")

            await _until(executed, deadline)
            linked = kubelet.retry_with_service_account("billing", "ledger")

        async def ledger_resolved() -> bool:
            incidents = await bot.store.recent_incidents(limit=50, cluster="demo")
            done = [i for i in incidents if i.workload.name == "ledger" and i.status is IncidentStatus.RESOLVED]
            return bool(done) and (await bot.store.outbox_counts()).get("pending", 0) == 0

        chatops_ok = linked and await _until(ledger_resolved, deadline)
        print(f"demo: ChatOps link-secret {'approved, executed and resolved' if chatops_ok else 'did NOT complete'}")
        await bot.store.append_audit(
            AuditEntry(
                actor_id="demo",
                actor_name="imagepull-doctor demo",
                action="demo.completed",
                target="demo",
                params={"incidents": str(len(await bot.store.recent_incidents(limit=50, cluster="demo")))},
                result="ok" if ok and resolved and chatops_ok else "incomplete",
                at=_now(),
            )
        )
        if fake is not None:
            print(render_threads(fake.threads()))
        incidents = await bot.store.recent_incidents(limit=50, cluster="demo")
        print("\nincidents in", s.database_url)
        for inc in incidents:
            print(
                f"  {inc.status.value:<9} {inc.cause.value:<28} {inc.namespace}/{inc.workload} "
                f"pods_seen={inc.pods_seen} thread={inc.thread_ts}"
            )
        print("\naudit log:")
        for record in await bot.store.list_audit(limit=50):
            e = record.entry
            print(f"  {record.id:>3} {e.actor_name or e.actor_id:<22} {e.action:<22} {e.target:<40} {e.result}")
        verdict = await bot.store.verify_audit()
        print(f"audit chain: {verdict.checked} rows, {'intact' if verdict.ok else 'BROKEN'}")
        healthy = [i for i in incidents if i.workload.name == "frontend"]
        success = ok and resolved and chatops_ok and not healthy
        print(f"demo: {'done' if success else 'INCOMPLETE'} in {time.monotonic() - started:.1f}s")
        return 0 if success else 1


def _fresh_workdir(path: Path) -> Path:
    """The demo's folder, without the database of an earlier run."""
    wd = path.resolve()
    wd.mkdir(parents=True, exist_ok=True)
    for stale in wd.glob("imagepull-doctor.db*"):
        stale.unlink()
    return wd


def _now() -> datetime:
    return datetime.now(UTC)
