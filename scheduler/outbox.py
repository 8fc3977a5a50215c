"""The outbox of due rows, shared by every sender: claim due rows under a lease,
give them back with one back-off policy, record the outcome of a send.

Nothing here knows what a row says or to whom (the bot renders and sends) nor what
a send means for the trial (the domain decides: domain.reminders)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from sqlalchemy import case, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models import MessageStatus, Participant, ScheduledMessage
from models.db import SessionFactory

log = logging.getLogger(__name__)

BATCH = 100
MAX_BATCHES = 50
BACKOFF_FIRST = timedelta(seconds=30)
BACKOFF_MAX = timedelta(minutes=15)

Outcome = Callable[[AsyncSession, ScheduledMessage, Participant], Awaitable[None]]


async def claim(sessions: SessionFactory, now: datetime, token: str, lease: timedelta) -> list[tuple[int, int]]:
    """Mark up to BATCH due rows as SENDING under ``token``; returns (row id, participant
    id) in due order.

    Two statements, each ``UPDATE … WHERE id IN (SELECT … [FOR UPDATE SKIP LOCKED]) AND
    <still due> RETURNING``: first the SENDING rows whose lease ran out (a process died),
    then the PLANNED rows that are due. Each is one range of ``ix_scheduled_messages_due``
    (status, next_attempt_at) whatever the planner's statistics say; the two conditions
    OR-ed in one statement made SQLite scan the whole table once ANALYZE had run (5 s a
    tick at 100,000 participants, see the README's benchmark). The condition is repeated
    in the UPDATE, so a row is claimed by one token only.
    """
    async with sessions() as session:
        postgres = session.bind.dialect.name == "postgresql"
        claimed: list[tuple[int, int, datetime]] = []
        for due in (
            (ScheduledMessage.status == MessageStatus.SENDING) & (ScheduledMessage.claimed_until < now),
            (ScheduledMessage.status == MessageStatus.PLANNED) & (ScheduledMessage.next_attempt_at <= now),
        ):
            room = BATCH - len(claimed)
            if room <= 0:
                break
            candidates = (
                select(ScheduledMessage.id)
                .where(due)
                .order_by(ScheduledMessage.next_attempt_at, ScheduledMessage.id)
                .limit(room)
            )
            if postgres:
                candidates = candidates.with_for_update(skip_locked=True)
            result = await session.execute(
                update(ScheduledMessage)
                .where(ScheduledMessage.id.in_(candidates.scalar_subquery()), due)
                .values(status=MessageStatus.SENDING, claim_token=token, claimed_until=now + lease)
                .returning(ScheduledMessage.id, ScheduledMessage.participant_id, ScheduledMessage.next_attempt_at)
                .execution_options(synchronize_session=False)
            )
            claimed.extend((row_id, participant_id, at) for row_id, participant_id, at in result.all())
        await session.commit()
    if claimed:  # which process holds which rows, should it die holding them (tests find its orphans by this)
        log.info("dispatch: claimed %d row(s) under token %s", len(claimed), token)
    claimed.sort(key=lambda r: (r[2], r[0]))
    return [(row_id, participant_id) for row_id, participant_id, _ in claimed]


async def release(sessions: SessionFactory, row_id: int, token: str, now: datetime, error: str) -> None:
    """Give a claimed row back with a back-off (its send failed before any outcome)."""
    async with sessions() as session:
        row = await session.get(ScheduledMessage, row_id)
        if row is not None and row.claim_token == token and row.status is MessageStatus.SENDING:
            retry_later(row, now, error)
            await session.commit()


def finish(row: ScheduledMessage, status: MessageStatus, now: datetime, why: str | None = None) -> None:
    """Close a row's claim with its new status and why (the one way a row changes state)."""
    row.status = status
    row.claim_token = None
    row.claimed_until = None
    row.last_error = why
    row.updated_at = now


def retry_later(row: ScheduledMessage, now: datetime, error: str, at_least: timedelta = timedelta(0)) -> None:
    """Back to PLANNED with exponential back-off (never marked sent)."""
    delay = min(BACKOFF_FIRST * (2 ** max(row.attempts - 1, 0)), BACKOFF_MAX)
    row.next_attempt_at = now + max(delay, at_least)
    finish(row, MessageStatus.PLANNED, now, error[:200])


async def claimed(session: AsyncSession, row_ids: list[int], token: str) -> list[ScheduledMessage]:
    """The rows of ``row_ids`` still claimed under ``token``, in one statement (a batch's
    re-check loads them together)."""
    rows = await session.scalars(
        select(ScheduledMessage).where(
            ScheduledMessage.id.in_(row_ids),
            ScheduledMessage.claim_token == token,
            ScheduledMessage.status == MessageStatus.SENDING,
        )
    )
    return list(rows)


async def still_ours(session: AsyncSession, row_ids: list[int], token: str) -> set[int]:
    """Which of ``row_ids`` are still this claim's, locked for the outcome's transaction
    (PostgreSQL: ``FOR UPDATE``; SQLite's one writer needs no lock)."""
    query = select(ScheduledMessage.id).where(
        ScheduledMessage.id.in_(row_ids),
        ScheduledMessage.claim_token == token,
        ScheduledMessage.status == MessageStatus.SENDING,
    )
    if session.bind.dialect.name == "postgresql":
        query = query.with_for_update()
    ours = set(await session.scalars(query))
    for row_id in set(row_ids) - ours:
        log.warning("reminder %s: its claim passed to another process before the outcome was stored", row_id)
    return ours


async def mark_sent(
    session: AsyncSession, sent: list[tuple[int, int]], token: str, now: datetime, why: str | None = None
) -> set[int]:
    """Record sends Telegram accepted, (row id, message id) each, in one statement
    (``UPDATE … SET telegram_message_id = CASE id WHEN … END WHERE id IN (…) AND <still
    this claim's> RETURNING id``); returns the rows it marked: a row whose claim passed
    to another process is left alone."""
    if not sent:
        return set()
    message_ids = dict(sent)
    result = await session.execute(
        update(ScheduledMessage)
        .where(
            ScheduledMessage.id.in_(message_ids),
            ScheduledMessage.claim_token == token,
            ScheduledMessage.status == MessageStatus.SENDING,
        )
        .values(
            status=MessageStatus.SENT,
            sent_at=now,
            telegram_message_id=case(message_ids, value=ScheduledMessage.id),
            attempts=ScheduledMessage.attempts + 1,
            claim_token=None,
            claimed_until=None,
            last_error=why,
            updated_at=now,
        )
        .returning(ScheduledMessage.id)
        .execution_options(synchronize_session=False)
    )
    marked = set(result.scalars())
    for row_id in set(message_ids) - marked:
        log.warning("reminder %s: its claim passed to another process before the outcome was stored", row_id)
    return marked


async def record_failure(session: AsyncSession, row_id: int, outcome: Outcome) -> None:
    """A send that failed: its outcome applied to the row (rare; the ORM path)."""
    row = await session.get(ScheduledMessage, row_id)
    assert row is not None
    participant = await session.get(Participant, row.participant_id)
    assert participant is not None
    row.attempts += 1
    await outcome(session, row, participant)
