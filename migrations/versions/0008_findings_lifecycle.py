"""findings lifecycle: expired sessions, incomplete adverse events, same-day escalation

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 04:40:00

A questionnaire session can now be `expired` (a check-in at the end of its study
week, a report idle too long), with the time it expires and the time it closed
(late safety corrections are accepted for 24 hours after). An adverse event from
an unfinished report is kept, marked `complete = false`. A same-day alert
escalates at the end of the clinic hours it was delivered in (`escalate_at`).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = ("in_progress", "completed", "cancelled", "suspended")
NEW = (*OLD, "expired")


def _status(values: tuple[str, ...]) -> sa.Enum:
    return sa.Enum(*values, name="questionnaire_status", native_enum=False, create_constraint=True, length=16)


def _legacy_rename(on: bool) -> None:
    """SQLite rebuilds a table to change it: let the rename pass the views of 0006 that read it."""
    if op.get_bind().dialect.name == "sqlite":
        op.execute(f"PRAGMA legacy_alter_table={'ON' if on else 'OFF'}")


def upgrade() -> None:
    _legacy_rename(True)
    with op.batch_alter_table("questionnaire_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expires_at", models.base.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("closed_at", models.base.UTCDateTime(timezone=True), nullable=True))
        batch_op.drop_constraint(op.f("ck_questionnaire_sessions_questionnaire_status"), type_="check")
        batch_op.create_check_constraint("questionnaire_status", sa.column("status").in_(NEW))
    with op.batch_alter_table("adverse_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("complete", sa.Boolean(), server_default=sa.true(), nullable=False))
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("escalate_at", models.base.UTCDateTime(timezone=True), nullable=True))
    _legacy_rename(False)


def downgrade() -> None:
    _legacy_rename(True)
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_column("escalate_at")
    with op.batch_alter_table("adverse_events", schema=None) as batch_op:
        batch_op.drop_column("complete")
    op.execute("UPDATE questionnaire_sessions SET status = 'cancelled' WHERE status = 'expired'")
    with op.batch_alter_table("questionnaire_sessions", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_questionnaire_sessions_questionnaire_status"), type_="check")
        batch_op.create_check_constraint("questionnaire_status", sa.column("status").in_(OLD))
        batch_op.drop_column("closed_at")
        batch_op.drop_column("expires_at")
    _legacy_rename(False)
