"""schedule (issue 4): planned messages, dose log, clinic visits, reachability

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 00:45:49.329604
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import models.base

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=16)


def upgrade() -> None:
    op.create_table(
        "clinic_visits",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("week", sa.Integer(), nullable=False),
        sa.Column("target_date", sa.Date(), nullable=False),
        sa.Column("visit_date", sa.Date(), nullable=False),
        sa.Column("window_start", sa.Date(), nullable=False),
        sa.Column("window_end", sa.Date(), nullable=False),
        sa.Column("status", _enum("visit_status", "planned", "done", "missed"), nullable=False),
        sa.Column("attended_on", sa.Date(), nullable=True),
        sa.Column("recorded_by", sa.String(length=64), nullable=True),
        sa.Column("recorded_at", models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("will_come_at", models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("reschedule_requested_at", models.base.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["participant_id"], ["participants.id"], name=op.f("fk_clinic_visits_participant_id_participants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clinic_visits")),
        sa.UniqueConstraint("participant_id", "week", name="uq_clinic_visits_participant_week"),
    )
    op.create_table(
        "dose_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("reminder_key", sa.String(length=96), nullable=False),
        sa.Column("regimen", sa.String(length=32), nullable=False),
        sa.Column("drug", sa.String(length=64), nullable=False),
        sa.Column("dose_date", sa.Date(), nullable=False),
        sa.Column("planned_time", sa.Time(), nullable=False),
        sa.Column("reminded_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("answer", _enum("dose_answer", "taken", "skipped", "later", "no_answer"), nullable=True),
        sa.Column("answered_at", models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("later_count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["participant_id"], ["participants.id"], name=op.f("fk_dose_log_participant_id_participants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dose_log")),
        sa.UniqueConstraint("participant_id", "reminder_key", name="uq_dose_log_participant_reminder"),
    )
    with op.batch_alter_table("dose_log", schema=None) as batch_op:
        batch_op.create_index("ix_dose_log_participant_date", ["participant_id", "dose_date"], unique=False)

    op.create_table(
        "participant_reach",
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("unreachable_since", models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("notified_at", models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["participant_id"], ["participants.id"], name=op.f("fk_participant_reach_participant_id_participants")
        ),
        sa.PrimaryKeyConstraint("participant_id", name=op.f("pk_participant_reach")),
    )
    op.create_table(
        "scheduled_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=96), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("due_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("stale_after", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("respects_quiet_hours", sa.Boolean(), nullable=False),
        sa.Column(
            "payload", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.Column(
            "status",
            _enum("message_status", "planned", "sending", "sent", "skipped", "cancelled", "failed"),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("claim_token", sa.String(length=32), nullable=True),
        sa.Column("claimed_until", models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("sent_at", models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("telegram_message_id", sa.BigInteger(), nullable=True),
        sa.Column("last_error", sa.String(length=200), nullable=True),
        sa.Column("created_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["participant_id"], ["participants.id"], name=op.f("fk_scheduled_messages_participant_id_participants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scheduled_messages")),
        sa.UniqueConstraint("participant_id", "key", name="uq_scheduled_messages_participant_key"),
    )
    with op.batch_alter_table("scheduled_messages", schema=None) as batch_op:
        batch_op.create_index("ix_scheduled_messages_due", ["status", "next_attempt_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_scheduled_messages_participant_id"), ["participant_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("scheduled_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_scheduled_messages_participant_id"))
        batch_op.drop_index("ix_scheduled_messages_due")
    op.drop_table("scheduled_messages")
    op.drop_table("participant_reach")
    with op.batch_alter_table("dose_log", schema=None) as batch_op:
        batch_op.drop_index("ix_dose_log_participant_date")
    op.drop_table("dose_log")
    op.drop_table("clinic_visits")
