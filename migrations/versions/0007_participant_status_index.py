"""index participants by status and pause end

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22 04:00:00

Every dispatcher beat looks for pauses whose end date has come
(status = 'paused' AND paused_until <= today). Without an index that is a read of
the whole participants table each beat: 100,000 rows at the scale the benchmark
measures. With it, a range of the index.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_participants_status_paused_until", "participants", ["status", "paused_until"])


def downgrade() -> None:
    op.drop_index("ix_participants_status_paused_until", table_name="participants")
