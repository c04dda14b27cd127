"""SQLAlchemy 2 table models: incidents, slack_threads, outbox, proposals, audit_log and the audit chain head.

Every column is portable between SQLite and PostgreSQL: enums are stored as their string values, structured values
as JSON, and timestamps as timezone-aware UTC (`UTCDateTime` restores the zone SQLite drops).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Outbox row states; a pending row may also carry a lease (claimed_by, claimed_until) while a worker sends it.
OUTBOX_PENDING = "pending"
OUTBOX_SENT = "sent"
OUTBOX_FAILED = "failed"
OUTBOX_STATUSES: tuple[str, ...] = (OUTBOX_PENDING, OUTBOX_SENT, OUTBOX_FAILED)


def as_utc(value: datetime) -> datetime:
    """Return `value` in UTC; a naive datetime is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def opt_utc(value: datetime | None) -> datetime | None:
    """`as_utc`, letting None through."""
    return None if value is None else as_utc(value)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite returns naive values: they are UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Convert to UTC before writing."""
        return None if value is None else as_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Attach UTC to what the driver returns."""
        return None if value is None else as_utc(value)


class Base(DeclarativeBase):
    """Declarative base whose metadata names constraints deterministically (Alembic compares by name)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class IncidentRow(Base):
    """One incident, i.e. one Slack thread for its whole life."""

    __tablename__ = "incidents"
    __table_args__ = (
        UniqueConstraint("key"),
        Index(None, "status", "cluster"),
        Index(None, "parent_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(255))
    cluster: Mapped[str] = mapped_column(String(253))
    namespace: Mapped[str] = mapped_column(String(253))
    workload_kind: Mapped[str] = mapped_column(String(64))
    workload_name: Mapped[str] = mapped_column(String(253))
    container: Mapped[str] = mapped_column(String(253))
    image: Mapped[str] = mapped_column(Text)
    # The attribute cannot be called `registry` (reserved by Declarative); the column is.
    registry_host: Mapped[str] = mapped_column("registry", String(253))
    cause: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    pods: Mapped[list[Any]] = mapped_column(JSON)
    pods_seen: Mapped[int] = mapped_column(Integer)
    affected: Mapped[list[Any]] = mapped_column(JSON)
    first_seen: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_seen: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    diagnosis: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    channel: Mapped[str] = mapped_column(String(255))
    thread_ts: Mapped[str | None] = mapped_column(String(64))
    posted_facts: Mapped[list[Any]] = mapped_column(JSON)
    snoozed_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    muted: Mapped[bool] = mapped_column(Boolean)
    parent_key: Mapped[str | None] = mapped_column(String(255))
    reopened: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SlackThreadRow(Base):
    """A Slack thread (channel, ts) posted for an incident."""

    __tablename__ = "slack_threads"
    __table_args__ = (UniqueConstraint("channel", "ts"), Index(None, "incident_id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[int] = mapped_column(Integer, ForeignKey("incidents.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(255))
    ts: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class OutboxRow(Base):
    """A Slack write recorded before it is sent; `dedup_key` makes enqueueing idempotent."""

    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("dedup_key"),
        Index(None, "status", "not_before"),
        Index(None, "incident_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    incident_key: Mapped[str] = mapped_column(String(255))
    channel: Mapped[str] = mapped_column(String(255))
    text: Mapped[str] = mapped_column(Text)
    blocks: Mapped[list[Any]] = mapped_column(JSON)
    dedup_key: Mapped[str] = mapped_column(String(255))
    user: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    not_before: Mapped[datetime] = mapped_column(UTCDateTime())
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    sent_ts: Mapped[str | None] = mapped_column(String(64))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ProposalRow(Base):
    """A fix waiting for approval; its status changes only by compare-and-set."""

    __tablename__ = "proposals"
    __table_args__ = (Index(None, "status", "expires_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    action: Mapped[str] = mapped_column(String(32))
    cluster: Mapped[str] = mapped_column(String(253))
    namespace: Mapped[str] = mapped_column(String(253))
    target: Mapped[str] = mapped_column(String(253))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    requested_by: Mapped[str] = mapped_column(String(64))
    requested_by_name: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    incident_key: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    result: Mapped[str | None] = mapped_column(Text)


class AuditLogRow(Base):
    """One append-only, hash-chained audit row; ids are assigned by the appender, gap-free from 1."""

    __tablename__ = "audit_log"
    __table_args__ = (UniqueConstraint("hash"), Index(None, "at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor_id: Mapped[str] = mapped_column(String(64))
    actor_name: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(Text)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    result: Mapped[str] = mapped_column(Text)
    proposal_id: Mapped[int | None] = mapped_column(Integer)
    incident_key: Mapped[str | None] = mapped_column(String(255))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHeadRow(Base):
    """The last (id, hash) of the audit chain, so that deleting the newest rows is detected too; signed (HMAC) with
    the audit key from `keyed_from` on (the first row chained with that key; None: an unkeyed chain)."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_id: Mapped[int] = mapped_column(Integer)
    last_hash: Mapped[str] = mapped_column(String(64))
    keyed_from: Mapped[int | None] = mapped_column(Integer, nullable=True)
    signature: Mapped[str | None] = mapped_column(String(64), nullable=True)


class SeenRequestRow(Base):
    """A signed Slack request or Socket Mode envelope already handled, shared by every replica until it expires."""

    __tablename__ = "seen_requests"
    __table_args__ = (Index(None, "expires_at"),)

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


metadata: MetaData = Base.metadata


class SlackPaceRow(Base):
    """Slack's pace per channel (and for chat.update, workspace-wide), shared by every replica's outbox worker:
    the theoretical arrival time of the next message (epoch seconds) of a generic cell rate algorithm."""

    __tablename__ = "slack_pace"

    bucket: Mapped[str] = mapped_column(String(255), primary_key=True)
    next_at: Mapped[float] = mapped_column(Float)


INCIDENTS = cast(Table, IncidentRow.__table__)
SLACK_THREADS = cast(Table, SlackThreadRow.__table__)
OUTBOX = cast(Table, OutboxRow.__table__)
PROPOSALS = cast(Table, ProposalRow.__table__)
AUDIT_LOG = cast(Table, AuditLogRow.__table__)
AUDIT_HEAD = cast(Table, AuditHeadRow.__table__)
SLACK_PACE = cast(Table, SlackPaceRow.__table__)
SEEN_REQUESTS = cast(Table, SeenRequestRow.__table__)

ALL_TABLES: tuple[Table, ...] = (
    INCIDENTS,
    SLACK_THREADS,
    OUTBOX,
    PROPOSALS,
    AUDIT_LOG,
    AUDIT_HEAD,
    SLACK_PACE,
    SEEN_REQUESTS,
)
