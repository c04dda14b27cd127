"""A whole bot minus the watcher: simulated cluster and registry, real SQLite store, fake Slack, real Bolt app.

`world` gives Flows for cluster "prod" (plus, on demand, a second bot for cluster "edge" on the same database),
with grants: U_ADMIN may approve anything, group S_OPS may approve fixes in "shop", U_SNOOZER may snooze.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from pydantic import SecretStr
from slack_sdk.web.async_client import AsyncWebClient

from bot.flows import Flows
from bot.kube.client import load_api_client
from bot.model import ActionKind, Cause, Diagnosis, Facts, Incident, WorkloadRef
from bot.registry.netguard import LOOPBACK_NETWORKS
from bot.registry.probe import RegistryProber
from bot.settings import AccessSettings, ExecutorSettings, KubeSettings, RegistrySettings, Settings, SlackSettings
from bot.slack.bolt_app import build_app, http_routes
from bot.slack.signing import signed_headers as slack_signed_headers
from bot.store.migrate import upgrade
from bot.store.store import Store
from handlers import register_all
from testkit.kube import objects as o
from testkit.kube.apiserver import SimCluster
from testkit.loopback import serve_on_loopback
from testkit.oci.simregistry import SimRegistry
from testkit.slack.web_api import FakeSlackApi

TOKEN = "xoxb-test-not-a-real-token"
SIGNING_SECRET = "test-signing-secret"
CHANNEL = "C0ALERTS"
ADMIN, OPS_MEMBER, SNOOZER, STRANGER, REQUESTER = "U_ADMIN", "U_OPS1", "U_SNOOZER", "U_STRANGER", "U_REQ"
OPS_GROUP = "S_OPS"
GRANTS = {
    ADMIN: ["*:*"],
    OPS_GROUP: ["shop:delete_pod", "shop:recreate_secret", "shop:link_secret"],
    SNOOZER: ["*:snooze"],
}


class FakeSlackWithGroups(FakeSlackApi):
    """The fake Web API, whose `groups` answer `usergroups.users.list` (group id -> member ids)."""


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test."""
    path = tmp_path_factory.mktemp("handlers-db") / "template.db"
    asyncio.run(upgrade(f"sqlite+aiosqlite:///{path}"))
    return path


def settings_for(cluster: str, kubeconfig: Path, registry_host: str, *, two_person: bool = False) -> Settings:
    """Settings of one bot: its cluster, the simulator's kubeconfig, the sim registry as plain HTTP."""
    return Settings(
        slack=SlackSettings(bot_token=SecretStr(TOKEN), signing_secret=SecretStr(SIGNING_SECRET), mode="http"),
        kube=KubeSettings(kubeconfig=kubeconfig, context="sim", cluster_name=cluster, exclude_namespaces=[]),
        registry=RegistrySettings(
            insecure_registries=[registry_host], probe_budget_s=3.0, allow_networks=list(LOOPBACK_NETWORKS)
        ),
        access=AccessSettings(grants=GRANTS, two_person_rule=two_person, proposal_ttl_s=600),
        executor=ExecutorSettings(settle_s=0),
    )


@dataclass
class World:
    """Everything a handlers/flows test needs."""

    sim: SimCluster
    registry: SimRegistry
    registry_host: str
    slack: FakeSlackWithGroups
    client: AsyncWebClient
    store: Store
    flows: Flows
    db_url: str
    kubeconfig: Path
    _closers: list[Callable[[], Any]] = field(default_factory=list)

    async def other_bot(self, cluster: str, *, sim: SimCluster | None = None, identity: str = "edge-1") -> Flows:
        """A second bot on the same database, for another cluster (its own simulated API server if given)."""
        kubeconfig = self.kubeconfig
        if sim is not None:
            kubeconfig = sim.write_kubeconfig(self.kubeconfig.with_name(f"kubeconfig-{cluster}"))
        settings = settings_for(cluster, kubeconfig, self.registry_host)
        api = await load_api_client(settings.kube)
        store = await Store.open(self.db_url)
        prober = RegistryProber(settings.registry)
        self._closers += [prober.close, api.close, store.close]
        return Flows(settings=settings, store=store, api=api, prober=prober, slack=self.client, identity=identity)


@pytest.fixture
async def world(tmp_path: Path, sqlite_template: Path) -> AsyncIterator[World]:
    """A started world for cluster "prod" (see the module docstring)."""
    sim = SimCluster(bookmark_interval_s=0.2)
    await sim.start()
    registry = SimRegistry()
    host = await registry.start()
    slack = FakeSlackWithGroups(token=TOKEN)
    await slack.start()
    slack.groups[OPS_GROUP] = [OPS_MEMBER]
    slack.add_channel("imagepull-alerts", id=CHANNEL)
    db = tmp_path / "bot.db"
    shutil.copyfile(sqlite_template, db)
    db_url = f"sqlite+aiosqlite:///{db}"
    kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")
    settings = settings_for("prod", kubeconfig, host)
    api = await load_api_client(settings.kube)
    store = await Store.open(db_url)
    prober = RegistryProber(settings.registry)
    client = AsyncWebClient(token=TOKEN, base_url=slack.url, timeout=5)
    flows = Flows(settings=settings, store=store, api=api, prober=prober, slack=client, identity="prod-1")
    w = World(sim, registry, host, slack, client, store, flows, db_url, kubeconfig)
    try:
        yield w
    finally:
        for closer in reversed(w._closers):
            await closer()
        await prober.close()
        await api.close()
        await store.close()
        await slack.close()
        await registry.stop()
        await sim.stop()


