"""Security (issue 18): a signed audit chain head that always exists, and the shared seen-request list.

- audit_head gains `keyed_from` (the first row chained with the HMAC key) and `signature` (HMAC of the head); the
  head row is written here when missing (from the newest audit row, or the genesis), so that a missing head always
  means a deleted one.
- seen_requests: signed Slack requests and Socket Mode envelopes already handled, shared by every replica, with an
  expiry.

Revision ID: 154c0a1a406e
Revises: 7e1a2c4b9d30
Create Date: 2026-11-30 04:30:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "154c0a1a406e"
down_revision: str | Sequence[str] | None = "7e1a2c4b9d30"  # after the Slack pacing table (both written on 2026-11-30)
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS_HASH = "0" * 64


def upgrade() -> None:
    """Upgrade the schema."""
    with op.batch_alter_table("audit_head", schema=None) as batch_op:
        batch_op.add_column(sa.Column("keyed_from", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("signature", sa.String(length=64), nullable=True))
    op.create_table(
        "seen_requests",
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_seen_requests")),
    )
    op.create_index(op.f("ix_seen_requests_expires_at"), "seen_requests", ["expires_at"], unique=False)
    bind = op.get_bind()
    if bind.execute(sa.text("SELECT 1 FROM audit_head WHERE id = 1")).first() is None:
        last = bind.execute(sa.text("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1")).first()
        last_id, last_hash = (0, GENESIS_HASH) if last is None else (int(last[0]), str(last[1]))
        bind.execute(
            sa.text("INSERT INTO audit_head (id, last_id, last_hash) VALUES (1, :last_id, :last_hash)"),
            {"last_id": last_id, "last_hash": last_hash},
        )


def downgrade() -> None:
    """Downgrade the schema (the head row stays: the initial schema reads it too)."""
    op.drop_index(op.f("ix_seen_requests_expires_at"), table_name="seen_requests")
    op.drop_table("seen_requests")
    with op.batch_alter_table("audit_head", schema=None) as batch_op:
        batch_op.drop_column("signature")
        batch_op.drop_column("keyed_from")
