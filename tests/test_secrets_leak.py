"""Secrets never leak: run the bot end to end (and through chaos) with known secret values and look for them
everywhere the bot writes: every Slack call the fake recorded, every log line at DEBUG (root logger, no redaction
filter), every row of every table, the outbox and the audit log. They may only be in the Kubernetes Secrets."""

from __future__ import annotations

import base64
import json
import logging
import secrets
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from sqlalchemy import MetaData, select
from sqlalchemy.engine import make_url

from bot.chatops.port import SecretDefaults
from bot.logging_setup import configure_logging
from bot.model import ActionKind, Proposal, ProposalStatus
from bot.settings import Settings
from bot.slack.bolt_app import EVENTS_PATH
from bot.slack.signing import signed_headers
from bot.store.store import Store
from handlers.modals import recreate_secret_view
from testkit.demo import Workload
from testkit.kube import objects as k8s
from testkit.oci.docker_registry import free_port
from testkit.slack.web_api import FakeSlackApi
from tests.chaos.conftest import BAD_TAG, GOOD_TAG, World, check_invariants, running_bot, wait_for
from tests.conftest import fresh_pg_database, pg_database_url
from tests.logcapture import LogCapture

SLACK_TOKEN = f"xoxb-{secrets.token_hex(8)}-leaktest"
SIGNING_SECRET = secrets.token_hex(16)
PW_JSON = f"pw-json-{secrets.token_hex(8)}"  # the right password, in a .dockerconfigjson secret
PW_LEGACY = f"pw-legacy-{secrets.token_hex(8)}"  # a wrong one, in a legacy .dockercfg secret
PW_AUTH = f"pw-auth-{secrets.token_hex(8)}"  # a wrong one, only in the base64 `auth` field
DB_PASSWORD = f"dbpw-{secrets.token_hex(8)}"
PW_TYPED_WRONG = f"pw-typed-{secrets.token_hex(8)}"  # typed into the modal and refused by the registry
USER = "ci-bot"
TABLES = {"incidents", "slack_threads", "outbox", "proposals", "audit_log"}
# Loggers configure_logging pins to WARNING; kubernetes_asyncio.client.rest logs whole response bodies (Secrets
# included) at DEBUG, so this pin is what keeps pull-secret contents out of DEBUG logs.
NOISY = ("aiohttp.access", "kubernetes_asyncio.client.rest", "slack_bolt", "slack_sdk", "alembic")


def _needles() -> dict[str, str]:
    """Every secret value and the encoded forms it travels in."""
    out: dict[str, str] = {}
    for name, value in {
        "slack token": SLACK_TOKEN,
        "signing secret": SIGNING_SECRET,
        "dockerconfigjson password": PW_JSON,
        "dockercfg password": PW_LEGACY,
        "auth-field password": PW_AUTH,
        "database password": DB_PASSWORD,
        "typed wrong password": PW_TYPED_WRONG,
    }.items():
        out[name] = value
        out[f"{name} (base64)"] = base64.b64encode(value.encode()).decode()
        out[f"{name} (user:password base64)"] = base64.b64encode(f"{USER}:{value}".encode()).decode()
    return out


def _leaks(where: str, text: str) -> list[str]:
    return [f"{name} in {where}" for name, needle in _needles().items() if needle in text]


