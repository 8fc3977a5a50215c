"""Queries and changes on participants that more than one place needs
(Telegram handlers, the shell admin, jobs)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from domain import audit
from domain.enrollment import participant_snapshot, revoke_unused_codes
from domain.errors import DomainError
from models import ChatLink, Language, Participant, ParticipantStatus
from scheduler.protocol import Protocol
from scheduler.store import replan

_BY_CHAT = (
    select(Participant)
    .join(ChatLink, ChatLink.participant_id == Participant.id)
    .where(ChatLink.chat_id == bindparam("chat_id"))
)
"""Built once (every update of a private chat runs it): composing the SELECT and its
cache key anew on each call was about 2 % of the CPU of a burst of answers."""


async def by_chat(session: AsyncSession, chat_id: int) -> Participant | None:
    """The participant linked to a Telegram chat, if any."""
    found: Participant | None = await session.scalar(_BY_CHAT, {"chat_id": chat_id})
    return found


_BY_CHATS = (
    select(ChatLink.chat_id, Participant)
    .select_from(Participant)
    .join(ChatLink, ChatLink.participant_id == Participant.id)
    .where(ChatLink.chat_id.in_(bindparam("chat_ids", expanding=True)))
)
"""Built once: the updates that share a transaction (`bot.app`) find their participants together."""


async def by_chats(session: AsyncSession, chat_ids: Sequence[int]) -> dict[int, Participant]:
    """`by_chat` of several chats in one statement: the participant of each linked chat."""
    if not chat_ids:
        return {}
    rows = await session.execute(_BY_CHATS, {"chat_ids": list(chat_ids)})
    return {chat_id: participant for chat_id, participant in rows.tuples()}


async def by_study_id(session: AsyncSession, study_id: str, *, for_update: bool = False) -> Participant:
    """The participant with this study id, or a DomainError an admin can read."""
    query = select(Participant).where(Participant.study_id == study_id)
    if for_update:
        query = query.with_for_update()
    participant = await session.scalar(query)
    if participant is None:
        raise DomainError(f"no participant with study id {study_id}")
    return participant


async def chat_of(session: AsyncSession, participant_id: int) -> int | None:
    """The chat id a participant is reached at, if linked."""
    chat_id: int | None = await session.scalar(
        select(ChatLink.chat_id).where(ChatLink.participant_id == participant_id)
    )
    return chat_id


@dataclass(frozen=True)
class ParticipantLine:
    """One participant in the `/participants` list."""

    participant: Participant
    linked: bool


async def list_all(session: AsyncSession) -> list[ParticipantLine]:
    """Everyone, in study-id order, with whether their chat is linked."""
    rows = await session.execute(
        select(Participant, ChatLink.id)
        .outerjoin(ChatLink, ChatLink.participant_id == Participant.id)
        .order_by(Participant.study_id)
    )
    return [ParticipantLine(p, link_id is not None) for p, link_id in rows.all()]


async def set_language(session: AsyncSession, participant: Participant, language: str, *, now: datetime) -> None:
    """Remember the participant's language choice."""
    before = participant_snapshot(participant)
    participant.language = Language(language)
    participant.updated_at = now
    audit.record(
        session,
        at=now,
        actor=audit.participant_actor(participant.study_id),
        action="participant.set_language",
        participant_id=participant.id,
        before={"language": before["language"]},
        after={"language": language},
    )


async def withdraw(
    session: AsyncSession, study_id: str, *, reason: str | None, actor: str, now: datetime, protocol: Protocol
) -> Participant:
    """Stop everything for a participant. Their data is kept; unused codes are revoked."""
    participant = await by_study_id(session, study_id, for_update=True)
    if participant.status == ParticipantStatus.WITHDRAWN:
        raise DomainError(f"{study_id} has already withdrawn")
    before = participant_snapshot(participant)
    participant.status = ParticipantStatus.WITHDRAWN
    participant.withdrawn_at = now
    participant.withdrawal_reason = (reason or "")[:200] or None
    participant.updated_at = now
    await revoke_unused_codes(session, participant.id, now)
    await replan(session, participant, now, protocol)
    audit.record(
        session,
        at=now,
        actor=actor,
        action="participant.withdraw",
        participant_id=participant.id,
        before=before,
        after=participant_snapshot(participant),
        detail=reason,
    )
    return participant
