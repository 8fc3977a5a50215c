"""audit log: append-only triggers and a hash chain

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 00:55:00

The triggers exist on SQLite and PostgreSQL alike. Beware: an Alembic batch
operation that rebuilds audit_log on SQLite drops its triggers; a later
migration that must rebuild the table has to create them again
(`create_triggers` below).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CONTENT = ("id", "at", "actor", "action", "participant_id", "before", "after", "detail")


def _genesis() -> str:
    import hashlib

    return hashlib.sha256(b"ssc-trial-bot audit chain").hexdigest()


def create_triggers() -> None:
    """Refuse DELETE (and TRUNCATE) and any UPDATE that changes a row's content."""
    if op.get_bind().dialect.name == "postgresql":
        changed = " OR ".join(f"NEW.{c} IS DISTINCT FROM OLD.{c}" for c in CONTENT)
        op.execute(
            f"""
            CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF TG_OP IN ('DELETE', 'TRUNCATE') THEN
                    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP;
                END IF;
                IF OLD.row_hash IS NOT NULL OR {changed} THEN
                    RAISE EXCEPTION 'audit_log is append-only: UPDATE refused';
                END IF;
                RETURN NEW;
            END $$;
            """
        )
        op.execute(
            "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
        )
        op.execute(
            "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()"
        )
    else:
        changed = " OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in CONTENT)
        op.execute(
            "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
            "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: DELETE refused'); END"
        )
        op.execute(
            f"CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
            f"WHEN OLD.row_hash IS NOT NULL OR {changed} "
            f"BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE refused'); END"
        )


def drop_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log")
        op.execute("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")


def upgrade() -> None:
    op.add_column("audit_log", sa.Column("seq", sa.BigInteger(), nullable=True))
    op.add_column("audit_log", sa.Column("prev_hash", sa.String(length=64), nullable=True))
    op.add_column("audit_log", sa.Column("row_hash", sa.String(length=64), nullable=True))
    op.create_index("uq_audit_log_seq", "audit_log", ["seq"], unique=True)
    op.create_index("ix_audit_log_unsealed", "audit_log", ["row_hash", "id"], unique=False)
    head = op.create_table(
        "audit_chain_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("row_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_chain_head")),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "row_hash": _genesis()}])
    create_triggers()


def downgrade() -> None:
    drop_triggers()
    op.drop_table("audit_chain_head")
    op.drop_index("ix_audit_log_unsealed", table_name="audit_log")
    op.drop_index("uq_audit_log_seq", table_name="audit_log")
    with op.batch_alter_table("audit_log") as batch_op:
        batch_op.drop_column("row_hash")
        batch_op.drop_column("prev_hash")
        batch_op.drop_column("seq")