@pytest.fixture
def captured_logs() -> Iterator[LogCapture]:
    """Root logger at DEBUG into a list for the duration of the test."""
    root = logging.getLogger()
    handler, level = LogCapture(), root.level
    noisy = {name: logging.getLogger(name).level for name in NOISY}
    root.addHandler(handler)  # first: it sees each record before the production handler's redaction filter
    configure_logging("DEBUG")  # as `imagepull-doctor run` with log_level DEBUG: library loggers pinned
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        for h in [h for h in root.handlers if getattr(h, "_imagepull", False)]:
            root.removeHandler(h)
        root.setLevel(level)
        for name, lvl in noisy.items():
            logging.getLogger(name).setLevel(lvl)


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.integration),
    ]
)
def leak_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """SQLite, or a fresh PostgreSQL database reached with a password in its URL (trust auth ignores it)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'leak.db'}"
        return
    for url in fresh_pg_database("ipd_leak"):
        name = make_url(url).database
        assert name is not None
        yield pg_database_url(name).replace(
            "postgresql+asyncpg://postgres@", f"postgresql+asyncpg://postgres:{DB_PASSWORD}@"
        )


@pytest.fixture
async def leak_world(tmp_path: Path, leak_db: str) -> AsyncIterator[World]:
    """A world whose Slack checks the known token and whose registry wants the known password."""
    world = World(tmp_path, leak_db, slack=FakeSlackApi(token=SLACK_TOKEN))
    await world.start()
    try:
        yield world
    finally:
        await world.stop()


def _seed(world: World) -> None:
    """Three namespaces, each with a pull secret of one form and a failing workload that makes the bot read it."""
    assert world.kubelet is not None
    host = world.host
    world.registry.require_auth("team-*", USER, PW_JSON)
    secrets_by_ns = {
        "team-a": k8s.docker_config_secret("regcred", "team-a", {host: {"username": USER, "password": PW_JSON}}),
        "team-b": k8s.docker_config_secret(
            "regcred", "team-b", {host: {"username": USER, "password": PW_LEGACY}}, legacy=True
        ),
        "team-c": k8s.docker_config_secret(
            "regcred", "team-c", {host: {"auth": base64.b64encode(f"{USER}:{PW_AUTH}".encode()).decode()}}
        ),
    }
    for ns, secret in secrets_by_ns.items():
        world.cluster.put(k8s.namespace(ns))
        world.cluster.put(secret)
        world.cluster.put(k8s.service_account("default", ns, image_pull_secrets=["regcred"]))
        repo = f"{ns}/app"
        world.registry.add_image(repo, GOOD_TAG)
        image = world.image(ns, "app", BAD_TAG)
        if ns == "team-a":  # right credentials, wrong tag
            error = f'failed to resolve reference "{image}": {image}: not found'
        else:  # wrong credentials
            error = (
                f'failed to resolve reference "{image}": pulling from host {host} failed with status code '
                f"[manifests {BAD_TAG}]: 401 Unauthorized"
            )
        world.kubelet.start(Workload(ns, "app", image, 2, error))


async def _dump_tables(store: Store) -> list[tuple[str, str]]:
    """(table, row as text) for every row of every table."""
    rows: list[tuple[str, str]] = []
    async with store.engine.connect() as conn:
        meta = MetaData()
        await conn.run_sync(meta.reflect)
        for table in meta.sorted_tables:
            for row in (await conn.execute(select(table))).all():
                rows.append((table.name, repr(tuple(row))))
    return rows


async def test_no_secret_leaves_the_kubernetes_secrets(
    leak_world: World, captured_logs: LogCapture, leak_db: str
) -> None:
    """Pull secrets in three forms, a Slack token, a signing secret, a DB password: none reaches Slack, logs or SQL."""
    world = leak_world
    _seed(world)
    data = world.settings_data(log_level="DEBUG")
    data["slack"]["bot_token"] = SLACK_TOKEN
    data["slack"]["signing_secret"] = SIGNING_SECRET
    settings = Settings.model_validate(data)
    slack = world.slack
    slack.crash_after_send("chat.postMessage", times=1)  # a chaos moment: reconcile reads history
    async with running_bot(settings) as runner:
        assert runner.bot is not None
        store = runner.bot.store
        await wait_for(lambda: _posted(world, store, 3), 20, "three incidents posted")
        # Chaos: dropped watches, Kubernetes and Slack errors, then a fix and an approved action with an audit trail.
        world.cluster.faults.drop_watches()
        world.cluster.faults.fail_next(2, 500, path_prefix="/api/v1/namespaces/team-b")
        slack.server_error("chat.update", times=1)
        incident = next(i for i in await store.open_incidents(world.name) if i.namespace == "team-a")
        now = datetime.now(UTC)
        proposal = await store.create_proposal(
            Proposal(
                ActionKind.DELETE_POD,
                world.name,
                "team-a",
                incident.pods[0],
                {"threaded": "yes", "channel": ""},
                "U0LEAK",
                "leak",
                now,
                now + timedelta(minutes=5),
                incident_key=incident.key,
            )
        )
        assert proposal.id is not None
        await store.transition_proposal(proposal.id, ProposalStatus.PENDING, ProposalStatus.APPROVED, decided_by="U0OK")
        world.fix("team-b", "app")
        await wait_for(lambda: _resolved(store, world, "team-b"), 20, "team-b resolved")
        await wait_for(lambda: _decided(store, proposal.id or 0), 20, "the approved delete ran")
        await wait_for(lambda: _idle(store), 20, "outbox idle")
        assert runner.failed() is None
        await check_invariants(world, store)
        incidents = await store.recent_incidents(limit=50, cluster=world.name)
        causes = {i.namespace: i.cause.value for i in incidents}
        assert causes.get("team-c") == "auth_failed", causes  # the auth-only secret was read and tried
        # Where the secrets must not be.
        leaks: list[str] = []
        for call in slack.calls:
            leaks += _leaks(f"Slack call {call.method}", json.dumps(call.payload, default=str))
        for m in slack.messages + slack.ephemerals:
            leaks += _leaks("a Slack message", json.dumps([m.text, m.blocks, m.metadata], default=str))
        rows = await _dump_tables(store)
        assert {t for t, _ in rows} >= TABLES, {t for t, _ in rows}
        for table, row in rows:
            leaks += _leaks(f"table {table}", row)
        assert captured_logs.lines, "no log line was captured"
        for line in captured_logs.lines:
            leaks += _leaks(f"log line {line[:120]!r}", line)
        assert not leaks, "\n".join(sorted(set(leaks)))
    # The values were really in play: the Secrets hold them, and the bot used the token.
    stored = "".join(base64.b64decode(v).decode() for sec in world.cluster.list("Secret") for v in sec["data"].values())
    for password in (PW_JSON, PW_LEGACY):
        assert password in stored, "the values were in the cluster's Secrets"
    assert _b64(PW_AUTH) in stored
    assert slack.calls_to("chat.postMessage"), "the bot never talked to Slack with the token"


def _b64(password: str) -> str:
    return base64.b64encode(f"{USER}:{password}".encode()).decode()


async def _posted(world: World, store: Store, n: int) -> bool:
    incidents = await store.open_incidents(world.name)
    return len(incidents) >= n and all(i.thread_ts for i in incidents)


async def _resolved(store: Store, world: World, namespace: str) -> bool:
    return any(
        i.namespace == namespace and i.status.value == "resolved"
        for i in await store.recent_incidents(limit=50, cluster=world.name)
    )


async def _decided(store: Store, proposal_id: int) -> bool:
    p = await store.get_proposal(proposal_id)
    return p is not None and p.status is ProposalStatus.SUCCEEDED


async def _idle(store: Store) -> bool:
    counts = await store.outbox_counts()
    return counts.get("pending", 0) == 0


def _signed_post(url: str, body: str) -> Any:
    """POST a body to the Bolt app with Slack's v0 signature made with the known signing secret."""
    return _post(url, body, signed_headers(body, SIGNING_SECRET))


