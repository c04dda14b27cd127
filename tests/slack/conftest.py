"""Fixtures for the Slack side: the fake Web API, a real slack_sdk client on it, and the real Store on SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.model import Cause, Incident, OutboxKind, OutboxMessage, WorkloadRef
from bot.store.migrate import upgrade
from bot.store.store import Store
from testkit.slack.web_api import FakeSlackApi

TOKEN = "xoxb-test-not-a-real-token"
CHANNEL = "#imagepull-alerts"


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlackApi]:
    """A started fake Slack Web API that checks the bot token."""
    async with FakeSlackApi(token=TOKEN) as api:
        api.add_channel(CHANNEL)
        api.add_channel("one", id="C1")
        api.add_channel("two", id="C2")
        yield api


@pytest.fixture
def client(fake: FakeSlackApi) -> AsyncWebClient:
    """The real slack_sdk client, pointed at the fake."""
    return AsyncWebClient(token=TOKEN, base_url=fake.url, timeout=2)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    """The real Store on a migrated SQLite file."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'slack.db'}"
    await upgrade(url)
    s = await Store.open(url)
    yield s
    await s.close()


def incident(key: str = "prod|shop|Deployment/web|web|reg.example/web:v9|tag_not_found", **kw: object) -> Incident:
    """A workload incident with plausible defaults."""
    values: dict[str, object] = {
        "key": key,
        "cluster": "prod",
        "namespace": "shop",
        "workload": WorkloadRef("Deployment", "web"),
        "container": "web",
        "image": "reg.example/web:v9",
        "registry": "reg.example",
        "cause": Cause.TAG_NOT_FOUND,
        "pods": ("web-7d9f-abcde",),
        "pods_seen": 1,
        "first_seen": datetime(2026, 11, 23, 10, 0, tzinfo=UTC),
        "last_seen": datetime(2026, 11, 23, 10, 1, tzinfo=UTC),
        "channel": CHANNEL,
    }
    values.update(kw)
    return Incident(**values)  # type: ignore[arg-type]


def rows(key: str, *kinds_texts: tuple[OutboxKind, str], channel: str = CHANNEL) -> list[OutboxMessage]:
    """Outbox rows for one incident, deduplicated by their text."""
    return [
        OutboxMessage(kind=k, incident_key=key, channel=channel, text=t, dedup_key=f"{key}:{t}") for k, t in kinds_texts
    ]


async def open_incident(store: Store, key: str, texts: Sequence[str] = ("parent", "diagnosis")) -> Incident:
    """Store an incident with a parent row and one reply row per extra text."""
    messages = [(OutboxKind.POST_PARENT, texts[0]), *((OutboxKind.REPLY, t) for t in texts[1:])]
    return await store.save_incident(incident(key), rows(key, *messages))
