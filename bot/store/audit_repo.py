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


class AuditTampered(RuntimeError):
    """The chain head is missing or forged: nothing is appended (fail closed) until an operator looks."""


class AuditRepo:
    """The hash-chained audit log (HMAC-keyed with `key`, see `bot.store.audit`); every public method is one
    transaction."""

    def __init__(self, db: Database, key: bytes | None = None) -> None:
        self._db = db
        self._key = key

    async def _head(self, conn: AsyncConnection) -> chain.ChainHead | None:
        row = (
            await conn.execute(
                select(
                    AUDIT_HEAD.c.last_id, AUDIT_HEAD.c.last_hash, AUDIT_HEAD.c.keyed_from, AUDIT_HEAD.c.signature
                ).where(AUDIT_HEAD.c.id == _AUDIT_HEAD_ID)
            )
        ).first()
        if row is None:
            return None
        return chain.ChainHead(int(row.last_id), str(row.last_hash), row.keyed_from, row.signature)

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
        head = await self._head(conn)
        if head is None:
            # The migration writes the head; without it the log (or its head) was deleted. Starting a fresh chain
            # would hide that, so nothing is appended until someone looks (`imagepull-doctor audit verify`).
            raise AuditTampered("the audit chain head is missing; run `imagepull-doctor audit verify`")
        keyed_from = head.keyed_from
        if head.signature is not None:
            if self._key is None:
                raise AuditTampered("the audit chain is keyed; the bot needs audit.hmac_key to append to it")
            if not chain.head_is_authentic(head, self._key):
                raise AuditTampered("the audit chain head's signature is wrong; run `imagepull-doctor audit verify`")
        elif head.last_id > 0 and self._key is not None:
            # An unsigned head over rows while a key is set: a chain from before the key, or a rewritten chain
            # downgraded to unkeyed hashes. Appending would sign it; only an operator adopts it (`audit adopt`).
            raise AuditTampered(chain.UNSIGNED_HEAD)
        entry = dataclasses.replace(entry, at=as_utc(entry.at))
        record_id = head.last_id + 1
        if self._key is not None and keyed_from is None:
            keyed_from = record_id
        record = chain.make_record(entry, record_id, head.last_hash, self._key if keyed_from is not None else None)
        await conn.execute(insert(AUDIT_LOG).values(**audit_values(record)))
        signature = (
            chain.head_signature(self._key, record.id, record.hash, keyed_from) if self._key is not None else None
        )
        await conn.execute(
            update(AUDIT_HEAD)
            .where(AUDIT_HEAD.c.id == _AUDIT_HEAD_ID)
            .values(last_id=record.id, last_hash=record.hash, keyed_from=keyed_from, signature=signature)
        )
        return record

    async def adopt_unkeyed(self) -> AuditVerification:
        """Sign the head of a chain written before the key was set, once its unkeyed hashes verify."""
        if self._key is None:
            raise ValueError("audit.hmac_key is not set")
        async with self._db.write() as conn:
            await self._db.advisory_xact_lock(conn, AUDIT_LOCK_KEY)
            head = await self._head(conn)
            if head is None or head.signature is not None:
                return chain.check_head(head, self._key) or AuditVerification(True, 0, reason="already signed")
            verifier = chain.ChainVerifier()
            rows = (await conn.execute(select(AUDIT_LOG).order_by(AUDIT_LOG.c.id))).mappings().all()
            for row in rows:
                verifier.feed(audit_from_row(row))
            verdict = verifier.finish((head.last_id, head.last_hash))
            if not verdict.ok:
                return verdict
            keyed_from = head.last_id + 1
            signature = chain.head_signature(self._key, head.last_id, head.last_hash, keyed_from)
            await conn.execute(
                update(AUDIT_HEAD)
                .where(AUDIT_HEAD.c.id == _AUDIT_HEAD_ID)
                .values(keyed_from=keyed_from, signature=signature)
            )
            return verdict

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
        async with self._db.read() as conn:
            if self._db.pg:
                await conn.execution_options(isolation_level="REPEATABLE READ")
            head = await self._head(conn)
            verdict = chain.check_head(head, self._key)
            if verdict is not None:
                return verdict
            verifier = chain.ChainVerifier(self._key, head.keyed_from if head is not None else None)
            after = -1  # ids are >= 1; -1 also lets a tampered id 0 or below show up
            while not verifier.broken:
                stmt = select(AUDIT_LOG).where(AUDIT_LOG.c.id > after).order_by(AUDIT_LOG.c.id).limit(_VERIFY_PAGE)
                rows = (await conn.execute(stmt)).mappings().all()
                for row in rows:
                    verifier.feed(audit_from_row(row))
                if len(rows) < _VERIFY_PAGE:
                    break
                after = rows[-1]["id"]
        return verifier.finish(None if head is None else (head.last_id, head.last_hash))


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


__all__ = ["AUDIT_LOCK_KEY", "AuditRepo", "AuditTampered", "audit_from_row", "audit_values"]
