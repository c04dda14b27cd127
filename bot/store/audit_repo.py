"""The audit_log and audit_head tables: appending to the hash chain, listing it, verifying it.

The hashing and verification themselves are pure and live in `bot.store.audit`. Appends are serialised
(`pg_advisory_xact_lock` on PostgreSQL, the write lock of `BEGIN IMMEDIATE` on SQLite), so the chain never forks;
the `audit_head` row records the newest id and hash, so that deleting the newest rows is detected too.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.model import AuditEntry, AuditRecord
from bot.store import audit as chain
from bot.store.audit import AuditVerification
from bot.store.engine import Database, retry_disconnects
from bot.store.models import AUDIT_HEAD, AUDIT_LOG, as_utc

# Key of the PostgreSQL advisory lock that serialises appenders (any 64-bit integer unique to this application).
AUDIT_LOCK_KEY = 0x1D0C_A0D1
_AUDIT_HEAD_ID = 1
_VERIFY_PAGE = 1000


class AuditRepo:
    """The hash-chained audit log; every public method is one transaction."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @retry_disconnects
    async def append_audit(self, entry: AuditEntry) -> AuditRecord:
        """Append one hash-chained audit row; raises ValueError when its params look like a secret."""
        chain.check_params(entry.params)
        async with self._db.write() as conn:
            return await self.append_audit_in(conn, entry)

    async def append_audit_in(self, conn: AsyncConnection, entry: AuditEntry) -> AuditRecord:
        """Append one audit row inside the caller's writing transaction (another repository's)."""
        chain.check_params(entry.params)
        # Serialise appenders: an advisory lock on PostgreSQL; on SQLite BEGIN IMMEDIATE already holds the write lock.
        await self._db.advisory_xact_lock(conn, AUDIT_LOCK_KEY)
        head = (
            await conn.execute(select(AUDIT_HEAD.c.last_id, AUDIT_HEAD.c.last_hash).where(AUDIT_HEAD.c.id == 1))
        ).first()
        if head is not None:
            last_id, last_hash = int(head.last_id), str(head.last_hash)
        else:
            last = (
                await conn.execute(select(AUDIT_LOG.c.id, AUDIT_LOG.c.hash).order_by(AUDIT_LOG.c.id.desc()).limit(1))
            ).first()
            last_id, last_hash = (0, chain.GENESIS_HASH) if last is None else (int(last.id), str(last.hash))
        entry = dataclasses.replace(entry, at=as_utc(entry.at))
        record = chain.make_record(entry, last_id + 1, last_hash)
        await conn.execute(insert(AUDIT_LOG).values(**audit_values(record)))
        moved = await conn.execute(
            update(AUDIT_HEAD).where(AUDIT_HEAD.c.id == _AUDIT_HEAD_ID).values(last_id=record.id, last_hash=record.hash)
        )
        if moved.rowcount == 0:
            await conn.execute(insert(AUDIT_HEAD).values(id=_AUDIT_HEAD_ID, last_id=record.id, last_hash=record.hash))
        return record

    @retry_disconnects
    async def list_audit(self, since: datetime | None = None, limit: int = 100) -> list[AuditRecord]:
        """Audit rows in id order: the first `limit` at or after `since`, or (without `since`) the newest `limit`."""
        if since is not None:
            stmt = select(AUDIT_LOG).where(AUDIT_LOG.c.at >= since).order_by(AUDIT_LOG.c.id).limit(limit)
        else:
            stmt = select(AUDIT_LOG).order_by(AUDIT_LOG.c.id.desc()).limit(limit)
        rows = await self._db.read_all(stmt)
        records = [audit_from_row(r) for r in rows]
        return records if since is not None else records[::-1]

    @retry_disconnects
    async def verify_audit(self) -> AuditVerification:
        """Walk the whole chain in one consistent snapshot and report the first edited, deleted or reordered row."""
        verifier = chain.ChainVerifier()
        async with self._db.read() as conn:
            if self._db.pg:
                await conn.execution_options(isolation_level="REPEATABLE READ")
            head_row = (
                await conn.execute(select(AUDIT_HEAD.c.last_id, AUDIT_HEAD.c.last_hash).where(AUDIT_HEAD.c.id == 1))
            ).first()
            after = -1  # ids are >= 1; -1 also lets a tampered id 0 or below show up
            while not verifier.broken:
                stmt = select(AUDIT_LOG).where(AUDIT_LOG.c.id > after).order_by(AUDIT_LOG.c.id).limit(_VERIFY_PAGE)
                rows = (await conn.execute(stmt)).mappings().all()
                for row in rows:
                    verifier.feed(audit_from_row(row))
                if len(rows) < _VERIFY_PAGE:
                    break
                after = rows[-1]["id"]
        head = None if head_row is None else (int(head_row.last_id), str(head_row.last_hash))
        return verifier.finish(head)


# ---- row <-> dataclass ----


def audit_values(record: AuditRecord) -> dict[str, Any]:
    """The audit_log row of a record."""
    e = record.entry
    return {
        "id": record.id,
        "at": e.at,
        "actor_id": e.actor_id,
        "actor_name": e.actor_name,
        "action": e.action,
        "target": e.target,
        "params": dict(e.params),
        "result": e.result,
        "proposal_id": e.proposal_id,
        "incident_key": e.incident_key,
        "prev_hash": record.prev_hash,
        "hash": record.hash,
    }


def audit_from_row(row: RowMapping) -> AuditRecord:
    """The record of an audit_log row, exactly as stored (so that verification sees any tampering)."""
    entry = AuditEntry(
        actor_id=row["actor_id"],
        actor_name=row["actor_name"],
        action=row["action"],
        target=row["target"],
        # The raw mapping (not filtered) so that a tampered non-string value still changes the hash.
        params=dict(row["params"]) if isinstance(row["params"], dict) else {"": repr(row["params"])},
        result=row["result"],
        at=row["at"],
        proposal_id=row["proposal_id"],
        incident_key=row["incident_key"],
    )
    return AuditRecord(entry=entry, id=row["id"], prev_hash=row["prev_hash"], hash=row["hash"])


__all__ = ["AUDIT_LOCK_KEY", "AuditRepo", "audit_from_row", "audit_values"]
