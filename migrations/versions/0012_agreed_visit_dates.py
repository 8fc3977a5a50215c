"""agreed visit dates and protocol deviations

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 07:40:00

`/visit STUDY_ID WEEK on DATE` stores the date agreed with the participant after
"I need another date": who agreed it and when, and whether it lies outside the
protocol window (a protocol deviation, confirmed by the admin). The trial_visits
view gains `agreed_date`, `agreed_at` and `deviation` (recreated around the table
change: SQLite rebuilds a table on a dropped column, which a view on it would block).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = """p.study_id, v.week, v.target_date, v.visit_date, v.window_start, v.window_end,
                   v.status, v.attended_on, v.reschedule_requested_at, v.recorded_at"""
_FROM = "FROM clinic_visits v JOIN participants p ON p.id = v.participant_id"


def _view(extra: str) -> str:
    return f"CREATE VIEW trial_visits AS SELECT {_COLUMNS}{extra} {_FROM}"


def upgrade() -> None:
    op.execute("DROP VIEW IF EXISTS trial_visits")
    with op.batch_alter_table("clinic_visits", schema=None) as batch_op:
        batch_op.add_column(sa.Column("agreed_date", sa.Date(), nullable=True))
        batch_op.add_column(sa.Column("agreed_by", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("agreed_at", models.base.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("deviation", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.execute(_view(", v.agreed_date, v.agreed_at, v.deviation"))


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS trial_visits")
    with op.batch_alter_table("clinic_visits", schema=None) as batch_op:
        batch_op.drop_column("deviation")
        batch_op.drop_column("agreed_at")
        batch_op.drop_column("agreed_by")
        batch_op.drop_column("agreed_date")
    op.execute(_view(""))
