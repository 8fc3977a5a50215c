"""questionnaires (issue 3): questionnaire sessions, answers, adverse events

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 00:45:48.651276
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import models.base

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[object]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "questionnaire_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("instrument_id", sa.String(length=64), nullable=False),
        sa.Column("instrument_version", sa.String(length=16), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "in_progress",
                "completed",
                "cancelled",
                "suspended",
                name="questionnaire_status",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("origin", sa.String(length=16), nullable=False),
        sa.Column("state", _json(), nullable=False),
        sa.Column("current_message_id", sa.BigInteger(), nullable=True),
        sa.Column("started_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("completed_at", models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("cancelled_at", models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("scores", _json(), nullable=True),
        sa.Column("triage", _json(), nullable=True),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participants.id"],
            name=op.f("fk_questionnaire_sessions_participant_id_participants"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_questionnaire_sessions")),
    )
    with op.batch_alter_table("questionnaire_sessions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_questionnaire_sessions_participant_status", ["participant_id", "status"], unique=False
        )

    op.create_table(
        "adverse_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("term", sa.Text(), nullable=False),
        sa.Column("onset_date", sa.Date(), nullable=True),
        sa.Column("grade", sa.Integer(), nullable=True),
        sa.Column("serious", sa.Boolean(), nullable=False),
        sa.Column("results_in_death", sa.Boolean(), nullable=False),
        sa.Column("life_threatening", sa.Boolean(), nullable=False),
        sa.Column("hospitalisation", sa.Boolean(), nullable=False),
        sa.Column("disability", sa.Boolean(), nullable=False),
        sa.Column("congenital_anomaly", sa.Boolean(), nullable=False),
        sa.Column("important_medical_event", sa.Boolean(), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=True),
        sa.Column("reported_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"], name=op.f("fk_adverse_events_alert_id_alerts")),
        sa.ForeignKeyConstraint(
            ["participant_id"], ["participants.id"], name=op.f("fk_adverse_events_participant_id_participants")
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["questionnaire_sessions.id"],
            name=op.f("fk_adverse_events_session_id_questionnaire_sessions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_adverse_events")),
        sa.UniqueConstraint("session_id", name=op.f("uq_adverse_events_session_id")),
    )
    with op.batch_alter_table("adverse_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_adverse_events_participant_id"), ["participant_id"], unique=False)

    op.create_table(
        "questionnaire_answers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.String(length=64), nullable=False),
        sa.Column("value", _json(), nullable=True),
        sa.Column("skipped", sa.Boolean(), nullable=False),
        sa.Column("answered_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("instrument_version", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["questionnaire_sessions.id"],
            name=op.f("fk_questionnaire_answers_session_id_questionnaire_sessions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_questionnaire_answers")),
    )
    with op.batch_alter_table("questionnaire_answers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_questionnaire_answers_session_id"), ["session_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("questionnaire_answers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_questionnaire_answers_session_id"))

    op.drop_table("questionnaire_answers")
    with op.batch_alter_table("adverse_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_adverse_events_participant_id"))

    op.drop_table("adverse_events")
    with op.batch_alter_table("questionnaire_sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_questionnaire_sessions_participant_status")

    op.drop_table("questionnaire_sessions")
