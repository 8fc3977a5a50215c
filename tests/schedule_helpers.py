"""Helpers for the reminder tests: walk the injected clock from one due row to the next,
read the rows, and count the reminders a chat received."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from devtools.botapi_server import BotAPIServer, SentMessage
from devtools.harness import BotHarness
from models import MessageStatus, Participant, ScheduledMessage

REMINDER_PREFIXES = ("dose:", "visit:", "qstart:")


def dhaka(y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> datetime:
    """A Dhaka wall-clock time as aware UTC (Dhaka is UTC+6 all year)."""
    return datetime(y, m, d, hh, mm, tzinfo=UTC) - timedelta(hours=6)


def local(at: datetime) -> datetime:
    """UTC instant → Dhaka wall clock (naive)."""
    return (at + timedelta(hours=6)).replace(tzinfo=None)


async def next_due(bot: BotHarness) -> datetime | None:
    """When the dispatcher next has something to do (the earliest PLANNED row)."""
    assert bot.services is not None
    async with bot.services.sessions() as session:
        found: datetime | None = await session.scalar(
            select(func.min(ScheduledMessage.next_attempt_at)).where(ScheduledMessage.status == MessageStatus.PLANNED)
        )
        return found


async def walk(bot: BotHarness, until: datetime) -> int:
    """Tick at each due time up to `until` (no sleeping, no 30-second steps); returns ticks."""
    ticks = 0
    while True:
        due = await next_due(bot)
        if due is None or due > until:
            break
        if due > bot.clock.now():
            bot.clock.set(due)
        await bot.tick()
        ticks += 1
        assert ticks < 5000, "the dispatcher keeps finding the same rows due"
    if until > bot.clock.now():
        bot.clock.set(until)
    return ticks


async def rows(bot: BotHarness, study_id: str | None = None, **where: Any) -> list[ScheduledMessage]:
    """Scheduled rows (optionally of one participant), in due order."""
    assert bot.services is not None
    async with bot.services.sessions() as session:
        query = select(ScheduledMessage).order_by(ScheduledMessage.due_at, ScheduledMessage.id)
        if study_id is not None:
            query = query.join(Participant, Participant.id == ScheduledMessage.participant_id).where(
                Participant.study_id == study_id
            )
        for name, value in where.items():
            query = query.where(getattr(ScheduledMessage, name) == value)
        return list(await session.scalars(query))


def reminders(server: BotAPIServer, chat_id: int) -> list[SentMessage]:
    """Messages in a chat that carry reminder buttons (dose, visit, questionnaire start)."""
    return [
        m
        for m in server.messages(chat_id)
        if any(data and data.startswith(REMINDER_PREFIXES) for row in m.buttons for _, data in row)
    ]
