"""visit-week questionnaires: the visit a response belongs to, per-participant switches

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 07:30:00

A HAQ-DI, patient global or Raynaud's diary response says which visit it belongs to
(`questionnaire_sessions.visit_week`, fixed when it is started: a response started in
one visit's period stays with that visit even if finished the next day), so the exports
put it under that visit's event and a second response for the same visit is refused.
The Raynaud's diary is switched on per participant (`participants.switches`, e.g.
`{"raynaud": true}`; a switch not set there takes the protocol's default).
The trial_questionnaire_responses view gains `visit_week`.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_questionnaire_sessions_visit"
VIEW = "trial_questionnaire_responses"


def _view(extra: str) -> str:
    """The responses view of 0006, with `extra` columns at the end."""
    j = "{}::text" if op.get_bind().dialect.name == "postgresql" else "{}"
    return f"""CREATE VIEW {VIEW} AS
        SELECT s.id AS response_id, p.study_id, s.instrument_id, s.instrument_version, s.status,
               s.started_at, s.completed_at, {j.format("s.scores")} AS scores_json,
               {j.format("s.triage")} AS triage_json{extra}
        FROM questionnaire_sessions s JOIN participants p ON p.id = s.participant_id"""


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.add_column("questionnaire_sessions", sa.Column("visit_week", sa.Integer(), nullable=True))
    op.create_index(INDEX, "questionnaire_sessions", ["participant_id", "instrument_id", "visit_week"], unique=False)
    op.add_column("participants", sa.Column("switches", _json(), nullable=True))
    op.execute(f"DROP VIEW IF EXISTS {VIEW}")
    op.execute(_view(", s.visit_week"))


def downgrade() -> None:
    # Plain ALTER TABLE … DROP COLUMN (SQLite 3.35+): a batch copy of `participants` would
    # break the trial_* views that read it.
    op.execute(f"DROP VIEW IF EXISTS {VIEW}")
    op.execute(_view(""))
    op.execute("ALTER TABLE participants DROP COLUMN switches")
    op.drop_index(INDEX, table_name="questionnaire_sessions")
    op.execute("ALTER TABLE questionnaire_sessions DROP COLUMN visit_week")
