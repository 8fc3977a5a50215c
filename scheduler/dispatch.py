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
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from telegram import InlineKeyboardMarkup
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError

from bot import reminder_texts
from bot.i18n import use_locale
from domain import audit
from domain.alerts import raise_alert
from domain.errors import DomainError
from domain.participants import chat_of
from models import (
    AlertLevel,
    ClinicVisit,
    DoseAnswer,
    DoseLog,
    MessageStatus,
    Participant,
    ParticipantReach,
    ParticipantStatus,
    QuestionnaireSession,
    ScheduledMessage,
    VisitStatus,
)
from models.db import retry_transient
from scheduler import store
from scheduler.calendar import to_local
from scheduler.planner import MessageKind, make_dose_followup

if TYPE_CHECKING:
    from bot.app import TrialApplication

log = logging.getLogger(__name__)

BATCH = 100
MAX_BATCHES = 50
BACKOFF_FIRST = timedelta(seconds=30)
BACKOFF_MAX = timedelta(minutes=15)
RECENTLY_ANSWERED = timedelta(days=3)  # a questionnaire completed this recently is not invited again

_MESSAGE_KINDS = frozenset(
    {
        MessageKind.DOSE_REMINDER.value,
        MessageKind.DOSE_FOLLOWUP.value,
        MessageKind.DOSE_REMIND_LATER.value,
        MessageKind.VISIT_REMINDER.value,
        MessageKind.CHECKIN_PROMPT.value,
        MessageKind.QUESTIONNAIRE_PROMPT.value,
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
    await resume_ended_pauses(app, now)
    concurrency = app.services.settings.dispatch_concurrency
    for _ in range(MAX_BATCHES):
        token = secrets.token_hex(8)
        claimed = await claim(app, now, token)
        if concurrency <= 1:
            for row_id, _participant in claimed:
                await _deliver_or_release(app, row_id, token, now)
        else:
            await _deliver_concurrently(app, claimed, token, now, concurrency)
        if len(claimed) < BATCH:
            return


async def _deliver_or_release(app: TrialApplication, row_id: int, token: str, now: datetime) -> None:
    try:
        await deliver(app, row_id, token, now)
    except Exception as exc:  # one bad row must not stop the others
        log.error("dispatch of row %s failed: %s", row_id, type(exc).__name__, exc_info=exc)
        await _release(app, row_id, token, now, type(exc).__name__)


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


async def resume_ended_pauses(app: TrialApplication, now: datetime) -> None:
    """Pauses with an end date that has come become ACTIVE again (the rows from that date
    were planned at /pause; this makes /status and the re-check agree)."""
    from domain.schedule_ops import resume

    protocol = app.services.protocol
    today = to_local(now, protocol.tz).date()
    async with app.services.sessions() as session:
        due = list(
            await session.scalars(
                select(Participant.study_id).where(
                    Participant.status == ParticipantStatus.PAUSED,
                    Participant.paused_until.is_not(None),
                    Participant.paused_until <= today,
                )
            )
        )
        for study_id in due:
            try:
                await resume(
                    session, study_id, actor=audit.SYSTEM, now=now, protocol=protocol, action="participant.resume_auto"
                )
            except DomainError:  # another process resumed it a moment ago (checked before any change)
                continue
        if due:
            await session.commit()


async def claim(app: TrialApplication, now: datetime, token: str) -> list[tuple[int, int]]:
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
    lease = timedelta(seconds=app.services.settings.reminder_lease_seconds)
    async with app.services.sessions() as session:
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


async def _release(app: TrialApplication, row_id: int, token: str, now: datetime, error: str) -> None:
    async with app.services.sessions() as session:
        row = await session.get(ScheduledMessage, row_id)
        if row is not None and row.claim_token == token and row.status is MessageStatus.SENDING:
            _retry_later(row, now, error)
            await session.commit()


def _finish(row: ScheduledMessage, status: MessageStatus, now: datetime, why: str | None = None) -> None:
    row.status = status
    row.claim_token = None
    row.claimed_until = None
    row.last_error = why
    row.updated_at = now


def _retry_later(row: ScheduledMessage, now: datetime, error: str, at_least: timedelta = timedelta(0)) -> None:
    """Back to PLANNED with exponential back-off (never marked sent)."""
    delay = min(BACKOFF_FIRST * (2 ** max(row.attempts - 1, 0)), BACKOFF_MAX)
    row.next_attempt_at = now + max(delay, at_least)
    _finish(row, MessageStatus.PLANNED, now, error[:200])


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
            _finish(row, MessageStatus.FAILED, now, "Forbidden: the participant blocked the bot")
            await _mark_unreachable(session, participant, now, app)

    except RetryAfter as error:
        wait = error.retry_after
        retry = wait if isinstance(wait, timedelta) else timedelta(seconds=wait)

        async def outcome(session: AsyncSession, row: ScheduledMessage, participant: Participant) -> None:
            _retry_later(row, now, "RetryAfter", retry)

    except BadRequest as error:
        # Permanent for this message (chat not found, bad markup): do not loop on it.
        log.warning("row %s refused by Telegram: %s", row_id, type(error).__name__)
        why = f"BadRequest: {str(error)[:150]}"

        async def outcome(session: AsyncSession, row: ScheduledMessage, participant: Participant) -> None:
            _finish(row, MessageStatus.FAILED, now, why)

    except (NetworkError, TelegramError) as error:
        name = type(error).__name__

        async def outcome(session: AsyncSession, row: ScheduledMessage, participant: Participant) -> None:
            _retry_later(row, now, name)

    else:

        async def outcome(session: AsyncSession, row: ScheduledMessage, participant: Participant) -> None:
            _finish(row, MessageStatus.SENT, now)
            row.sent_at = now
            row.telegram_message_id = message_id
            await _after_send(session, row, participant, now, app)
            await _mark_reachable(session, participant.id)

    try:
        await retry_transient(
            lambda: _record(app, row_id, token, outcome), what=f"recording the outcome of reminder {row_id}"
        )
    except Exception as exc:
        if message_id is None:
            raise  # not sent: dispatch_tick releases the row for a later try
        # Sent, but what follows a send failed (a bug, or the database away for minutes).
        # Still mark it sent, alone, so it is not sent again and again.
        failure = type(exc).__name__
        log.error("reminder %s sent but not fully recorded: %s", row_id, failure, exc_info=exc)

        async def sent_only(session: AsyncSession, row: ScheduledMessage, participant: Participant) -> None:
            _finish(row, MessageStatus.SENT, now, f"sent; recording what follows failed: {failure}")
            row.sent_at = now
            row.telegram_message_id = message_id

        await retry_transient(lambda: _record(app, row_id, token, sent_only), what=f"marking reminder {row_id} sent")


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
        today = to_local(now, protocol.tz).date()
        if not store.is_messaged(participant, today):
            _finish(row, MessageStatus.CANCELLED, now, f"participant {participant.status.value}")
        elif now >= row.stale_after:
            _finish(row, MessageStatus.SKIPPED, now, "stale")
        elif row.respects_quiet_hours and protocol.quiet.is_quiet(now, protocol.tz):
            later = protocol.quiet.defer(now, protocol.tz)
            if later >= row.stale_after:
                _finish(row, MessageStatus.SKIPPED, now, "stale after quiet hours")
            else:
                row.next_attempt_at = later
                _finish(row, MessageStatus.PLANNED, now, "quiet hours")
        elif not await _still_wanted(session, row, participant, now, app):
            pass  # finished there
        elif row.kind not in _MESSAGE_KINDS:
            _finish(row, MessageStatus.SKIPPED, now, "unknown kind")
        elif (chat_id := await chat_of(session, participant.id)) is None:
            _finish(row, MessageStatus.CANCELLED, now, "no chat linked")
        else:
            with use_locale(participant.language.value):
                text, markup = await _render(session, row, participant, app)
            return chat_id, text, markup
        await session.commit()
        return None


async def _record(
    app: TrialApplication,
    row_id: int,
    token: str,
    outcome: Callable[[AsyncSession, ScheduledMessage, Participant], Awaitable[None]],
) -> None:
    """Apply a send's outcome to its row in one transaction; nothing if the row is no
    longer this claim's (cannot happen while the lease is longer than a batch takes)."""
    async with app.services.sessions() as session:
        row = await session.get(ScheduledMessage, row_id)
        if row is None or row.claim_token != token or row.status is not MessageStatus.SENDING:
            log.warning("reminder %s: its claim passed to another process before the outcome was stored", row_id)
            return
        participant = await session.get(Participant, row.participant_id)
        assert participant is not None
        row.attempts += 1
        await outcome(session, row, participant)
        await session.commit()


async def _still_wanted(
    session: AsyncSession, row: ScheduledMessage, participant: Participant, now: datetime, app: TrialApplication
) -> bool:
    """Kind-specific re-check; carries out the rows that send nothing. False when the row
    was finished here (cancelled, skipped or done)."""
    kind = row.kind
    payload = row.payload
    if kind in (MessageKind.DOSE_FOLLOWUP.value, MessageKind.DOSE_REMIND_LATER.value):
        log_row = await _dose_log(session, participant.id, str(payload.get("reminder_key")))
        if log_row is None or log_row.answer in (DoseAnswer.TAKEN, DoseAnswer.SKIPPED, DoseAnswer.NO_ANSWER):
            _finish(row, MessageStatus.CANCELLED, now, "dose answered")
            return False
        return True
    if kind == MessageKind.DOSE_NO_ANSWER_CLOSE.value:
        log_row = await _dose_log(session, participant.id, str(payload.get("reminder_key")))
        if log_row is None:
            _finish(row, MessageStatus.SKIPPED, now, "no reminder was sent")
        elif log_row.answer in (None, DoseAnswer.LATER):
            log_row.answer = DoseAnswer.NO_ANSWER
            log_row.answered_at = now
            await store.cancel_followups(session, participant.id, log_row.reminder_key, now)
            audit.record(
                session,
                at=now,
                actor=audit.SYSTEM,
                action="dose.no_answer",
                participant_id=participant.id,
                after={"reminder_key": log_row.reminder_key, "dose_date": log_row.dose_date.isoformat()},
            )
            _finish(row, MessageStatus.SENT, now)
            row.sent_at = now
        else:
            _finish(row, MessageStatus.SKIPPED, now, "already answered")
        return False
    if kind in (MessageKind.CHECKIN_PROMPT.value, MessageKind.QUESTIONNAIRE_PROMPT.value):
        # Already answered (e.g. with /checkin) shortly before: no invitation needed.
        done = await session.scalar(
            select(QuestionnaireSession.id)
            .where(
                QuestionnaireSession.participant_id == participant.id,
                QuestionnaireSession.instrument_id == str(payload.get("instrument", "")),
                QuestionnaireSession.completed_at >= now - RECENTLY_ANSWERED,
            )
            .limit(1)
        )
        if done is not None:
            _finish(row, MessageStatus.SKIPPED, now, "already answered")
            return False
        return True
    if kind in (MessageKind.VISIT_REMINDER.value, MessageKind.VISIT_WINDOW_CHECK.value):
        visit = await session.scalar(
            select(ClinicVisit).where(
                ClinicVisit.participant_id == participant.id, ClinicVisit.week == int(payload["week"])
            )
        )
        if visit is not None and visit.status is not VisitStatus.PLANNED:
            _finish(row, MessageStatus.CANCELLED, now, "visit recorded")
            return False
        if kind == MessageKind.VISIT_WINDOW_CHECK.value:
            await raise_alert(
                session,
                participant=participant,
                kind="visit_missed",
                level=AlertLevel.URGENT,
                summary=(
                    f"{participant.study_id}: the week {payload['week']} visit (planned {payload['visit_date']}, "
                    f"window {payload['window_start']} to {payload['window_end']}) is not recorded and the window "
                    "has closed."
                ),
                reasons=[
                    "A protocol visit outside its window is a protocol deviation and the week 24 visit holds "
                    "the primary endpoint (mRSS): record it with /visit, or arrange the visit now."
                ],
                now=now,
                coordinator_chats=app.services.settings.coordinator_chat_ids,
                details={"week": payload["week"]},
                source=f"scheduled_message:{row.id}",
            )
            _finish(row, MessageStatus.SENT, now)
            row.sent_at = now
            return False
        return True
    return True


async def _dose_log(session: AsyncSession, participant_id: int, reminder_key: str) -> DoseLog | None:
    found: DoseLog | None = await session.scalar(
        select(DoseLog).where(DoseLog.participant_id == participant_id, DoseLog.reminder_key == reminder_key)
    )
    return found


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
    instrument = str(payload.get("instrument", ""))
    text = reminder_texts.invitation_text(kind, payload, app.services.instruments)
    return text, reminder_texts.invitation_buttons(instrument)


async def _after_send(
    session: AsyncSession, row: ScheduledMessage, participant: Participant, now: datetime, app: TrialApplication
) -> None:
    """A dose reminder that went out opens its dose-log row and plans its one follow-up."""
    if row.kind != MessageKind.DOSE_REMINDER.value:
        return
    payload = row.payload
    hh, mm = (int(x) for x in str(payload.get("local_time", "09:00")).split(":"))
    existing = await _dose_log(session, participant.id, row.key)
    if existing is None:
        session.add(
            DoseLog(
                participant_id=participant.id,
                reminder_key=row.key,
                regimen=str(payload.get("regimen", "")),
                drug=str(payload.get("drug", ""))[:64],
                dose_date=date.fromisoformat(str(payload["date"])),
                planned_time=time(hh, mm),
                reminded_at=now,
                later_count=0,
            )
        )
    from domain.schedule_ops import planned_from_row

    followup = make_dose_followup(planned_from_row(row), now, app.services.protocol)
    if followup is not None:
        taken = await session.scalar(
            select(ScheduledMessage.id).where(
                ScheduledMessage.participant_id == participant.id, ScheduledMessage.key == followup.key
            )
        )
        if taken is None:
            session.add(store.new_row(participant.id, followup, now))


async def _mark_unreachable(
    session: AsyncSession, participant: Participant, now: datetime, app: TrialApplication
) -> None:
    reach = await session.get(ParticipantReach, participant.id)
    if reach is None:
        reach = ParticipantReach(participant_id=participant.id)
        session.add(reach)
    if reach.unreachable_since is not None and reach.notified_at is not None:
        return  # already told the coordinators in this episode
    reach.unreachable_since = reach.unreachable_since or now
    reach.notified_at = now
    reach.last_error = "Forbidden: bot blocked by the user"
    audit.record(session, at=now, actor=audit.SYSTEM, action="participant.unreachable", participant_id=participant.id)
    await raise_alert(
        session,
        participant=participant,
        kind="unreachable",
        level=AlertLevel.INFO,
        summary=f"{participant.study_id} can no longer be reached on Telegram (bot blocked or chat deleted).",
        reasons=["Reminders cannot be delivered. Please contact the participant by phone."],
        now=now,
        coordinator_chats=app.services.settings.coordinator_chat_ids,
        source=f"participant:{participant.study_id}",
    )


async def _mark_reachable(session: AsyncSession, participant_id: int) -> None:
    reach = await session.get(ParticipantReach, participant_id)
    if reach is not None and reach.unreachable_since is not None:
        reach.unreachable_since = None
        reach.notified_at = None
        reach.last_error = None