def failing_deployment(
    sim: SimCluster, name: str = "web", namespace: str = "shop", image: str = "", error: str = "not found"
) -> list[dict[str, Any]]:
    """A Deployment whose pod waits in ErrImagePull with containerd's not-found text; returns its pods."""
    image = image or f"registry.invalid/{name}:v9"
    deploy, rs, pods = o.deployment_with_pods(name, namespace, image, 1, "ErrImagePull", None)
    for obj in (deploy, rs, *pods):
        sim.put(obj)
    return pods


async def store_incident(
    w: World, pod: str, *, namespace: str = "shop", image: str = "", key: str = "inc-web"
) -> Incident:
    """An open incident for deployment/web with a posted thread (so replies can be sent)."""
    image = image or "registry.invalid/web:v9"
    diagnosis = Diagnosis(
        cause=Cause.TAG_NOT_FOUND,
        summary="tag v9 not found",
        confidence=0.9,
        facts=Facts(),
        actions=(ActionKind.REDIAGNOSE, ActionKind.DELETE_POD, ActionKind.SNOOZE),
    )
    incident = Incident(
        key=key,
        cluster="prod",
        namespace=namespace,
        workload=WorkloadRef("Deployment", "web"),
        container="web",
        image=image,
        registry=image.split("/")[0],
        cause=Cause.TAG_NOT_FOUND,
        pods=(pod,),
        pods_seen=1,
        diagnosis=diagnosis,
        channel=CHANNEL,
    )
    stored = await w.store.save_incident(incident)
    parent = await w.client.chat_postMessage(channel=CHANNEL, text="parent")
    await w.store.set_thread(key, CHANNEL, str(parent["ts"]))
    return await w.store.get_incident(key) or stored


# ---- signed HTTP requests to a real Bolt app ----


def signed_headers(body: str, *, secret: str = SIGNING_SECRET, ts: int | None = None) -> dict[str, str]:
    """Slack's v0 signature headers for `body`."""
    return slack_signed_headers(body, secret, ts)


def command_body(
    text: str,
    user: str = REQUESTER,
    channel: str = CHANNEL,
    *,
    response_url: str = "https://hooks.slack.invalid/x",
    trigger_id: str = "1.2.3",
) -> str:
    """A slash command body as Slack sends it (the fake mints working response_urls and trigger_ids)."""
    return urlencode(
        {
            "team_id": "TFAKE001",
            "channel_id": channel,
            "user_id": user,
            "user_name": user.lower(),
            "command": "/imagepull",
            "text": text,
            "response_url": response_url,
            "trigger_id": trigger_id,
            "api_app_id": "AFAKE001",
        }
    )


def action_body(
    action_id: str,
    value: str,
    user: str,
    channel: str = CHANNEL,
    ts: str = "1.000001",
    *,
    response_url: str | None = None,
    trigger_id: str = "9.9.9",
) -> str:
    """A block_actions body (a button click) as Slack sends it."""
    import json

    payload = {
        "type": "block_actions",
        "team": {"id": "TFAKE001"},
        "user": {"id": user},
        "api_app_id": "AFAKE001",
        "trigger_id": trigger_id,
        "channel": {"id": channel},
        "message": {"ts": ts, "text": "proposal"},
        "container": {"type": "message", "message_ts": ts, "channel_id": channel},
        "actions": [{"type": "button", "action_id": action_id, "block_id": "b", "value": value, "action_ts": "1"}],
    }
    if response_url is not None:
        payload["response_url"] = response_url
    return urlencode({"payload": json.dumps(payload)})


@dataclass
class SlackEndpoint:
    """The Bolt app's HTTP route on 127.0.0.1."""

    url: str

    async def post(self, body: str, headers: dict[str, str]) -> tuple[int, str]:
        async with aiohttp.ClientSession() as s, s.post(self.url, data=body, headers=headers) as r:
            return r.status, await r.text()


@pytest.fixture
async def endpoint(world: World) -> AsyncIterator[SlackEndpoint]:
    """The real Bolt app (build_app + register_all) served over HTTP, talking to the fake Web API."""
    app = build_app(world.flows.settings, client=world.client, register=lambda a: register_all(a, world.flows))
    runner, port = await serve_on_loopback(http_routes(app))
    yield SlackEndpoint(f"http://127.0.0.1:{port}/slack/events")
    await runner.cleanup()


async def eventually(check: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Poll until `check()` is truthy; return it."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last: {value!r})")
        await asyncio.sleep(0.02)


async def eventually_async(check: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Poll an async `check()` until its result is truthy; return it."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last: {value!r})")
        await asyncio.sleep(0.02)
