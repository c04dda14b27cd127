"""End-to-end harness for the chaos tests: the real bot against SimCluster, SimRegistry and FakeSlackApi.

`World` starts the three fakes and plays kubelet (testkit.demo.DemoKubelet); `running_bot` runs the bot in this process
and `BotProcess` as a subprocess (`python -m testkit.process`) that a test may SIGKILL, both through
`bot.runtime.run_bot`, as production does. `check_invariants` states what must hold after any
fault: one parent per incident, resolved incidents closed, no reply twice, the audit chain intact, nothing left in
the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.model import AuditEntry, Incident, IncidentStatus
from bot.settings import Settings
from bot.store.store import Store
from testkit.demo import DemoKubelet, Workload
from testkit.inprocess import BotInProcess
from testkit.kube import objects as k8s
from testkit.kube.apiserver import SimCluster
from testkit.oci.simregistry import SimRegistry
from testkit.process import CHAOS_CHANNEL, settings_dict
from testkit.slack.web_api import FakeSlackApi, Message
from tests.conftest import fresh_pg_database

TOKEN = "xoxb-chaos-not-a-real-token"
GOOD_TAG = "1.0.0"
BAD_TAG = "9.9.9"


# ---- databases: a fresh one per test, so no row of another test can be sent to this test's fake Slack ----


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.integration),
    ]
)
def chaos_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL per backend: a new SQLite file, or a new PostgreSQL database dropped after the test."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'chaos.db'}"
        return
    yield from fresh_pg_database("ipd_chaos")


@pytest.fixture
def pg_db() -> Iterator[str]:
    """A new PostgreSQL database for one test (skips, or fails in CI, when the server is down)."""
    yield from fresh_pg_database("ipd_chaos")


@pytest.fixture
def sqlite_db(tmp_path: Path) -> str:
    """A new SQLite file."""
    return f"sqlite+aiosqlite:///{tmp_path / 'chaos.db'}"


# ---- waiting ----


async def wait_for(
    condition: Callable[[], Awaitable[bool]], timeout: float, what: str | Callable[[], str], step: float = 0.05
) -> None:
    """Poll `condition` until true; fail with `what` (a text, or a function giving one at failure) after `timeout`
    seconds, tripled in CI, where a loaded 2-core machine is slow (waiting longer costs nothing when all is well)."""
    if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
        timeout *= 3
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await condition():
            return
        await asyncio.sleep(step)
    if not await condition():
        raise AssertionError(f"not within {timeout}s: {what() if callable(what) else what}")


# ---- the world: cluster, registry, Slack ----


@dataclass
class World:
    """The simulated cluster, one registry and the fake Slack, with kubelet played by DemoKubelet."""

    tmp: Path
    db_url: str
    cluster: SimCluster = field(default_factory=lambda: SimCluster(bookmark_interval_s=0.5))
    registry: SimRegistry = field(default_factory=SimRegistry)
    slack: FakeSlackApi = field(default_factory=lambda: FakeSlackApi(token=TOKEN))
    name: str = field(default_factory=lambda: f"chaos-{secrets.token_hex(3)}")
    host: str = ""
    kubeconfig: Path | None = None
    kubelet: DemoKubelet | None = None

    async def start(self) -> None:
        await self.cluster.start()
        self.host = await self.registry.start()
        await self.slack.start()
        self.slack.add_channel(CHAOS_CHANNEL)
        self.kubeconfig = self.cluster.write_kubeconfig(self.tmp / "kubeconfig")
        self.kubelet = DemoKubelet(self.cluster)
        self.cluster.put(k8s.namespace("default"))
        self.cluster.put(k8s.node("node-a", arch="amd64"))
        self.cluster.put(k8s.node("node-b", arch="amd64"))

    async def stop(self) -> None:
        await self.slack.close()
        await self.registry.stop()
        await self.cluster.stop()

    def settings_data(self, identity: str = "chaos-bot-0", log_level: str = "INFO") -> dict[str, Any]:
        """The bot's settings as JSON-able data (for a subprocess)."""
        assert self.kubeconfig is not None
        return settings_dict(
            database_url=self.db_url,
            kubeconfig=self.kubeconfig,
            cluster_name=self.name,
            slack_url=self.slack.url,
            bot_token=TOKEN,
            insecure_registries=[self.host],
            identity=identity,
            log_level=log_level,
        )

    def settings(self, identity: str = "chaos-bot-0") -> Settings:
        """The bot's settings for this world."""
        return Settings.model_validate(self.settings_data(identity))

    # ---- kubelet ----

    def image(self, namespace: str, name: str, tag: str) -> str:
        return f"{self.host}/{namespace}/{name}:{tag}"

    def fail(self, namespace: str, name: str, replicas: int = 1) -> None:
        """Start a workload whose tag does not exist (the registry has only GOOD_TAG): ErrImagePull."""
        assert self.kubelet is not None
        self.registry.add_image(f"{namespace}/{name}", GOOD_TAG)
        image = self.image(namespace, name, BAD_TAG)
        ref = image
        error = f'failed to resolve reference "{ref}": {ref}: not found'
        self.cluster.put(k8s.service_account("default", namespace))
        self.kubelet.start(Workload(namespace, name, image, replicas, error))

    def fix(self, namespace: str, name: str) -> None:
        """The team fixes the tag: the pods' containers start."""
        assert self.kubelet is not None
        self.kubelet.fix(namespace, name, self.image(namespace, name, GOOD_TAG))

    # ---- Slack as the fake saw it ----

    def parents(self) -> list[Message]:
        return [m for m in self.slack.messages if m.thread_ts is None]

    def parent_keys(self) -> Counter[str]:
        """How many parents the fake holds per incident key (from the message metadata)."""
        return Counter(key for m in self.parents() if (key := incident_key(m)) is not None)


