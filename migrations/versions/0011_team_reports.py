"""team reports (the Sunday overview, once)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 05:40:00

The trial-at-a-glance picture goes to the coordinator chats every Sunday at 08:00.
With two bot processes on one database it must go once: a row per (kind, period),
inserted by the process that sends it (the unique key refuses the second), with a
short lease so a failed send is taken up again.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "team_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("period", sa.String(length=32), nullable=False),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("chats_sent", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_team_reports")),
        sa.UniqueConstraint("kind", "period", name="uq_team_reports_kind_period"),
    )


def downgrade() -> None:
    op.drop_table("team_reports")
