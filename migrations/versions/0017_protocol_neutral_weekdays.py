"""protocol-neutral weekday columns

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06 10:30:00

`participants.mtx_weekday` and `folic_weekday` named the shipped trial's drugs; the
columns hold the weekday the participant chose for the regimen whose weekday rule is
`participant` (`own_weekday`) and the chosen day of the regimen whose rule is `after`
with `participant_may_choose` (`follow_weekday`), whatever the protocol's drugs are.
A rename in place, data kept (SQLite's and PostgreSQL's ALTER TABLE … RENAME COLUMN:
no table rebuild, which the views on `participants` would block). The export keeps the
variable name `mtx_weekday` (the data manager's contract).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_RENAMES = (("mtx_weekday", "own_weekday"), ("folic_weekday", "follow_weekday"))


def upgrade() -> None:
    with op.batch_alter_table("participants", recreate="never") as batch_op:
        for old, new in _RENAMES:
            batch_op.alter_column(old, new_column_name=new)


def downgrade() -> None:
    with op.batch_alter_table("participants", recreate="never") as batch_op:
        for old, new in _RENAMES:
            batch_op.alter_column(new, new_column_name=old)