def incident_key(message: Message) -> str | None:
    """The incident key a parent carries in its metadata (event_payload.incident_key)."""
    payload = (message.metadata or {}).get("event_payload") or {}
    key = payload.get("incident_key") if isinstance(payload, dict) else None
    return str(key) if key is not None else None


@pytest.fixture
async def world_factory(tmp_path: Path) -> AsyncIterator[Callable[[str], Awaitable[World]]]:
    """Start worlds on a given database URL; stopped after the test."""
    worlds: list[World] = []

    async def make(db_url: str) -> World:
        w = World(tmp_path, db_url)
        await w.start()
        worlds.append(w)
        return w

    yield make
    for w in worlds:
        await w.stop()


# ---- the bot in this process ----


@contextlib.asynccontextmanager
async def running_bot(settings: Settings) -> AsyncIterator[BotInProcess]:
    """Run the bot in this process (`bot.runtime.run_bot`) for the duration of the block."""
    runner = BotInProcess(settings)
    await runner.start()
    try:
        yield runner
    finally:
        await runner.stop()


# ---- the bot as a subprocess ----


class BotProcess:
    """`python -m testkit.process` with this world's settings; `kill()` sends SIGKILL."""

    def __init__(
        self, world: World, log_path: Path, identity: str = "chaos-bot-0", timings: dict[str, Any] | None = None
    ) -> None:
        self.world = world
        self.log_path = log_path
        self.identity = identity
        self.timings = timings or {}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = [
            sys.executable,
            "-m",
            "testkit.process",
            json.dumps(merged(self.world.settings_data(self.identity), self.timings)),
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEPULL_")}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=self.world.tmp, env=env)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no cleanup, no lease release, rows left claimed."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """`base` with the groups of `extra` laid over it (`{"outbox": {"lease_s": 30}}` changes one timing)."""
    out = dict(base)
    for group, values in extra.items():
        out[group] = {**out.get(group, {}), **values} if isinstance(values, dict) else values
    return out


# ---- expectations ----


async def settled(world: World, store: Store, *, open_: set[str], resolved: set[str], outbox_idle: bool = True) -> bool:
    """True when the store holds exactly these open/resolved workloads, all posted, and the outbox is empty."""
    incidents = await store.recent_incidents(limit=1000, cluster=world.name)
    now_open = {i.workload.name for i in incidents if i.status is IncidentStatus.OPEN}
    now_resolved = {i.workload.name for i in incidents if i.status is IncidentStatus.RESOLVED} - now_open
    if now_open != open_ or now_resolved != resolved:
        return False
    if any(i.thread_ts is None for i in incidents):
        return False
    if not outbox_idle:
        return True
    counts = await store.outbox_counts()
    return counts.get("pending", 0) == 0


async def check_invariants(world: World, store: Store) -> list[Incident]:
    """Assert the "never twice, never lost" guarantees; return the incidents of the world's cluster."""
    incidents = await store.recent_incidents(limit=1000, cluster=world.name)
    keys = world.parent_keys()
    # One parent per incident key, and a parent for every incident.
    assert all(n == 1 for n in keys.values()), f"duplicate parents: {keys}"
    assert set(keys) == {i.key for i in incidents}, f"parents {sorted(keys)} vs incidents {[i.key for i in incidents]}"
    assert len(world.parents()) == len(keys), "a parent without incident metadata"
    by_key = {incident_key(m): m for m in world.parents()}
    for inc in incidents:
        parent = by_key[inc.key]
        assert inc.thread_ts == parent.ts, f"{inc.key}: stored thread {inc.thread_ts}, posted {parent.ts}"
        replies = [m for m in world.slack.messages if m.thread_ts == parent.ts and m.channel == parent.channel]
        # The same message twice (text and blocks; a re-diagnosis repeats the text under another lead block).
        bodies = Counter(json.dumps([m.text, m.blocks], sort_keys=True) for m in replies)
        assert all(n == 1 for n in bodies.values()), f"{inc.key}: a reply posted twice: {bodies}"
        ids = Counter(
            (m.metadata or {}).get("event_payload", {}).get("outbox_id") for m in replies if m.metadata is not None
        )
        assert all(n == 1 for n in ids.values()), f"{inc.key}: an outbox row posted twice: {ids}"
        assert replies, f"{inc.key}: no diagnosis reply"
        if inc.status is IncidentStatus.RESOLVED:
            assert parent.text.startswith("RESOLVED"), f"{inc.key}: parent not edited to resolved: {parent.text!r}"
            assert any(m.text.startswith("Resolved") for m in replies), f"{inc.key}: no closing reply"
        else:
            assert parent.text.startswith("OPEN"), f"{inc.key}: open but the parent says {parent.text!r}"
            assert not any(m.text.startswith("Resolved") for m in replies), f"{inc.key}: open but closed in Slack"
    verdict = await store.verify_audit()
    assert verdict.ok, f"audit chain broken: {verdict}"
    counts = await store.outbox_counts()
    assert counts.get("pending", 0) == 0 and counts.get("failed", 0) == 0, f"outbox not clean: {counts}"
    return incidents


async def audit(store: Store, action: str, target: str) -> None:
    """Write an audit row, as a flow would (so the chain verified at the end is not empty)."""
    await store.append_audit(
        AuditEntry(
            actor_id="U0CHAOS",
            actor_name="chaos",
            action=action,
            target=target,
            params={"test": "chaos"},
            result="ok",
            at=datetime.now(UTC),
        )
    )
