"""The outbox of due rows, shared by every sender: reminders (``scheduled_messages``) and
alert deliveries (``alert_deliveries``) alike. One set of functions for both: claim due
rows under a token and a lease, give them back with one back-off policy, record a send
Telegram accepted, dead-letter a refused one.

A ``Queue`` describes one table: its model, the status values of a row's life (due →
claimed → sent, or dead), and its back-off. Functions given a row find its queue by the
row's type; functions given ids take the queue.

Nothing here knows what a row says or to whom (the bot renders and sends) nor what a
send means for the trial (the domain decides: domain.reminders, domain.alerts)."""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models import AlertDelivery, DeliveryStatus, MessageStatus, Participant, ScheduledMessage
from models.db import SessionFactory

log = logging.getLogger(__name__)

BATCH = 100
MAX_BATCHES = 50

Outcome = Callable[[AsyncSession, ScheduledMessage, Participant], Awaitable[None]]


@dataclass(frozen=True)
class Queue:
    """One table the outbox serves. Its rows have ``status``, ``next_attempt_at``,
    ``claim_token``, ``claimed_until``, ``attempts``, ``last_error`` and ``sent_at``."""

    model: type[Any]
    due: enum.Enum  # waiting for ``next_attempt_at`` (its first try or a retry)
    claimed: enum.Enum  # held by one claim token until ``claimed_until``
    sent: enum.Enum  # Telegram accepted it
    dead: enum.Enum  # refused for good: never retried
    first_delay: timedelta  # the back-off after the first failed try, doubling up to ``max_delay``
    max_delay: timedelta
    batch: int  # rows per claim: the lease must cover the sends of a whole batch
    name: str  # in logs: "dispatch", "alerts"
    noun: str  # in logs: "reminder", "alert delivery"
    group: str  # the column returned with each claimed id
    message_id: str  # the column for Telegram's message id
    stamped: bool  # whether rows have ``updated_at``

    def backoff(self, attempts: int) -> timedelta:
        """The wait after ``attempts`` failed tries: ``first_delay``, doubling with each
        try, at most ``max_delay`` (the one back-off policy of every queue)."""
        doublings = min(max(attempts - 1, 0), 32)  # 2**32 times any first delay is past any cap
        return min(self.first_delay * (1 << doublings), self.max_delay)


REMINDERS = Queue(
    model=ScheduledMessage,
    due=MessageStatus.PLANNED,
    claimed=MessageStatus.SENDING,
    sent=MessageStatus.SENT,
    dead=MessageStatus.FAILED,
    first_delay=timedelta(seconds=30),
    max_delay=timedelta(minutes=15),
    batch=BATCH,
    name="dispatch",
    noun="reminder",
    group="participant_id",
    message_id="telegram_message_id",
    stamped=True,
)
ALERTS = Queue(
    model=AlertDelivery,
    due=DeliveryStatus.PENDING,
    claimed=DeliveryStatus.SENDING,
    sent=DeliveryStatus.SENT,
    dead=DeliveryStatus.DEAD,
    first_delay=timedelta(seconds=15),
    max_delay=timedelta(minutes=5),
    # One delivery a claim: ALERT_LEASE_SECONDS has to cover one send, however slow
    # Telegram is, never a queue of them (alerts are few; a second process must not
    # take over an alert this one is still about to send).
    batch=1,
    name="alerts",
    noun="alert delivery",
    group="alert_id",
    message_id="message_id",
    stamped=False,
)
_QUEUES = {queue.model: queue for queue in (REMINDERS, ALERTS)}


def queue_of(row: Any) -> Queue:
    """The queue a row belongs to."""
    return _QUEUES[type(row)]


async def claim(
    queue: Queue, sessions: SessionFactory, now: datetime, token: str, lease: timedelta
) -> list[tuple[int, int]]:
    """Mark up to ``queue.batch`` due rows as claimed under ``token`` until ``now +
    lease``; returns (row id, its ``queue.group`` value) in due order.

    Two statements, each ``UPDATE … WHERE id IN (SELECT … [FOR UPDATE SKIP LOCKED]) AND
    <still due> RETURNING``: first the claimed rows whose lease ran out (a process died),
    then the due rows. Each is one range of the (status, next_attempt_at) index
    (``ix_scheduled_messages_due``, ``ix_alert_deliveries_due``) whatever the planner's
    statistics say; the two conditions OR-ed in one statement made SQLite scan the whole
    table once ANALYZE had run (5 s a tick at 100,000 participants, see the README's
    benchmark). The condition is repeated in the UPDATE, so a row is claimed by one
    token only.
    """
    model = queue.model
    async with sessions() as session:
        postgres = session.bind.dialect.name == "postgresql"
        claimed: list[tuple[int, int, datetime]] = []
        for due in (
            (model.status == queue.claimed) & (model.claimed_until < now),
            (model.status == queue.due) & (model.next_attempt_at <= now),
        ):
            room = queue.batch - len(claimed)
            if room <= 0:
                break
            candidates = select(model.id).where(due).order_by(model.next_attempt_at, model.id).limit(room)
            if postgres:
                candidates = candidates.with_for_update(skip_locked=True)
            result = await session.execute(
                update(model)
                .where(model.id.in_(candidates.scalar_subquery()), due)
                .values(status=queue.claimed, claim_token=token, claimed_until=now + lease)
                .returning(model.id, getattr(model, queue.group), model.next_attempt_at)
                .execution_options(synchronize_session=False)
            )
            claimed.extend((row_id, group, at) for row_id, group, at in result.all())
        await session.commit()
    if claimed:  # which process holds which rows, should it die holding them (tests find its orphans by this)
        log.info("%s: claimed %d row(s) under token %s", queue.name, len(claimed), token)
    claimed.sort(key=lambda r: (r[2], r[0]))
    return [(row_id, group) for row_id, group, _ in claimed]


