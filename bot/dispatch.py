"""The "dispatch" tick: claim due rows, re-check them, send them, record the result.

1. Pauses whose end date has come are lifted (audited as the system).
2. Claim: due PLANNED rows (and SENDING rows whose claim lease, REMINDER_LEASE_SECONDS,
   ran out: a process died mid-send) are marked SENDING with this tick's token in one short transaction. On
   PostgreSQL the candidates are read ``FOR UPDATE SKIP LOCKED``, so several processes
   never claim the same row; the UPDATE is conditional on the status on both databases,
   so a row is claimed by exactly one token.
3. Deliver each claimed row in its own short transaction: re-check at send time (the
   participant is messaged, the chat is linked, the row is not stale, the visit is not
   recorded, the dose is not answered), defer bot-timed rows out of quiet hours, render
   in the participant's language, send through PTB (the rate limiter is on), and record
   SENT with the Telegram message id. No write lock is held across the network call.

Failures: a network error, a timeout, a 5xx or RetryAfter leaves the row PLANNED with a
back-off (it is never marked sent); Forbidden (the participant blocked the bot) marks the
row FAILED and the participant unreachable (``participant_reach``), and the coordinators
are told once per episode (alert kind "unreachable", INFO). The next message that gets
through clears the flag.

Exactly once: a row is sent by the one process that claimed it and recorded in the same
step. The only window for a duplicate is a process killed after Telegram accepted the
message and before the commit (milliseconds); the lease then expires and the row is sent
again: we prefer a rare duplicate reminder to a lost one.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from telegram import InlineKeyboardMarkup
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError

from bot import reminder_texts
from bot.i18n import use_locale
from domain import reminders
from domain.participants import chat_of
from models import (
    MessageStatus,
    Participant,
    ScheduledMessage,
)
from models.db import retry_transient
from scheduler import outbox, store
from scheduler.calendar import local_date
from scheduler.planner import MessageKind

if TYPE_CHECKING:
    from bot.app import TrialApplication

log = logging.getLogger(__name__)


_MESSAGE_KINDS = frozenset(
    {
        MessageKind.DOSE_REMINDER.value,
        MessageKind.DOSE_FOLLOWUP.value,
        MessageKind.DOSE_REMIND_LATER.value,
        MessageKind.VISIT_REMINDER.value,
        MessageKind.CHECKIN_PROMPT.value,
        MessageKind.QUESTIONNAIRE_PROMPT.value,
        MessageKind.VISIT_DATE_NOTICE.value,
    }
)


async def dispatch_tick(app: TrialApplication) -> None:
    """Everything due at the clock's now: lift ended pauses, then claim and deliver.

    DISPATCH_CONCURRENCY reminders are sent at once (each participant's rows still in
    order). 1, the default, means that a process killed mid-send leaves at most one
    message Telegram accepted but nobody recorded, sent again after the lease; N sends up
    to N times faster when catching up and may repeat up to N. At 1 a process already
    sends faster than Telegram's 30 messages a second (see the README's benchmark)."""
    now = app.services.clock.now()
    await reminders.resume_ended_pauses(app.services.sessions, now, app.services.protocol)
    concurrency = app.services.settings.dispatch_concurrency
    for _ in range(outbox.MAX_BATCHES):
        token = secrets.token_hex(8)
        claimed = await claim(app, now, token)
        if concurrency <= 1:
            for row_id, _participant in claimed:
                await _deliver_or_release(app, row_id, token, now)
        else:
            await _deliver_concurrently(app, claimed, token, now, concurrency)
        if len(claimed) < outbox.BATCH:
            return


async def _deliver_or_release(app: TrialApplication, row_id: int, token: str, now: datetime) -> None:
    try:
        await deliver(app, row_id, token, now)
    except Exception as exc:  # one bad row must not stop the others
        log.error("dispatch of row %s failed: %s", row_id, type(exc).__name__, exc_info=exc)
        await outbox.release(app.services.sessions, row_id, token, now, type(exc).__name__)


async def _deliver_concurrently(
    app: TrialApplication, claimed: list[tuple[int, int]], token: str, now: datetime, concurrency: int
) -> None:
    """Up to ``concurrency`` rows at once; one participant's rows one after another, in
    due order (a dose reminder before its follow-up)."""
    chains: dict[int, list[int]] = {}
    for row_id, participant_id in claimed:
        chains.setdefault(participant_id, []).append(row_id)
    gate = asyncio.Semaphore(concurrency)

    async def chain(row_ids: list[int]) -> None:
        for row_id in row_ids:
            async with gate:
                await _deliver_or_release(app, row_id, token, now)

    results = await asyncio.gather(*(chain(ids) for ids in chains.values()), return_exceptions=True)
    failure = next((r for r in results if isinstance(r, BaseException)), None)
    if failure is not None:
        raise failure  # a release failed too (the database is away): the tick is retried


async def claim(app: TrialApplication, now: datetime, token: str) -> list[tuple[int, int]]:
    """Claim this process's share of the due reminders, under REMINDER_LEASE_SECONDS."""
    lease = timedelta(seconds=app.services.settings.reminder_lease_seconds)
    return await outbox.claim(app.services.sessions, now, token, lease)


