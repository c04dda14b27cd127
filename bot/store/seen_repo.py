"""The seen_requests table: signed Slack requests and Socket Mode envelopes already handled, shared by replicas.

A replayed signed request (same timestamp and signature) or a redelivered envelope (same envelope id) reaches any
replica; each replica asks this table, so the second delivery is refused everywhere. Rows expire (their key can
no longer be replayed once Bolt's five-minute timestamp window has passed) and are deleted lazily.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from sqlalchemy import delete

from bot.store.engine import Database, retry_disconnects, utcnow
from bot.store.models import SEEN_REQUESTS

_KEY_MAX = 128


class SeenRequestsRepo:
    """`first_time(key)`: True for exactly one caller per key until the row expires."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @retry_disconnects
    async def first_time(self, key: str, ttl_s: float, now: datetime | None = None) -> bool:
        """Record `key`; True unless some replica recorded it and it has not expired."""
        now = now or utcnow()
        if len(key) > _KEY_MAX:
            key = "sha256:" + hashlib.sha256(key.encode()).hexdigest()
        async with self._db.write() as conn:
            await conn.execute(delete(SEEN_REQUESTS).where(SEEN_REQUESTS.c.expires_at <= now))
            stmt = self._db.insert_ignoring(SEEN_REQUESTS, ["key"]).values(
                key=key, expires_at=now + timedelta(seconds=ttl_s)
            )
            return bool((await conn.execute(stmt)).rowcount == 1)