async def release(
    queue: Queue,
    sessions: SessionFactory,
    row_id: int,
    token: str,
    now: datetime,
    error: str,
    *,
    failed: bool = False,
    at_least: timedelta = timedelta(0),
) -> None:
    """Give a claimed row back with the back-off: ``failed`` when its send failed (the try
    counts), else it failed before any send."""
    async with sessions() as session:
        row = await _ours(queue, session, row_id, token)
        if row is not None:
            if failed:
                row.attempts += 1
            retry_later(row, now, error, at_least)
            await session.commit()


def finish(row: Any, status: enum.Enum, now: datetime, why: str | None = None) -> None:
    """Close a row's claim with its new status and why (the one way a row changes state)."""
    row.status = status
    row.claim_token = None
    row.claimed_until = None
    row.last_error = why
    if queue_of(row).stamped:
        row.updated_at = now


def retry_later(row: Any, now: datetime, error: str, at_least: timedelta = timedelta(0)) -> None:
    """Back to due with the queue's back-off for the row's attempts so far, and at least
    ``at_least`` (Telegram's RetryAfter); never marked sent."""
    queue = queue_of(row)
    row.next_attempt_at = now + max(queue.backoff(row.attempts), at_least)
    finish(row, queue.due, now, error[:200])


def postpone(row: Any, until: datetime, now: datetime, why: str) -> None:
    """Back to due at ``until``, no try counted (quiet hours; a file waiting for its alert)."""
    row.next_attempt_at = until
    finish(row, queue_of(row).due, now, why)


async def give_up(queue: Queue, session: AsyncSession, row_id: int, token: str, now: datetime, why: str) -> Any:
    """Dead-letter a row Telegram refused for good (the try counts; never retried); the
    row, or None when its claim passed to another process."""
    row = await _ours(queue, session, row_id, token)
    if row is not None:
        row.attempts += 1
        finish(row, queue.dead, now, why[:200])
    return row


def _still_claimed(queue: Queue, row_ids: list[int], token: str) -> Any:
    model = queue.model
    return (model.id.in_(row_ids), model.claim_token == token, model.status == queue.claimed)


async def claimed(queue: Queue, session: AsyncSession, row_ids: list[int], token: str) -> list[Any]:
    """The rows of ``row_ids`` still claimed under ``token``, in one statement (a batch's
    re-check loads them together)."""
    return list(await session.scalars(select(queue.model).where(*_still_claimed(queue, row_ids, token))))


async def _ours(queue: Queue, session: AsyncSession, row_id: int, token: str) -> Any:
    found = await claimed(queue, session, [row_id], token)
    if not found:
        _passed(queue, [row_id])
    return found[0] if found else None


def _passed(queue: Queue, row_ids: set[int] | list[int]) -> None:
    for row_id in row_ids:
        log.warning("%s %s: its claim passed to another process before the outcome was stored", queue.noun, row_id)


async def still_ours(queue: Queue, session: AsyncSession, row_ids: list[int], token: str) -> set[int]:
    """Which of ``row_ids`` are still this claim's, locked for the outcome's transaction
    (PostgreSQL: ``FOR UPDATE``; SQLite's one writer needs no lock)."""
    query = select(queue.model.id).where(*_still_claimed(queue, row_ids, token))
    if session.bind.dialect.name == "postgresql":
        query = query.with_for_update()
    ours = set(await session.scalars(query))
    _passed(queue, set(row_ids) - ours)
    return ours


async def mark_sent(
    queue: Queue,
    session: AsyncSession,
    sent: list[tuple[int, int]],
    token: str,
    now: datetime,
    why: str | None = None,
) -> set[int]:
    """Record sends Telegram accepted, (row id, message id) each, in one statement
    (``UPDATE … SET <message id> = CASE id WHEN … END WHERE id IN (…) AND <still this
    claim's> RETURNING id``); returns the rows it marked: a row whose claim passed to
    another process is left alone."""
    if not sent:
        return set()
    model = queue.model
    message_ids = dict(sent)
    values: dict[str, Any] = {
        "status": queue.sent,
        "sent_at": now,
        queue.message_id: case(message_ids, value=model.id),
        "attempts": model.attempts + 1,
        "claim_token": None,
        "claimed_until": None,
        "last_error": why,
    }
    if queue.stamped:
        values["updated_at"] = now
    result = await session.execute(
        update(model)
        .where(*_still_claimed(queue, list(message_ids), token))
        .values(values)
        .returning(model.id)
        .execution_options(synchronize_session=False)
    )
    marked = set(result.scalars())
    _passed(queue, set(message_ids) - marked)
    return marked


async def record_failure(session: AsyncSession, row_id: int, outcome: Outcome) -> None:
    """A reminder whose send failed: its outcome applied to the row (rare; the ORM path)."""
    row = await session.get(ScheduledMessage, row_id)
    assert row is not None
    participant = await session.get(Participant, row.participant_id)
    assert participant is not None
    row.attempts += 1
    await outcome(session, row, participant)
