"""The append-only audit trail: who did what, when, with values before and after.

Every change a person makes goes through `record`, in the same transaction as
the change itself, so the audit never claims something that did not happen and
never misses something that did."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from domain.secrets import keyed_hash
from models import AuditEntry

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


def record(
    session: AsyncSession,
    *,
    at: datetime,
    actor: str,
    action: str,
    participant_id: int | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    detail: str | None = None,
) -> AuditEntry:
    """Add one audit row to the session (committed with the change it describes)."""
    entry = AuditEntry(
        at=at,
        actor=actor[:64],
        action=action[:64],
        participant_id=participant_id,
        before=before,
        after=after,
        detail=detail,
    )
    session.add(entry)
    return entry
