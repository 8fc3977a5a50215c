"""staff-recorded adverse events

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 04:30:00

A coordinator records a serious event they learned of by phone (a death, an
admission) with `/sae` or `python -m bot.admin sae`: the same adverse-event row
as a participant's /report, without a questionnaire session, with who recorded
it and their note. The trial_adverse_events view gains `source` and
`recorded_by` (the role only: admin, cli; it is rebuilt around the table change: SQLite rebuilds the
table, which a view on it would block).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = """e.id AS ae_id, p.study_id, e.session_id AS response_id, e.category, e.term, e.onset_date,
                   e.grade, e.serious, e.results_in_death, e.life_threatening, e.hospitalisation,
                   e.disability, e.congenital_anomaly, e.important_medical_event, e.reported_at, e.alert_id"""
_FROM = "FROM adverse_events e JOIN participants p ON p.id = e.participant_id"


# The view shows the recorder's role only (no Telegram id or login name in the views).
_ROLE = (
    "CASE WHEN e.recorded_by IS NULL THEN NULL WHEN e.recorded_by LIKE 'admin:%' THEN 'admin' "
    "WHEN e.recorded_by LIKE 'cli:%' THEN 'cli' ELSE 'staff' END"
)


def _view(extra: str) -> str:
    return f"CREATE VIEW trial_adverse_events AS SELECT {_COLUMNS}{extra} {_FROM}"


def upgrade() -> None:
    op.execute("DROP VIEW IF EXISTS trial_adverse_events")
    with op.batch_alter_table("adverse_events", schema=None) as batch_op:
        batch_op.alter_column("session_id", existing_type=sa.Integer(), nullable=True)
        batch_op.add_column(sa.Column("source", sa.String(length=16), server_default="participant", nullable=False))
        batch_op.add_column(sa.Column("recorded_by", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("note", sa.Text(), nullable=True))
    op.execute(_view(f", e.source, {_ROLE} AS recorded_by, e.complete"))


def downgrade() -> None:
    staff_rows = op.get_bind().scalar(sa.text("SELECT count(*) FROM adverse_events WHERE session_id IS NULL"))
    if staff_rows:  # serious events must never vanish in a downgrade: export them, then decide
        raise RuntimeError(f"{staff_rows} staff-recorded adverse event(s) exist; 0009 cannot be undone")
    op.execute("DROP VIEW IF EXISTS trial_adverse_events")
    with op.batch_alter_table("adverse_events", schema=None) as batch_op:
        batch_op.drop_column("note")
        batch_op.drop_column("recorded_by")
        batch_op.drop_column("source")
        batch_op.alter_column("session_id", existing_type=sa.Integer(), nullable=False)
    op.execute(_view(""))
