"""A thread parent deleted in Slack: the incident starts a new parent that says so (issue 17, point 6).

Slack answers a reply to a deleted parent with thread_not_found and an edit of it with message_not_found; the
incident must not go quiet until it resolves.
"""

from __future__ import annotations

from slack_sdk.web.async_client import AsyncWebClient

from bot.model import OutboxKind
from bot.slack.outbox import PARENT_EVENT
from bot.store.store import Store
from testkit.slack.web_api import FakeSlackApi
from tests.slack.conftest import CHANNEL, open_incident, rows
from tests.slack.test_outbox import worker
from tests.store import queries


async def test_reply_after_the_parent_was_deleted_starts_a_new_thread(
    store: Store, client: AsyncWebClient, fake: FakeSlackApi
) -> None:
    await open_incident(store, "k1", ("parent", "diagnosis"))
    w = worker(store, client)
    await w.drain(5)
    (old,) = fake.threads(CHANNEL)
    fake.delete_message(CHANNEL, old.parent.ts)
    await store.enqueue(rows("k1", (OutboxKind.REPLY, "a new fact"), (OutboxKind.UPDATE_PARENT, "parent v2")))
    await w.drain(5)
    (new,) = fake.threads(CHANNEL)
    assert new.parent.ts != old.parent.ts
    assert "previous thread of this incident was deleted" in str(new.parent.blocks)
    assert new.parent.metadata is not None and new.parent.metadata["event_type"] == PARENT_EVENT
    assert [r.text for r in new.replies] == ["a new fact"]
    assert new.parent.text == "parent v2"  # later edits land on the new parent
    stored = await store.get_incident("k1")
    assert stored is not None and stored.thread_ts == new.parent.ts
    assert (await store.outbox_counts()).get("failed", 0) == 0
    assert w.reposted == 1


async def test_edit_of_a_deleted_parent_reposts_it(store: Store, client: AsyncWebClient, fake: FakeSlackApi) -> None:
    await open_incident(store, "k1", ("parent",))
    w = worker(store, client)
    await w.drain(5)
    (old,) = fake.threads(CHANNEL)
    fake.delete_message(CHANNEL, old.parent.ts)
    await store.enqueue(rows("k1", (OutboxKind.UPDATE_PARENT, "parent v2")))
    await w.drain(5)
    (new,) = fake.threads(CHANNEL)
    assert new.parent.ts != old.parent.ts and w.reposted == 1
    assert await queries.outbox_status(store, 2) == "sent"