async def deliver(app: TrialApplication, row_id: int, token: str, now: datetime) -> None:
    """Re-check one claimed row, then send it (or carry it out) and record the result.

    Three steps, none holding a transaction across another: prepare (read, re-check,
    render; rows that send nothing are finished there), send, record. The outcome of a
    send is recorded in a fresh transaction, tried again while the database is away
    (``retry_transient``): a message Telegram accepted must be marked sent, or the lease
    would send it twice."""
    prepared = await _prepare(app, row_id, token, now)
    if prepared is None:
        return
    chat_id, text, markup = prepared
    outcome: Callable[[AsyncSession, ScheduledMessage, Participant], Awaitable[None]]
    message_id: int | None = None  # set once Telegram accepted the message
    try:
        message_id = (await app.bot.send_message(chat_id, text, reply_markup=markup)).message_id
    except Forbidden:

        async def outcome(session: AsyncSession, row: ScheduledMessage, participant: Participant) -> None:
            outbox.finish(row, MessageStatus.FAILED, now, "Forbidden: the participant blocked the bot")
            await reminders.mark_unreachable(session, participant, now, app.services.settings.coordinator_chat_ids)

    except RetryAfter as error:
        wait = error.retry_after
        retry = wait if isinstance(wait, timedelta) else timedelta(seconds=wait)

        async def outcome(session: AsyncSession, row: ScheduledMessage, participant: Participant) -> None:
            outbox.retry_later(row, now, "RetryAfter", retry)

    except BadRequest as error:
        # Permanent for this message (chat not found, bad markup): do not loop on it.
        log.warning("row %s refused by Telegram: %s", row_id, type(error).__name__)
        why = f"BadRequest: {str(error)[:150]}"

        async def outcome(session: AsyncSession, row: ScheduledMessage, participant: Participant) -> None:
            outbox.finish(row, MessageStatus.FAILED, now, why)

    except (NetworkError, TelegramError) as error:
        name = type(error).__name__

        async def outcome(session: AsyncSession, row: ScheduledMessage, participant: Participant) -> None:
            outbox.retry_later(row, now, name)

    else:

        async def outcome(session: AsyncSession, row: ScheduledMessage, participant: Participant) -> None:
            outbox.finish(row, MessageStatus.SENT, now)
            row.sent_at = now
            row.telegram_message_id = message_id
            await reminders.after_send(session, row, participant, now, app.services.protocol)
            await reminders.mark_reachable(session, participant.id)

    try:
        await retry_transient(
            lambda: outbox.record(app.services.sessions, row_id, token, outcome),
            what=f"recording the outcome of reminder {row_id}",
        )
    except Exception as exc:
        if message_id is None:
            raise  # not sent: dispatch_tick releases the row for a later try
        # Sent, but what follows a send failed (a bug, or the database away for minutes).
        # Still mark it sent, alone, so it is not sent again and again.
        failure = type(exc).__name__
        log.error("reminder %s sent but not fully recorded: %s", row_id, failure, exc_info=exc)

        async def sent_only(session: AsyncSession, row: ScheduledMessage, participant: Participant) -> None:
            outbox.finish(row, MessageStatus.SENT, now, f"sent; recording what follows failed: {failure}")
            row.sent_at = now
            row.telegram_message_id = message_id

        await retry_transient(
            lambda: outbox.record(app.services.sessions, row_id, token, sent_only),
            what=f"marking reminder {row_id} sent",
        )


