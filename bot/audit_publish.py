"""Publishing the audit chain's head outside the database, once a day.

The hash chain (domain.audit_chain) shows an edit made behind the triggers' back;
but whoever holds the bot's database credentials can drop the triggers, delete a row
and re-seal the whole chain from the public genesis hash, and it verifies again. A
head kept somewhere they cannot reach (the coordinators' Telegram chat, every export
file) ends that: `audit-verify --published SEQ:HASH` fails on a rewritten chain."""

from __future__ import annotations

import logging
from datetime import datetime, time
from typing import TYPE_CHECKING

from sqlalchemy import select

from domain import audit
from domain.audit_chain import publication, seal
from models import AuditChainHead, AuditEntry

if TYPE_CHECKING:
    from bot.app import TrialApplication

log = logging.getLogger(__name__)

PUBLISH_TIME = time(8, 0)
ACTION = "audit.head.publish"


def head_message(seq: int, digest: str, day: str) -> str:
    """The coordinators' daily message: the head, and how to use it."""
    return (
        f"🔏 Audit chain head, {day}: #{seq} {digest}\n"
        "Keep this message. It proves that no audit row up to here is changed later: "
        f"python -m cli audit-verify --published {publication(seq, digest)}"
    )


async def publish_tick(app: TrialApplication) -> None:
    """From 08:00 local, once a day: seal, then send the head to the coordinator chats;
    recorded in the audit once sent (a failed send is tried again at the next beat)."""
    services = app.services
    settings = services.settings
    now = services.clock.now()
    local = now.astimezone(settings.tz)
    day = local.date().isoformat()
    chats = settings.coordinator_chat_ids if settings.audit_head_chat_ids is None else settings.audit_head_chat_ids
    if local < datetime.combine(local.date(), PUBLISH_TIME, settings.tz) or not chats:
        return
    async with services.sessions() as session:
        done = await session.scalar(select(AuditEntry.id).where(AuditEntry.action == ACTION, AuditEntry.detail == day))
        if done is not None:
            return
        await seal(session)
        head = await session.get(AuditChainHead, 1)
        if head is None:
            return
        seq, digest = head.seq, head.row_hash
    text = head_message(seq, digest, day)
    for chat_id in chats:
        try:
            await app.bot.send_message(chat_id, text)
        except Exception as exc:
            log.warning("audit head not published in one chat (%s); next beat", type(exc).__name__)
            return
    async with services.sessions() as session:
        audit.record(session, at=now, actor=audit.SYSTEM, action=ACTION, after={"seq": seq, "hash": digest}, detail=day)
        await session.commit()
