"""alert deliveries are claimed like reminders (one outbox)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 10:30:00

Reminders and alert deliveries share one outbox (scheduler/outbox.py): a sender
claims a delivery under a token until a lease ends (status `sending`,
`claim_token`, `claimed_until`), as scheduled_messages rows are claimed, instead of
pushing its `next_attempt_at` ahead. A downgrade gives claimed deliveries back as
pending (a claim held across a downgrade means nothing).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = "ck_alert_deliveries_delivery_status"
CLAIMED = ("pending", "sending", "sent", "dead")
BEFORE = ("pending", "sent", "dead")


def _columns() -> list[sa.Column[object]]:
    return [
        sa.Column("claim_token", sa.String(length=32), nullable=True),
        sa.Column("claimed_until", models.base.UTCDateTime(timezone=True), nullable=True),
    ]


def _check(values: tuple[str, ...]) -> str:
    return "status IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # SQLite cannot alter a CHECK: the table is rebuilt with the new one (as 0010).
        with op.batch_alter_table("alert_deliveries", recreate="always") as batch:
            for column in _columns():
                batch.add_column(column)
            batch.drop_constraint(op.f(NAME), type_="check")
            batch.create_check_constraint(op.f(NAME), _check(CLAIMED))
        return
    for column in _columns():
        op.add_column("alert_deliveries", column)
    op.drop_constraint(op.f(NAME), "alert_deliveries", type_="check")
    op.create_check_constraint(op.f(NAME), "alert_deliveries", _check(CLAIMED))


def downgrade() -> None:
    op.execute("UPDATE alert_deliveries SET status = 'pending' WHERE status = 'sending'")
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("alert_deliveries", recreate="always") as batch:
            batch.drop_constraint(op.f(NAME), type_="check")
            batch.create_check_constraint(op.f(NAME), _check(BEFORE))
            batch.drop_column("claimed_until")
            batch.drop_column("claim_token")
        return
    op.drop_constraint(op.f(NAME), "alert_deliveries", type_="check")
    op.create_check_constraint(op.f(NAME), "alert_deliveries", _check(BEFORE))
    op.drop_column("alert_deliveries", "claimed_until")
    op.drop_column("alert_deliveries", "claim_token")
