"""The incidents and slack_threads tables: one row per incident key, and the Slack threads posted for it.

Several replicas may save the same incident: `save_incident` upserts by key under a row lock, never overwrites the
thread that `set_thread` recorded (the outbox worker owns it), and lets snooze and mute only grow.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.model import Incident, IncidentScope, IncidentStatus, OutboxMessage, WorkloadRef
from bot.store.codec import cause_from_json, diagnosis_from_json, diagnosis_to_json, enum_or, str_tuple_from_json
from bot.store.engine import Database, retry_disconnects, utcnow
from bot.store.models import INCIDENTS, SLACK_THREADS, opt_utc
from bot.store.outbox_repo import OutboxRepo, outbox_values


class IncidentsRepo:
    """Incidents (and the outbox rows saved with them); every public method is one transaction."""

    def __init__(self, db: Database, outbox: OutboxRepo) -> None:
        self._db = db
        self._outbox = outbox

    @retry_disconnects
    async def save_incident(self, incident: Incident, outbox: Sequence[OutboxMessage] = ()) -> Incident:
        """Insert or update `incident` by key and enqueue `outbox` in one transaction; return it as stored.

        The channel and thread_ts that `set_thread` recorded are never overwritten (the outbox worker owns them),
        and snooze and mute only grow (any replica may set them from Slack while the leader saves its own copy):
        the returned incident carries the stored id, channel, thread_ts, snoozed_until and muted.
        """
        now = utcnow()
        values = incident_values(incident, now)
        rows = outbox_values(outbox, now)
        async with self._db.write() as conn:
            existing = await _incident_for_update(conn, incident.key)
            row_id: int | None = None
            if existing is None:
                stmt = self._db.insert_ignoring(INCIDENTS, ["key"]).values(**values).returning(INCIDENTS.c.id)
                row_id = (await conn.execute(stmt)).scalar_one_or_none()
                if row_id is None:  # another replica inserted it meanwhile
                    existing = await _incident_for_update(conn, incident.key)
            if existing is not None:
                row_id = existing.id
                if existing.thread_ts is not None:  # set_thread recorded the thread: keep it
                    values["channel"], values["thread_ts"] = existing.channel, existing.thread_ts
                values["muted"] = bool(values["muted"] or existing.muted)
                stored_snooze = opt_utc(existing.snoozed_until)
                if stored_snooze is not None and (
                    values["snoozed_until"] is None or values["snoozed_until"] < stored_snooze
                ):
                    values["snoozed_until"] = stored_snooze
                await conn.execute(update(INCIDENTS).where(INCIDENTS.c.id == row_id).values(**values))
            if rows:
                await self._outbox.enqueue_in(conn, rows)
        return dataclasses.replace(
            incident,
            id=row_id,
            channel=values["channel"],
            thread_ts=values["thread_ts"],
            muted=values["muted"],
            snoozed_until=values["snoozed_until"],
        )

    @retry_disconnects
    async def get_incident(self, key: str) -> Incident | None:
        """The incident with this key, or None."""
        row = await self._db.read_first(select(INCIDENTS).where(INCIDENTS.c.key == key))
        return None if row is None else incident_from_row(row)

    @retry_disconnects
    async def open_incidents(self, cluster: str | None = None) -> list[Incident]:
        """Every open incident (of one cluster, if given), oldest first; what the incident book reloads on start."""
        stmt = select(INCIDENTS).where(INCIDENTS.c.status == IncidentStatus.OPEN.value).order_by(INCIDENTS.c.id)
        if cluster is not None:
            stmt = stmt.where(INCIDENTS.c.cluster == cluster)
        return [incident_from_row(r) for r in await self._db.read_all(stmt)]

    @retry_disconnects
    async def recent_incidents(self, limit: int = 20, cluster: str | None = None) -> list[Incident]:
        """Open incidents (most recently seen first), then the most recently resolved ones, at most `limit`."""
        is_resolved = case((INCIDENTS.c.status == IncidentStatus.OPEN.value, 0), else_=1)
        recency = func.coalesce(INCIDENTS.c.resolved_at, INCIDENTS.c.last_seen, INCIDENTS.c.updated_at)
        stmt = select(INCIDENTS).order_by(is_resolved, recency.desc(), INCIDENTS.c.id.desc()).limit(limit)
        if cluster is not None:
            stmt = stmt.where(INCIDENTS.c.cluster == cluster)
        return [incident_from_row(r) for r in await self._db.read_all(stmt)]


class SlackThreadsRepo:
    """The Slack threads of incidents; every public method is one transaction."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @retry_disconnects
    async def set_thread(self, incident_key: str, channel: str, ts: str) -> bool:
        """Record the Slack thread of an incident (its channel and thread_ts); idempotent; False if no incident."""
        async with self._db.write() as conn:
            return await self.set_thread_in(conn, incident_key, channel, ts)

    async def set_thread_in(self, conn: AsyncConnection, incident_key: str, channel: str, ts: str) -> bool:
        """`set_thread` inside the caller's writing transaction (the outbox's, when a parent message was sent)."""
        existing = await _incident_for_update(conn, incident_key)
        if existing is None:
            return False
        now = utcnow()
        if (existing[1], existing[2]) != (channel, ts):
            await conn.execute(
                update(INCIDENTS)
                .where(INCIDENTS.c.id == existing[0])
                .values(channel=channel, thread_ts=ts, updated_at=now)
            )
        await conn.execute(
            self._db.insert_ignoring(SLACK_THREADS, ["channel", "ts"]).values(
                incident_id=existing[0], channel=channel, ts=ts, created_at=now
            )
        )
        return True


