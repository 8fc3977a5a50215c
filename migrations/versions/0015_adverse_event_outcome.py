"""adverse event outcome

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 07:45:00

Every adverse event carries its outcome when known (CDISC AEOUT-like: recovered,
recovering, not_recovered, recovered_with_sequelae, fatal, unknown; empty: not
recorded yet), set by the study team with `/outcome` or `python -m cli outcome`
(audited), and when it was set. The trial_adverse_events view gains both (it is
rebuilt around the table change: SQLite rebuilds the table, which a view on it
would block).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = """e.id AS ae_id, p.study_id, e.session_id AS response_id, e.category, e.term, e.onset_date,
                   e.grade, e.serious, e.results_in_death, e.life_threatening, e.hospitalisation,
                   e.disability, e.congenital_anomaly, e.important_medical_event, e.reported_at, e.alert_id"""
_FROM = "FROM adverse_events e JOIN participants p ON p.id = e.participant_id"
# The view shows the recorder's role only (no Telegram id or login name in the views), as 0009.
_ROLE = (
    "CASE WHEN e.recorded_by IS NULL THEN NULL WHEN e.recorded_by LIKE 'admin:%' THEN 'admin' "
    "WHEN e.recorded_by LIKE 'cli:%' THEN 'cli' ELSE 'staff' END"
)
_BEFORE = f", e.source, {_ROLE} AS recorded_by, e.complete"


def _view(extra: str) -> str:
    return f"CREATE VIEW trial_adverse_events AS SELECT {_COLUMNS}{extra} {_FROM}"


def upgrade() -> None:
    op.execute("DROP VIEW IF EXISTS trial_adverse_events")
    with op.batch_alter_table("adverse_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("outcome", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("outcome_at", models.base.UTCDateTime(timezone=True), nullable=True))
    op.execute(_view(f"{_BEFORE}, e.outcome, e.outcome_at"))


def downgrade() -> None:
    recorded = op.get_bind().scalar(sa.text("SELECT count(*) FROM adverse_events WHERE outcome IS NOT NULL"))
    if recorded:  # a recorded outcome must never vanish in a downgrade: export it, then decide
        raise RuntimeError(f"{recorded} adverse event outcome(s) recorded; 0015 cannot be undone")
    op.execute("DROP VIEW IF EXISTS trial_adverse_events")
    with op.batch_alter_table("adverse_events", schema=None) as batch_op:
        batch_op.drop_column("outcome_at")
        batch_op.drop_column("outcome")
    op.execute(_view(_BEFORE))
