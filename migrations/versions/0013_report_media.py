"""report media (photos, voice notes and audio files attached to a report)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 07:30:00

A participant's photo of a finger ulcer or voice note, sent during /report (or
right after it, while its alert is open), is one row: who, when, kind, MIME type,
size, SHA-256 and the bytes themselves (in the database, so the database backup
covers them). Its download is retried with the alert deliveries' back-off; its
forward to the coordinators is an alert_deliveries row (purpose "media-<id>").
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "report_media",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("file_id", sa.String(length=255), nullable=False),
        sa.Column("file_unique_id", sa.String(length=64), nullable=False),
        sa.Column("media_group_id", sa.String(length=64), nullable=True),
        sa.Column("mime_type", sa.String(length=100), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("content", sa.LargeBinary(), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "held",
                "pending",
                "stored",
                "duplicate",
                "dead",
                name="media_status",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("received_by", sa.String(length=64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.String(length=200), nullable=True),
        sa.Column("alert_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"], name=op.f("fk_report_media_alert_id_alerts")),
        sa.ForeignKeyConstraint(
            ["participant_id"], ["participants.id"], name=op.f("fk_report_media_participant_id_participants")
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["questionnaire_sessions.id"],
            name=op.f("fk_report_media_session_id_questionnaire_sessions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_media")),
    )
    op.create_index("ix_report_media_due", "report_media", ["status", "next_attempt_at"])
    op.create_index("ix_report_media_session", "report_media", ["session_id", "sha256"])
    op.create_index(op.f("ix_report_media_participant_id"), "report_media", ["participant_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_report_media_participant_id"), table_name="report_media")
    op.drop_index("ix_report_media_session", table_name="report_media")
    op.drop_index("ix_report_media_due", table_name="report_media")
    op.drop_table("report_media")
