"""alert deliveries may be dead (refused by Telegram for good)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 05:00:00

A delivery Telegram refuses with a 400 (too long, chat not found…) would be refused
again: it is marked `dead`, never retried, and the admins are told at once.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = "ck_alert_deliveries_delivery_status"


def _status_check(values: tuple[str, ...]) -> None:
    listed = ", ".join(f"'{v}'" for v in values)
    if op.get_bind().dialect.name == "sqlite":
        # SQLite cannot alter a CHECK: the table is rebuilt with the new one.
        with op.batch_alter_table("alert_deliveries", recreate="always") as batch:
            batch.drop_constraint(op.f(NAME), type_="check")
            batch.create_check_constraint(op.f(NAME), f"status IN ({listed})")
        return
    op.drop_constraint(op.f(NAME), "alert_deliveries", type_="check")
    op.create_check_constraint(op.f(NAME), "alert_deliveries", f"status IN ({listed})")


def upgrade() -> None:
    _status_check(("pending", "sent", "dead"))


def downgrade() -> None:
    op.execute("UPDATE alert_deliveries SET status = 'pending' WHERE status = 'dead'")
    _status_check(("pending", "sent"))
