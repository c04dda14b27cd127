"""Incidents: round trip with a full diagnosis, upsert by key, thread_ts ownership, queries and counts."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, timedelta

from bot.model import Cause, IncidentScope, IncidentStatus, OutboxKind
from bot.store.store import Store
from tests.store import queries
from tests.store.conftest import OpenStore
from tests.store.factories import T0, incident, message


async def test_round_trip_keeps_every_field(store: Store) -> None:
    """An incident read back equals the one saved (ids aside), nested diagnosis and UTC timestamps included."""
    original = incident(
        scope=IncidentScope.REGISTRY,
        affected=("shop/api", "shop/web"),
        snoozed_until=T0 + timedelta(hours=1),
        muted=True,
        parent_key="registry:ghcr.io",
        reopened=2,
        resolved_at=T0 + timedelta(minutes=5),
        status=IncidentStatus.RESOLVED,
    )
    saved = await store.save_incident(original)
    assert saved.id is not None
    loaded = await store.get_incident(original.key)
    assert loaded == dataclasses.replace(original, id=saved.id)
    assert loaded is not None and loaded.first_seen is not None
    assert loaded.first_seen.tzinfo is not None and loaded.first_seen.utcoffset() == timedelta(0)
    assert await queries.get_incident_by_id(store, saved.id) == loaded
    assert await store.get_incident("no-such-key") is None


async def test_non_utc_timestamps_are_stored_as_the_same_instant(store: Store) -> None:
    """A timestamp in another zone comes back as the same instant, in UTC."""
    from datetime import timezone

    cet = T0.astimezone(timezone(timedelta(hours=1)))
    await store.save_incident(incident(first_seen=cet))
    loaded = await store.get_incident(incident().key)
    assert loaded is not None and loaded.first_seen == T0 and loaded.first_seen.tzinfo == UTC


async def test_save_updates_by_key_and_keeps_the_id(store: Store) -> None:
    """Saving the same key again updates the row instead of adding one."""
    first = await store.save_incident(incident())
    second = await store.save_incident(incident(pods=("p1",), pods_seen=4, status=IncidentStatus.RESOLVED))
    assert second.id == first.id
    loaded = await store.get_incident(incident().key)
    assert loaded is not None and loaded.pods == ("p1",) and loaded.pods_seen == 4
    assert loaded.status is IncidentStatus.RESOLVED


async def test_save_never_clobbers_the_thread_set_by_the_outbox(store: Store) -> None:
    """The incident book saves a copy without thread_ts: the stored thread (and its channel) stay."""
    await store.save_incident(incident(channel="C0ALERTS"))
    assert await store.set_thread(incident().key, "C0ALERTS", "1700000000.000100")
    returned = await store.save_incident(incident(channel="C0OTHER", thread_ts=None, pods_seen=9))
    assert (returned.channel, returned.thread_ts) == ("C0ALERTS", "1700000000.000100")
    loaded = await store.get_incident(incident().key)
    assert loaded is not None
    assert (loaded.channel, loaded.thread_ts, loaded.pods_seen) == ("C0ALERTS", "1700000000.000100", 9)


async def test_set_thread_is_idempotent_and_records_threads(store: Store) -> None:
    """Recording the same thread twice keeps one slack_threads row; unknown incidents are refused."""
    await store.save_incident(incident())
    assert await store.set_thread(incident().key, "C0ALERTS", "1.1")
    assert await store.set_thread(incident().key, "C0ALERTS", "1.1")
    assert await queries.incident_threads(store, incident().key) == [("C0ALERTS", "1.1")]
    assert not await store.set_thread("missing", "C0ALERTS", "1.2")


async def test_save_enqueues_outbox_in_the_same_call(store: Store) -> None:
    """The incident and its Slack writes are stored together; saving again does not enqueue twice."""
    key = incident().key
    writes = [message(key, 0, OutboxKind.POST_PARENT), message(key, 1)]
    await store.save_incident(incident(), writes)
    await store.save_incident(incident(), writes)
    pending = await queries.pending_outbox(store)
    assert [m.dedup_key for m in pending] == [w.dedup_key for w in writes]


async def test_open_and_recent_incidents(store: Store) -> None:
    """open_incidents filters by status and cluster; recent_incidents lists open ones before resolved ones."""
    await store.save_incident(incident("a", last_seen=T0))
    await store.save_incident(incident("b", last_seen=T0 + timedelta(minutes=1), cluster="c2"))
    await store.save_incident(
        incident("c", status=IncidentStatus.RESOLVED, resolved_at=T0 + timedelta(hours=1), last_seen=T0)
    )
    await store.save_incident(
        incident("d", status=IncidentStatus.RESOLVED, resolved_at=T0 + timedelta(hours=2), last_seen=T0)
    )
    assert [i.key for i in await store.open_incidents()] == ["a", "b"]
    assert [i.key for i in await store.open_incidents(cluster="c2")] == ["b"]
    assert [i.key for i in await store.recent_incidents(10)] == ["b", "a", "d", "c"]
    assert [i.key for i in await store.recent_incidents(3, cluster="c1")] == ["a", "d", "c"]


async def test_count_incidents_by_status_and_cause(store: Store) -> None:
    """Counts group by (status, cause)."""
    await store.save_incident(incident("a"))
    await store.save_incident(incident("b"))
    await store.save_incident(incident("c", cause=Cause.RATE_LIMITED, status=IncidentStatus.RESOLVED))
    assert await queries.count_incidents(store) == {
        (IncidentStatus.OPEN, Cause.PULL_SECRET_WRONG_REGISTRY): 2,
        (IncidentStatus.RESOLVED, Cause.RATE_LIMITED): 1,
    }


async def test_ping(store: Store) -> None:
    """A reachable database answers the readiness ping."""
    assert await store.ping()


async def test_two_replicas_saving_a_new_incident_make_one_row(open_store: OpenStore) -> None:
    """Two Store objects saving the same new key at once end with one row and the same id."""
    first, second = await open_store(), await open_store()
    for n in range(5):
        a, b = await asyncio.gather(
            first.save_incident(incident(f"race-{n}"), [message(f"race-{n}", 0)]),
            second.save_incident(incident(f"race-{n}", pods_seen=7), [message(f"race-{n}", 0)]),
        )
        assert a.id == b.id
    assert len(await first.open_incidents()) == 5
    assert (await first.outbox_counts())["pending"] == 5


async def test_snooze_and_mute_set_from_slack_survive_the_leaders_save(store: Store) -> None:
    """Another replica snoozes or mutes; the leader's next save of its own copy keeps both."""
    leader_copy = await store.save_incident(incident())
    until = T0 + timedelta(hours=1)
    await store.save_incident(dataclasses.replace(leader_copy, snoozed_until=until, muted=True))
    saved = await store.save_incident(dataclasses.replace(leader_copy, pods_seen=9))
    assert saved.muted is True and saved.snoozed_until == until
    stored = await store.get_incident(leader_copy.key)
    assert stored is not None and stored.muted and stored.snoozed_until == until and stored.pods_seen == 9
    later = until + timedelta(hours=2)
    assert (await store.save_incident(dataclasses.replace(saved, snoozed_until=later))).snoozed_until == later
