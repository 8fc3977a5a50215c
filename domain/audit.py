"""The append-only audit trail: who did what, when, with values before and after.

Every change a person makes goes through `record` (or `write`), in the same
transaction as the change itself, so the audit never claims something that did not
happen and never misses something that did."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Required, TypedDict, Unpack

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from domain.secrets import keyed_hash
from models import AuditEntry
from models.db import insert_later

SYSTEM = "system"


def participant_actor(study_id: str) -> str:
    """Actor label for something a participant did."""
    return f"participant:{study_id}"


def stranger_actor(user_id: int | None, key: bytes) -> str:
    """Actor label for a Telegram user the bot does not know, keyed-hashed: the audit
    is kept for ever and cannot be purged, and a stranger's id is personal data. The
    same person gets the same label (the per-user tries limit counts on it)."""
    if user_id is None:
        return "telegram:unknown"
    return f"telegram:h:{keyed_hash(key, str(user_id))[:20]}"


def admin_actor(user_id: int) -> str:
    """Actor label for an admin acting through Telegram."""
    return f"admin:{user_id}"


class Entry(TypedDict, total=False):
    """What one audit row says (`record`, `write`)."""

    at: Required[datetime]
    actor: Required[str]
    action: Required[str]
    participant_id: int | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    detail: str | None


def record(session: AsyncSession, **entry: Unpack[Entry]) -> AuditEntry:
    """Add one audit row to the session (written at its next flush, committed with the
    change it describes)."""
    row = AuditEntry(**_values(entry))
    session.add(row)
    return row


async def write(session: AsyncSession, **entry: Unpack[Entry]) -> None:
    """`record` for the answer path, as a Core INSERT instead of through the ORM's unit
    of work (about 0.15 ms of CPU an answer: `python -m bench.parts`), held with the
    transaction's other rows of this kind and written with them in one statement
    (`models.db.insert_later`: before the ORM's next flush, at the latest at the commit).
    Rows `record` added and not yet written go in first, and rows it adds later go in
    after (the ORM's flush writes the held rows first), so that the table keeps the
    order things happened in. What the row refers to (the participant) must be stored
    already."""
    if any(isinstance(pending, AuditEntry) for pending in session.new):
        await session.flush()
    insert_later(session, _INSERT, _values(entry))


_INSERT = insert(AuditEntry)
"""Built once (`write`): every answer runs it."""


def _values(entry: Entry) -> dict[str, Any]:
    """The row's columns, every one given (one statement shape, cached once), the labels
    cut to their columns' length."""
    return {
        "at": entry["at"],
        "actor": entry["actor"][:64],
        "action": entry["action"][:64],
        "participant_id": entry.get("participant_id"),
        "before": entry.get("before"),
        "after": entry.get("after"),
        "detail": entry.get("detail"),
    }