async def _post(url: str, body: str, headers: dict[str, str]) -> int:
    async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=headers) as answer:
        return answer.status


def _submission(view: dict[str, Any], typed: dict[str, str], user: str) -> str:
    state = {"values": {block: {"value": {"type": "plain_text_input", "value": v}} for block, v in typed.items()}}
    payload = {"type": "view_submission", "team": {"id": "T0LEAK"}, "user": {"id": user}, "api_app_id": "A0LEAK"}
    payload["view"] = {**view, "id": "V0LEAK", "state": state}
    return urlencode({"payload": json.dumps(payload)})


def _approve_click(proposal_id: int, user: str, channel: str) -> str:
    payload = {
        "type": "block_actions",
        "team": {"id": "T0LEAK"},
        "user": {"id": user},
        "api_app_id": "A0LEAK",
        "trigger_id": "1.1.1",
        "channel": {"id": channel},
        "container": {"type": "message", "message_ts": "1.000001", "channel_id": channel},
        "actions": [
            {
                "type": "button",
                "action_id": "imagepull:approve",
                "block_id": "b",
                "value": json.dumps({"proposal": proposal_id}),
                "action_ts": "1",
            }
        ],
    }
    return urlencode({"payload": json.dumps(payload)})


async def test_typed_credentials_through_the_real_slack_app_never_leak(
    leak_world: World, captured_logs: LogCapture, leak_db: str
) -> None:
    """Registry credentials typed into the recreate-secret modal of the real Bolt app (signed HTTP requests): a wrong
    password is refused, the right one is proposed, approved by a click and written into the Secret; neither ever
    reaches Slack, SQL or a log line, nor do the signing secret and the bot token."""
    world = leak_world
    _seed(world)
    requester, approver = "U0LEAKREQ", "U0LEAKOK"
    data = world.settings_data(log_level="DEBUG")
    data["slack"].update(
        bot_token=SLACK_TOKEN, signing_secret=SIGNING_SECRET, mode="http", http_host="127.0.0.1", http_port=free_port()
    )
    data["access"] = {"grants": {requester: ["team-c:recreate_secret"], approver: ["team-c:recreate_secret"]}}
    settings = Settings.model_validate(data)
    url = f"http://127.0.0.1:{settings.slack.http_port}{EVENTS_PATH}"
    slack = world.slack
    channel = settings.slack.default_channel
    image = world.image("team-c", "app", GOOD_TAG)
    async with running_bot(settings) as runner:
        store = runner.bot.store
        await wait_for(lambda: _posted(world, store, 3), 20, "three incidents posted")
        view = recreate_secret_view(SecretDefaults(world.name, "team-c", image=image), channel)
        typed = {"secret": "regcred", "source": "", "server": world.host, "username": USER, "image": image}
        assert await _signed_post(url, _submission(view, {**typed, "password": PW_TYPED_WRONG}, requester)) == 200
        await wait_for(_audited(store, "proposal.refused"), 20, "the wrong password refused and audited")
        assert await _signed_post(url, _submission(view, {**typed, "password": PW_JSON}, requester)) == 200
        await wait_for(lambda: _pending(store), 20, "the right password proposed")
        (proposal,) = await store.pending_proposals()
        assert proposal.id is not None
        forged = _approve_click(proposal.id, approver, channel)
        assert await _post(url, forged, signed_headers(forged, "not-the-signing-secret")) == 401
        assert await _signed_post(url, _approve_click(proposal.id, approver, channel)) == 200
        await wait_for(lambda: _decided(store, proposal.id or 0), 20, "the approved recreate-secret ran")
        written = world.cluster.get("Secret", "team-c", "regcred")
        assert written is not None
        assert PW_JSON in base64.b64decode(written["data"][".dockerconfigjson"]).decode()
        await wait_for(lambda: _idle(store), 20, "outbox idle")
        assert runner.failed() is None
        leaks: list[str] = []
        for call in slack.calls:
            leaks += _leaks(f"Slack call {call.method}", json.dumps(call.payload, default=str))
        for m in slack.messages + slack.ephemerals:
            leaks += _leaks("a Slack message", json.dumps([m.text, m.blocks, m.metadata], default=str))
        for table, row in await _dump_tables(store):
            leaks += _leaks(f"table {table}", row)
        for line in captured_logs.lines:
            leaks += _leaks(f"log line {line[:120]!r}", line)
        assert not leaks, "\n".join(sorted(set(leaks)))


def _audited(store: Store, action: str) -> Any:
    async def seen() -> bool:
        return any(r.entry.action == action for r in await store.list_audit(limit=200))

    return seen


async def _pending(store: Store) -> bool:
    return bool(await store.pending_proposals())
