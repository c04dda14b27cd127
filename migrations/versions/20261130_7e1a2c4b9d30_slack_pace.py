"""Slack's pace shared by every replica's outbox worker (slack_pace).

Revision ID: 7e1a2c4b9d30
Revises: 5bdcfd506551
Create Date: 2026-11-30 04:40:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7e1a2c4b9d30"
down_revision: str | Sequence[str] | None = "5bdcfd506551"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade the schema."""
    op.create_table(
        "slack_pace",
        sa.Column("bucket", sa.String(length=255), nullable=False),
        sa.Column("next_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("bucket", name=op.f("pk_slack_pace")),
    )


def downgrade() -> None:
    """Downgrade the schema."""
    op.drop_table("slack_pace")