async def _incident_for_update(conn: AsyncConnection, key: str) -> Any:
    stmt = (
        select(INCIDENTS.c.id, INCIDENTS.c.channel, INCIDENTS.c.thread_ts, INCIDENTS.c.muted, INCIDENTS.c.snoozed_until)
        .where(INCIDENTS.c.key == key)
        .with_for_update()
    )
    return (await conn.execute(stmt)).first()


# ---- row <-> dataclass ----


def incident_values(incident: Incident, now: datetime) -> dict[str, Any]:
    """The incidents row of an incident (without its id), updated at `now`."""
    return {
        "key": incident.key,
        "cluster": incident.cluster,
        "namespace": incident.namespace,
        "workload_kind": incident.workload.kind,
        "workload_name": incident.workload.name,
        "container": incident.container,
        "image": incident.image,
        "registry": incident.registry,
        "cause": incident.cause.value,
        "scope": incident.scope.value,
        "status": incident.status.value,
        "pods": list(incident.pods),
        "pods_seen": incident.pods_seen,
        "affected": list(incident.affected),
        "first_seen": opt_utc(incident.first_seen),
        "last_seen": opt_utc(incident.last_seen),
        "resolved_at": opt_utc(incident.resolved_at),
        "diagnosis": None if incident.diagnosis is None else diagnosis_to_json(incident.diagnosis),
        "channel": incident.channel,
        "thread_ts": incident.thread_ts,
        "posted_facts": list(incident.posted_facts),
        "snoozed_until": opt_utc(incident.snoozed_until),
        "muted": incident.muted,
        "parent_key": incident.parent_key,
        "reopened": incident.reopened,
        "updated_at": now,
    }


def incident_from_row(row: RowMapping) -> Incident:
    """The incident of an incidents row (unknown enum values take defaults, so old and new rows both load)."""
    diagnosis = row["diagnosis"]
    return Incident(
        key=row["key"],
        cluster=row["cluster"],
        namespace=row["namespace"],
        workload=WorkloadRef(kind=row["workload_kind"], name=row["workload_name"]),
        container=row["container"],
        image=row["image"],
        registry=row["registry"],
        cause=cause_from_json(row["cause"]),
        scope=enum_or(IncidentScope, row["scope"], IncidentScope.WORKLOAD),
        status=enum_or(IncidentStatus, row["status"], IncidentStatus.OPEN),
        id=row["id"],
        pods=str_tuple_from_json(row["pods"]),
        pods_seen=row["pods_seen"],
        affected=str_tuple_from_json(row["affected"]),
        first_seen=row["first_seen"],
        last_seen=row["last_seen"],
        resolved_at=row["resolved_at"],
        diagnosis=None if diagnosis is None else diagnosis_from_json(diagnosis),
        channel=row["channel"],
        thread_ts=row["thread_ts"],
        posted_facts=str_tuple_from_json(row["posted_facts"]),
        snoozed_until=row["snoozed_until"],
        muted=bool(row["muted"]),
        parent_key=row["parent_key"],
        reopened=row["reopened"],
    )


__all__ = ["IncidentsRepo", "SlackThreadsRepo", "incident_from_row", "incident_values"]
