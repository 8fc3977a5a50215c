"""The "dispatch" tick: claim due rows, re-check them, send them, record the result.

1. Pauses whose end date has come are lifted (audited as the system).
2. Claim: due PLANNED rows (and SENDING rows whose claim lease, REMINDER_LEASE_SECONDS,
   ran out: a process died mid-send) are marked SENDING with this tick's token in one short transaction. On
   PostgreSQL the candidates are read ``FOR UPDATE SKIP LOCKED``, so several processes
   never claim the same row; the UPDATE is conditional on the status on both databases,
   so a row is claimed by exactly one token.
3. Deliver the batch as a pipeline (issue 18): one short transaction re-checks all its
   rows at send time with a few set-based queries (the participants and their chats,
   the doses answered, the visits recorded, the questionnaires answered:
   ``domain.reminders.load_facts``), finishes the rows that send nothing, defers
   bot-timed rows out of quiet hours and renders the rest in each participant's
   language; then the rows are sent through PTB (the rate limiter is on) with a bounded
   number in flight, and the outcomes are recorded as they come back, every outcome
   that arrived while the last was being written in one transaction of Core statements
   (the rows marked SENT with their Telegram message ids in one statement, the dose-log
   rows and follow-ups in one ``INSERT … ON CONFLICT DO NOTHING`` each, the reach flags
   in one UPDATE). No write lock is held across the network call.

In flight: a send takes a slot that is given back only once its outcome is committed,
so at most that many messages can have been accepted by Telegram and not recorded.
DISPATCH_CONCURRENCY fixes the number of slots; 0, the default, sizes them to the
measured round trip and the send rate, TELEGRAM_SEND_RATE (``auto_slots``): one while a
slot's cycle (round trip and record) fits in the interval between two messages (1/30 s
at Telegram's free rate), so on a nearby server a crash repeats at most one message;
over a slow link, or at the paid broadcasts' higher rates, as many as it takes to keep
up with the rate, plus one (4 at an 80 ms round trip and 30 a second, 5 with a 30 ms
record), at most a quarter of a second's sending (``most_slots``: 8 at 30 a second, 64
from 256 a second).

Failures: a network error, a timeout, a 5xx or RetryAfter leaves the row PLANNED with a
back-off (it is never marked sent); Forbidden (the participant blocked the bot) marks the
row FAILED and the participant unreachable (``participant_reach``), and the coordinators
are told once per episode (alert kind "unreachable", INFO). The next message that gets
through clears the flag.

Exactly once: a row is sent by the one process that claimed it and recorded in the same
step. The only window for a duplicate is a process killed after Telegram accepted a
message and before its outcome's commit (milliseconds; at most the slots in flight); the
lease then expires and the row is sent again: we prefer a rare duplicate reminder to a
lost one.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from telegram.constants import FloodLimit
from telegram.error import BadRequest, Forbidden, RetryAfter, TelegramError

from bot import calls, reminder_texts
from bot.i18n import use_locale
from bot.keyboards import Keyboard
from core.aio import GroupCommit
from domain import reminders
from models import (
    ChatLink,
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


FREE_RATE = int(FloodLimit.MESSAGES_PER_SECOND)
"""Messages a second Telegram lets a bot send to different chats without paying (30);
TELEGRAM_SEND_RATE above it sends reminders as paid broadcasts."""
MOST_SLOTS = 64
"""The most slots there can be (DISPATCH_CONCURRENCY's own maximum)."""
CRASH_WINDOW_S = 0.25
"""DISPATCH_CONCURRENCY=0 opens at most what the send rate sends in this time: the most a
crash may repeat is a quarter of a second's sending (8 at the free 30 a second)."""


def most_slots(rate: float) -> int:
    """The most slots DISPATCH_CONCURRENCY=0 opens at this send rate, whatever the round trip."""
    return max(1, min(MOST_SLOTS, math.ceil(rate * CRASH_WINDOW_S)))


def auto_slots(round_trip_s: float, record_s: float = 0.0, rate: float = FREE_RATE) -> int:
    """Messages in flight needed to send at ``rate`` (TELEGRAM_SEND_RATE): one while one
    slot's cycle (the round trip and the recording of its outcome) fits in the interval
    between two messages (a nearby server at the free 30 a second); beyond that enough
    to fill the cycle at that rate, plus one, at most ``most_slots(rate)``."""
    cycle = round_trip_s + record_s
    if rate * cycle <= 1:
        return 1
    return min(most_slots(rate), math.ceil(rate * cycle) + 1)


async def dispatch_tick(app: TrialApplication) -> None:
    """Everything due at the clock's now: lift ended pauses, then claim and deliver,
    a batch at a time."""
    now = app.services.clock.now()
    await reminders.resume_ended_pauses(app.services.sessions, now, app.services.protocol)
    for _ in range(outbox.MAX_BATCHES):
        token = secrets.token_hex(8)
        claimed = await claim(app, now, token)
        if claimed:
            await deliver_batch(app, [row_id for row_id, _participant in claimed], token, now)
        if len(claimed) < outbox.BATCH:
            return


async def claim(app: TrialApplication, now: datetime, token: str) -> list[tuple[int, int]]:
    """Claim this process's share of the due reminders, under REMINDER_LEASE_SECONDS."""
    lease = timedelta(seconds=app.services.settings.reminder_lease_seconds)
    return await outbox.claim(outbox.REMINDERS, app.services.sessions, now, token, lease)


@dataclass
class _Send:
    """A claimed row that passed its re-check, rendered."""

    row: ScheduledMessage  # as loaded by the re-check (detached)
    chat_id: int
    text: str
    markup: Keyboard | None
    flagged: bool = False  # the participant was flagged unreachable at the re-check


@dataclass
class _Result:
    """What Telegram said to one send: a message id, or the error."""

    send: _Send
    message_id: int | None = None
    error: TelegramError | None = None


async def deliver_batch(app: TrialApplication, row_ids: list[int], token: str, now: datetime) -> None:
    """Re-check the claimed rows together, send those still wanted, record the outcomes.

    Should the batch's re-check fail (a bug in one row, or the database away), each row
    is tried alone, so that one bad row holds back only itself."""
    try:
        sends = await _prepare(app, row_ids, token, now)
    except Exception as exc:
        if len(row_ids) == 1:
            log.error("dispatch of row %s failed: %s", row_ids[0], type(exc).__name__, exc_info=exc)
            await outbox.release(outbox.REMINDERS, app.services.sessions, row_ids[0], token, now, type(exc).__name__)
            return
        log.warning("dispatch: the batch's re-check failed (%s); one row at a time", type(exc).__name__)
        for row_id in row_ids:
            await deliver_batch(app, [row_id], token, now)
        return
    await _send_all(app, sends, token, now)


async def deliver(app: TrialApplication, row_id: int, token: str, now: datetime) -> None:
    """One claimed row alone (a batch of one)."""
    await deliver_batch(app, [row_id], token, now)


class _Slots:
    """The messages in flight: a slot is taken before a send and given back once its
    outcome is committed. ``limit`` is read each time (auto: it follows the round trip).
    First come, first served; a slot given back wakes only the waiters that now fit
    (a condition's notify_all woke every chain of the batch, up to 100 tasks, for each
    message sent)."""

    def __init__(self, limit: Callable[[], int]) -> None:
        self._limit = limit
        self._used = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def take(self) -> None:
        if not self._waiters and self._used < self._limit():
            self._used += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # granted, then cancelled: pass it on
                self.give_back()
            raise

    def give_back(self) -> None:
        self._used -= 1
        limit = self._limit()
        while self._waiters and self._used < limit:
            waiter = self._waiters.popleft()
            if not waiter.done():  # a cancelled waiter is skipped
                self._used += 1
                waiter.set_result(None)


async def _send_all(app: TrialApplication, sends: list[_Send], token: str, now: datetime) -> None:
    """Send with bounded slots, each participant's rows one after another in due order
    (a dose reminder before its follow-up), recording outcomes as they come back."""
    configured = app.services.settings.dispatch_concurrency
    rate = app.services.settings.telegram_send_rate
    slots = _Slots(lambda: configured or auto_slots(_round_trip_s(app), app.dispatch_record_s, rate))
    paid = rate > FREE_RATE
    flagged = {send.row.participant_id for send in sends if send.flagged}
    recorder: GroupCommit[_Result] = GroupCommit(lambda results: _record(app, results, token, now, flagged))
    chains: dict[int, list[_Send]] = {}
    for send in sends:
        chains.setdefault(send.row.participant_id, []).append(send)

    async def chain(items: list[_Send]) -> None:
        for send in items:
            await slots.take()
            try:
                try:
                    result = await _send(app, send, paid)
                except Exception as exc:  # a bug in the send: this row is tried again later, the others go on
                    log.error("dispatch of row %s failed: %s", send.row.id, type(exc).__name__, exc_info=exc)
                    await outbox.release(
                        outbox.REMINDERS, app.services.sessions, send.row.id, token, now, type(exc).__name__
                    )
                    continue
                await recorder.add(result)
            finally:
                slots.give_back()

    results = await asyncio.gather(*(chain(items) for items in chains.values()), return_exceptions=True)
    failure = next((r for r in results if isinstance(r, BaseException)), None)
    if failure is not None:
        raise failure  # an outcome could not be stored (the database away for minutes): the tick is retried


def _round_trip_s(app: TrialApplication) -> float:
    """The HTTP round trip of a send as this process measures it (bot.http.AiohttpRequest;
    the rate limiter's waits are not in it)."""
    return float(getattr(app.bot.request, "round_trip_s", 0.0))


async def _send(app: TrialApplication, send: _Send, paid: bool) -> _Result:
    """One send; ``paid``: as a paid broadcast (TELEGRAM_SEND_RATE above the free 30).

    Through `bot.calls.send_text`: of Telegram's answer the dispatcher keeps the message
    id only."""
    try:
        message_id = await calls.send_text(app.bot, send.chat_id, send.text, send.markup, paid=paid)
    except BadRequest as error:
        if not paid:
            return _Result(send, error=error)
        # Telegram refused the paid broadcast itself (the bot not allowed to, its Stars
        # spent) or the message (a chat gone): a reminder must not be lost to the first,
        # so it goes again as an ordinary message, under Telegram's free limit.
        log.warning(
            "row %s: a paid broadcast was refused (%s); sent as an ordinary message", send.row.id, type(error).__name__
        )
        try:
            message_id = await calls.send_text(app.bot, send.chat_id, send.text, send.markup)
        except TelegramError as again:
            return _Result(send, error=again)
    except TelegramError as error:
        return _Result(send, error=error)
    return _Result(send, message_id=message_id)


def _failure(app: TrialApplication, row_id: int, error: TelegramError, now: datetime) -> outbox.Outcome:
    """What a refused or failed send does to its row (never marked sent)."""
    if isinstance(error, Forbidden):

        async def blocked(session: AsyncSession, row: ScheduledMessage, participant: Participant) -> None:
            outbox.finish(row, MessageStatus.FAILED, now, "Forbidden: the participant blocked the bot")
            await reminders.mark_unreachable(session, participant, now, app.services.settings.coordinator_chat_ids)

        return blocked
    if isinstance(error, RetryAfter):
        wait = error.retry_after
        retry = wait if isinstance(wait, timedelta) else timedelta(seconds=wait)

        async def later(session: AsyncSession, row: ScheduledMessage, participant: Participant) -> None:
            outbox.retry_later(row, now, "RetryAfter", retry)

        return later
    if isinstance(error, BadRequest):
        # Permanent for this message (chat not found, bad markup): do not loop on it.
        log.warning("row %s refused by Telegram: %s", row_id, type(error).__name__)
        why = f"BadRequest: {str(error)[:150]}"

        async def refused(session: AsyncSession, row: ScheduledMessage, participant: Participant) -> None:
            outbox.finish(row, MessageStatus.FAILED, now, why)

        return refused
    name = type(error).__name__  # NetworkError, TimedOut, any other TelegramError: try again later

    async def again(session: AsyncSession, row: ScheduledMessage, participant: Participant) -> None:
        outbox.retry_later(row, now, name)

    return again


async def _record(app: TrialApplication, results: list[_Result], token: str, now: datetime, flagged: set[int]) -> None:
    """Store the outcomes of these sends in one transaction, tried again while the
    database is away (``retry_transient``): a message Telegram accepted must be marked
    sent, or the lease would send it twice. ``flagged``: the participants who may be
    flagged unreachable (at the re-check, or by a refusal in this batch)."""
    services = app.services
    took: list[float] = []  # the attempt that committed (a pause between retries is not the record's cost)

    async def write() -> None:
        started = time.perf_counter()
        async with services.sessions() as session:
            accepted = [(r.send.row.id, r.message_id) for r in results if r.message_id is not None]
            marked = await outbox.mark_sent(outbox.REMINDERS, session, accepted, token, now)
            sent = [r.send.row for r in results if r.send.row.id in marked]
            await reminders.after_sends(session, sent, now, services.protocol, flagged)
            failed = [r for r in results if r.error is not None]
            ours = (
                await outbox.still_ours(outbox.REMINDERS, session, [r.send.row.id for r in failed], token)
                if failed
                else set()
            )
            for r in failed:
                if r.send.row.id in ours and r.error is not None:
                    if isinstance(r.error, Forbidden):
                        flagged.add(r.send.row.participant_id)
                    await outbox.record_failure(session, r.send.row.id, _failure(app, r.send.row.id, r.error, now))
            await session.commit()
        took.append(time.perf_counter() - started)

    ids = ", ".join(str(r.send.row.id) for r in results)
    try:
        await retry_transient(write, what=f"recording the outcome of reminder(s) {ids}")
        last = took[-1]
        app.dispatch_record_s = last if app.dispatch_record_s == 0 else 0.8 * app.dispatch_record_s + 0.2 * last
    except Exception as exc:
        accepted = [(r.send.row.id, r.message_id) for r in results if r.message_id is not None]
        failure = type(exc).__name__
        for r in results:
            if r.message_id is None:
                log.error("dispatch of row %s failed: %s", r.send.row.id, failure, exc_info=exc)
                await outbox.release(outbox.REMINDERS, services.sessions, r.send.row.id, token, now, failure)
        if not accepted:
            return
        # Sent, but what follows a send failed (a bug, or the database away for minutes).
        # Still mark them sent, alone, so they are not sent again and again.
        log.error("reminder(s) %s sent but not fully recorded: %s", ids, failure, exc_info=exc)

        async def sent_only() -> None:
            async with services.sessions() as session:
                why = f"sent; recording what follows failed: {failure}"
                await outbox.mark_sent(
                    outbox.REMINDERS, session, [(i, m) for i, m in accepted if m is not None], token, now, why
                )
                await session.commit()

        await retry_transient(sent_only, what=f"marking reminder(s) {ids} sent")


async def _prepare(app: TrialApplication, row_ids: list[int], token: str, now: datetime) -> list[_Send]:
    """The re-check at send time, for a batch in one transaction: what to send, in the
    claimed order; the rows finished here (cancelled, skipped, deferred, carried out) are
    committed with it, and rows no longer this claim's are left alone."""
    services = app.services
    async with services.sessions() as session:
        rows = {row.id: row for row in await outbox.claimed(outbox.REMINDERS, session, row_ids, token)}
        pids = {row.participant_id for row in rows.values()}
        participants = {p.id: p for p in await session.scalars(select(Participant).where(Participant.id.in_(pids)))}
        chats = dict(
            (
                await session.execute(
                    select(ChatLink.participant_id, ChatLink.chat_id).where(ChatLink.participant_id.in_(pids))
                )
            )
            .tuples()
            .all()
        )
        facts = await reminders.load_facts(session, list(rows.values()), now)
        sends: list[_Send] = []
        for row_id in row_ids:
            row = rows.get(row_id)
            if row is None:
                continue
            send = await _recheck(app, session, row, participants[row.participant_id], chats, facts, now)
            if send is not None:
                sends.append(send)
        await session.commit()
    return sends


async def _recheck(
    app: TrialApplication,
    session: AsyncSession,
    row: ScheduledMessage,
    participant: Participant,
    chats: dict[int, int],
    facts: reminders.Facts,
    now: datetime,
) -> _Send | None:
    """One row's re-check: the send, or None when the row was finished here."""
    services = app.services
    protocol = services.protocol
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
            outbox.postpone(row, later, now, "quiet hours")
    elif not await reminders.still_wanted(
        session, row, participant, now, services.settings.coordinator_chat_ids, facts, protocol
    ):
        pass  # finished there
    elif row.kind not in _MESSAGE_KINDS:
        outbox.finish(row, MessageStatus.SKIPPED, now, "unknown kind")
    elif (chat_id := chats.get(participant.id)) is None:
        outbox.finish(row, MessageStatus.CANCELLED, now, "no chat linked")
    else:
        with use_locale(participant.language.value):
            text, markup = _render(row, participant, facts, app)
        return _Send(row, chat_id, text, markup, participant.id in facts.unreachable)
    return None


def _render(
    row: ScheduledMessage, participant: Participant, facts: reminders.Facts, app: TrialApplication
) -> tuple[str, Keyboard | None]:
    protocol = app.services.protocol
    payload = row.payload
    kind = row.kind
    if kind == MessageKind.DOSE_REMINDER.value:
        return reminder_texts.dose_text(kind, payload, protocol, participant.arm), reminder_texts.dose_buttons(row.id)
    if kind in (MessageKind.DOSE_FOLLOWUP.value, MessageKind.DOSE_REMIND_LATER.value):
        reminder_id = facts.reminder_ids.get((participant.id, str(payload.get("reminder_key"))))
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