async def _prepare(
    app: TrialApplication, row_id: int, token: str, now: datetime
) -> tuple[int, str, InlineKeyboardMarkup | None] | None:
    """The re-check at send time: (chat, text, buttons) to send, or None when the row
    was finished here (cancelled, skipped, deferred, carried out) or is not ours."""
    services = app.services
    protocol = services.protocol
    async with services.sessions() as session:
        row = await session.get(ScheduledMessage, row_id)
        if row is None or row.claim_token != token or row.status is not MessageStatus.SENDING:
            return None
        participant = await session.get(Participant, row.participant_id)
        assert participant is not None
        today = local_date(now, protocol.tz)
        if not store.is_messaged(participant, today):
            outbox.finish(row, MessageStatus.CANCELLED, now, f"participant {participant.status.value}")
        elif now >= row.stale_after:
            outbox.finish(row, MessageStatus.SKIPPED, now, "stale")
        elif row.respects_quiet_hours and protocol.quiet.is_quiet(now, protocol.tz):
            later = protocol.quiet.defer(now, protocol.tz)
            if later >= row.stale_after:
                outbox.finish(row, MessageStatus.SKIPPED, now, "stale after quiet hours")
            else:
                row.next_attempt_at = later
                outbox.finish(row, MessageStatus.PLANNED, now, "quiet hours")
        elif not await reminders.still_wanted(
            session, row, participant, now, services.settings.coordinator_chat_ids, services.protocol
        ):
            pass  # finished there
        elif row.kind not in _MESSAGE_KINDS:
            outbox.finish(row, MessageStatus.SKIPPED, now, "unknown kind")
        elif (chat_id := await chat_of(session, participant.id)) is None:
            outbox.finish(row, MessageStatus.CANCELLED, now, "no chat linked")
        else:
            with use_locale(participant.language.value):
                text, markup = await _render(session, row, participant, app)
            return chat_id, text, markup
        await session.commit()
        return None


async def _render(
    session: AsyncSession, row: ScheduledMessage, participant: Participant, app: TrialApplication
) -> tuple[str, InlineKeyboardMarkup | None]:
    protocol = app.services.protocol
    payload = row.payload
    kind = row.kind
    if kind == MessageKind.DOSE_REMINDER.value:
        return reminder_texts.dose_text(kind, payload, protocol, participant.arm), reminder_texts.dose_buttons(row.id)
    if kind in (MessageKind.DOSE_FOLLOWUP.value, MessageKind.DOSE_REMIND_LATER.value):
        reminder_id = await session.scalar(
            select(ScheduledMessage.id).where(
                ScheduledMessage.participant_id == participant.id,
                ScheduledMessage.key == str(payload.get("reminder_key")),
            )
        )
        assert reminder_id is not None
        text = reminder_texts.dose_text(kind, payload, protocol, participant.arm)
        return text, reminder_texts.dose_buttons(reminder_id)
    if kind == MessageKind.VISIT_REMINDER.value:
        return reminder_texts.visit_text(payload, protocol), reminder_texts.visit_buttons(int(payload["week"]))
    if kind == MessageKind.VISIT_DATE_NOTICE.value:
        return reminder_texts.visit_date_notice(payload, protocol), None
    instrument = str(payload.get("instrument", ""))
    text = reminder_texts.invitation_text(kind, payload, app.services.instruments)
    return text, reminder_texts.invitation_buttons(instrument)
