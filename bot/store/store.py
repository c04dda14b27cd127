"""The SQL store: incidents, Slack threads, the outbox, proposals and the hash-chained audit log.

One `Store` wraps one `AsyncEngine` (SQLite through aiosqlite, or PostgreSQL through asyncpg). It never migrates:
run `bot.store.migrate.upgrade(url)` first. Several replicas may share one PostgreSQL database:

- outbox rows are claimed with a lease, so two workers never send the same row and one incident's rows stay in
  order (`bot.store.outbox_repo`);
- proposals change state only by compare-and-set, so an approved action runs once (`bot.store.proposals_repo`);
- audit appends are serialised, so the chain never forks (`bot.store.audit_repo`);
- a method whose connection the server dropped runs again on a new one, unless the drop happened while committing;
  on SQLite writers begin with `BEGIN IMMEDIATE`, which gives the same guarantees to several `Store` objects (or
  processes) sharing one file; all timestamps are timezone-aware UTC (`bot.store.engine`).

`Store` is a facade: its methods delegate to one repository per table (`incidents`, `threads`, `outbox`,
`proposals`, `audit`), which share one `Database`. Every public method is one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.model import AuditEntry, AuditRecord, Incident, OutboxMessage, Proposal, ProposalStatus
from bot.store.audit import AuditVerification
from bot.store.audit_repo import AuditRepo
from bot.store.engine import Database, make_engine, utcnow
from bot.store.incidents_repo import IncidentsRepo, SlackThreadsRepo
from bot.store.outbox_repo import OutboxRepo, PaceRepo
from bot.store.proposals_repo import ProposalsRepo, proposal_target
from bot.store.seen_repo import SeenRequestsRepo


class Store:
    """Async access to the bot's tables; every public method is one transaction."""

    def __init__(self, engine: AsyncEngine, *, audit_key: bytes | None = None) -> None:
        self._db = Database(engine)
        self.dialect: str = self._db.dialect
        self.audit = AuditRepo(self._db, audit_key)
        self.proposals = ProposalsRepo(self._db, self.audit)
        self.threads = SlackThreadsRepo(self._db)
        self.outbox = OutboxRepo(self._db, self.threads)
        self.pace = PaceRepo(self._db)
        self.incidents = IncidentsRepo(self._db, self.outbox)
        self.seen = SeenRequestsRepo(self._db)

    @classmethod
    async def open(cls, url: str, *, echo: bool = False, audit_key: bytes | None = None) -> Store:
        """Connect to `url` (runs no migration; raises if the database cannot be reached); `audit_key` keys the audit
        chain (HMAC-SHA256, see `bot.store.audit`)."""
        store = cls(make_engine(url, echo=echo), audit_key=audit_key)
        try:
            await store._db.check()
        except BaseException:
            await store.close()
            raise
        return store

    async def close(self) -> None:
        """Close every pooled connection."""
        await self._db.close()

    @property
    def engine(self) -> AsyncEngine:
        """The underlying engine (for tests and health checks)."""
        return self._db.engine

    async def ping(self, timeout: float = 2.0) -> bool:
        """Tell whether the database answers `SELECT 1` within `timeout` seconds (for /readyz)."""
        return await self._db.ping(timeout)

    # ---- incidents and their Slack threads (bot.store.incidents_repo) ----

    async def save_incident(self, incident: Incident, outbox: Sequence[OutboxMessage] = ()) -> Incident:
        """Insert or update `incident` by key and enqueue `outbox` in one transaction; return it as stored."""
        return await self.incidents.save_incident(incident, outbox)

    async def get_incident(self, key: str) -> Incident | None:
        """The incident with this key, or None."""
        return await self.incidents.get_incident(key)

    async def open_incidents(self, cluster: str | None = None) -> list[Incident]:
        """Every open incident (of one cluster, if given), oldest first."""
        return await self.incidents.open_incidents(cluster)

    async def recent_incidents(self, limit: int = 20, cluster: str | None = None) -> list[Incident]:
        """Open incidents (most recently seen first), then the most recently resolved ones, at most `limit`."""
        return await self.incidents.recent_incidents(limit, cluster)

    async def set_thread(self, incident_key: str, channel: str, ts: str) -> bool:
        """Record the Slack thread of an incident (its channel and thread_ts); idempotent; False if no incident."""
        return await self.threads.set_thread(incident_key, channel, ts)

    # ---- outbox (bot.store.outbox_repo) ----

    async def enqueue(self, messages: Sequence[OutboxMessage]) -> int:
        """Record Slack writes, skipping dedup_keys already stored; returns how many were new."""
        return await self.outbox.enqueue(messages)

    async def claim_outbox(
        self, limit: int, worker_id: str, lease_s: float, now: datetime | None = None
    ) -> list[OutboxMessage]:
        """Lease up to `limit` due rows to `worker_id` for `lease_s` seconds, in id order; safe across replicas."""
        return await self.outbox.claim_outbox(limit, worker_id, lease_s, now)

    async def release_claims(self, worker_id: str) -> int:
        """Give back the pending rows a previous run of `worker_id` had claimed; returns how many."""
        return await self.outbox.release_claims(worker_id)

    async def outbox_attempts(self, outbox_id: int) -> int | None:
        """How many failed attempts a row has had (None if no such row)."""
        return await self.outbox.outbox_attempts(outbox_id)

    async def mark_outbox_sent(self, outbox_id: int, ts: str | None, now: datetime | None = None) -> bool:
        """Mark a row sent with the message ts Slack returned; a sent parent also records the incident's thread."""
        return await self.outbox.mark_outbox_sent(outbox_id, ts, now)

    async def mark_outbox_retry(self, outbox_id: int, not_before: datetime, error: str) -> bool:
        """Count a failed attempt and keep the row pending until `not_before` (the error is scrubbed of secrets)."""
        return await self.outbox.mark_outbox_retry(outbox_id, not_before, error)

    async def mark_outbox_failed(self, outbox_id: int, error: str) -> bool:
        """Count a last failed attempt and give up on the row (the error is scrubbed of secrets)."""
        return await self.outbox.mark_outbox_failed(outbox_id, error)

    async def reserve_slack_slot(self, bucket: str, interval_s: float, burst: int) -> float:
        """Reserve the next Slack send of `bucket` (a channel ID, or "chat.update") across every replica; returns
        the seconds to wait before sending."""
        return await self.pace.reserve(bucket, interval_s, burst)

    async def outbox_counts(self) -> dict[str, int]:
        """Row counts by outbox status (every status present, zero if none)."""
        return await self.outbox.outbox_counts()

    # ---- proposals (bot.store.proposals_repo) ----

    async def create_proposal(self, proposal: Proposal, audit: AuditEntry | None = None) -> Proposal:
        """Store a new proposal (and, if given, its audit row in the same transaction); returns it with its id."""
        return await self.proposals.create_proposal(proposal, audit)

    async def get_proposal(self, proposal_id: int) -> Proposal | None:
        """The proposal with this id, or None."""
        return await self.proposals.get_proposal(proposal_id)

    async def pending_proposals(self) -> list[Proposal]:
        """Every proposal still waiting for a decision, oldest first."""
        return await self.proposals.pending_proposals()

    async def transition_proposal(
        self,
        proposal_id: int,
        expected: ProposalStatus,
        new: ProposalStatus,
        *,
        decided_by: str | None = None,
        result: str | None = None,
        now: datetime | None = None,
        audit: AuditEntry | None = None,
        params_update: dict[str, str] | None = None,
    ) -> Proposal | None:
        """Atomically move a proposal from `expected` to `new` (merging `params_update` into its params); None if
        its status was not `expected`."""
        return await self.proposals.transition_proposal(
            proposal_id,
            expected,
            new,
            decided_by=decided_by,
            result=result,
            now=now,
            audit=audit,
            params_update=params_update,
        )

    async def expire_proposals(
        self, now: datetime | None = None, *, audit: bool = False, approved_before: datetime | None = None
    ) -> int:
        """Mark pending proposals whose expiry has passed (and, with `approved_before`, approved ones nobody claimed
        in time) as expired; returns how many."""
        return await self.proposals.expire_proposals(now, audit=audit, approved_before=approved_before)

    # ---- audit (bot.store.audit_repo) ----

    async def append_audit(self, entry: AuditEntry) -> AuditRecord:
        """Append one hash-chained audit row; raises ValueError when its params look like a secret."""
        return await self.audit.append_audit(entry)

    async def list_audit(self, since: datetime | None = None, limit: int = 100) -> list[AuditRecord]:
        """Audit rows in id order: the first `limit` at or after `since`, or (without `since`) the newest `limit`."""
        return await self.audit.list_audit(since, limit)

    async def first_delivery(self, key: str, ttl_s: float) -> bool:
        """Record a Slack request or envelope key; True unless any replica saw it within `ttl_s` (see seen_repo)."""
        return await self.seen.first_time(key, ttl_s)

    async def adopt_unkeyed_audit(self) -> AuditVerification:
        """Sign the head of an audit chain written before the HMAC key was set, once it verifies (operator's step)."""
        return await self.audit.adopt_unkeyed()

    async def verify_audit(self) -> AuditVerification:
        """Walk the whole chain in one consistent snapshot and report the first edited, deleted or reordered row."""
        return await self.audit.verify_audit()


__all__ = ["AuditVerification", "Store", "make_engine", "proposal_target", "utcnow"]
