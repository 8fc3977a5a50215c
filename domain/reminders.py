"""A reminder's clinical side: is a due row still wanted at send time, and what
follows a send (a dose reminder opens its dose-log row and plans its follow-up, an
unanswered dose is closed as "no answer", a visit window that closed unrecorded
raises the missed-visit alert, a blocked chat flags the participant unreachable).

The bot renders and sends; the outbox (scheduler.outbox) claims and records."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, time, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from domain import audit, visit_questionnaires
from domain.alerts import raise_alert
from domain.errors import DomainError
from domain.schedule_ops import planned_from_row, resume
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
from models.db import SessionFactory
from scheduler import store
from scheduler.calendar import local_date
from scheduler.outbox import finish
from scheduler.planner import MessageKind, make_dose_followup
from scheduler.protocol import Protocol

_VISIT_KINDS = frozenset(
    {MessageKind.VISIT_REMINDER.value, MessageKind.VISIT_WINDOW_CHECK.value, MessageKind.VISIT_DATE_NOTICE.value}
)
RECENTLY_ANSWERED = timedelta(days=3)  # a questionnaire completed this recently is not invited again


async def resume_ended_pauses(sessions: SessionFactory, now: datetime, protocol: Protocol) -> None:
    """Pauses with an end date that has come become ACTIVE again (the rows from that date
    were planned at /pause; this makes /status and the re-check agree)."""
    today = local_date(now, protocol.tz)
    async with sessions() as session:
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


async def still_wanted(
    session: AsyncSession,
    row: ScheduledMessage,
    participant: Participant,
    now: datetime,
    coordinator_chats: Sequence[int],
    protocol: Protocol | None = None,
) -> bool:
    """Kind-specific re-check; carries out the rows that send nothing. False when the row
    was finished here (cancelled, skipped or done). With `protocol`, a visit questionnaire
    is not invited again for a visit (a diary: a day) that has its response."""
    kind = row.kind
    payload = row.payload
    if kind in (MessageKind.DOSE_FOLLOWUP.value, MessageKind.DOSE_REMIND_LATER.value):
        log_row = await dose_log(session, participant.id, str(payload.get("reminder_key")))
        if log_row is None or log_row.answer in (DoseAnswer.TAKEN, DoseAnswer.SKIPPED, DoseAnswer.NO_ANSWER):
            finish(row, MessageStatus.CANCELLED, now, "dose answered")
            return False
        return True
    if kind == MessageKind.DOSE_NO_ANSWER_CLOSE.value:
        log_row = await dose_log(session, participant.id, str(payload.get("reminder_key")))
        if log_row is None:
            finish(row, MessageStatus.SKIPPED, now, "no reminder was sent")
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
            finish(row, MessageStatus.SENT, now)
            row.sent_at = now
        else:
            finish(row, MessageStatus.SKIPPED, now, "already answered")
        return False
    if kind == MessageKind.QUESTIONNAIRE_PROMPT.value and protocol is not None:
        if await visit_questionnaires.prompt_answered(session, participant, dict(payload), now, protocol):
            finish(row, MessageStatus.SKIPPED, now, "already answered for this visit")
            return False
        return True
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
            finish(row, MessageStatus.SKIPPED, now, "already answered")
            return False
        return True
    if kind in _VISIT_KINDS:
        visit = await session.scalar(
            select(ClinicVisit).where(
                ClinicVisit.participant_id == participant.id, ClinicVisit.week == int(payload["week"])
            )
        )
        if visit is not None and visit.status is not VisitStatus.PLANNED:
            finish(row, MessageStatus.CANCELLED, now, "visit recorded")
            return False
        if kind == MessageKind.VISIT_DATE_NOTICE.value and (
            visit is None or visit.agreed_date is None or visit.agreed_date.isoformat() != payload.get("visit_date")
        ):
            finish(row, MessageStatus.CANCELLED, now, "another date was agreed")
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
                coordinator_chats=coordinator_chats,
                details={"week": payload["week"]},
                source=f"scheduled_message:{row.id}",
            )
            finish(row, MessageStatus.SENT, now)
            row.sent_at = now
            return False
        return True
    return True


async def dose_log(session: AsyncSession, participant_id: int, reminder_key: str) -> DoseLog | None:
    """The dose-log row a dose reminder opened, if it was sent."""
    found: DoseLog | None = await session.scalar(
        select(DoseLog).where(DoseLog.participant_id == participant_id, DoseLog.reminder_key == reminder_key)
    )
    return found


async def after_send(
    session: AsyncSession, row: ScheduledMessage, participant: Participant, now: datetime, protocol: Protocol
) -> None:
    """A dose reminder that went out opens its dose-log row and plans its one follow-up."""
    if row.kind != MessageKind.DOSE_REMINDER.value:
        return
    payload = row.payload
    hh, mm = (int(x) for x in str(payload.get("local_time", "09:00")).split(":"))
    existing = await dose_log(session, participant.id, row.key)
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
    followup = make_dose_followup(planned_from_row(row), now, protocol)
    if followup is not None:
        taken = await session.scalar(
            select(ScheduledMessage.id).where(
                ScheduledMessage.participant_id == participant.id, ScheduledMessage.key == followup.key
            )
        )
        if taken is None:
            session.add(store.new_row(participant.id, followup, now))


async def mark_unreachable(
    session: AsyncSession, participant: Participant, now: datetime, coordinator_chats: Sequence[int]
) -> None:
    """The participant blocked the bot: flag them and tell the coordinators once per episode."""
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
        coordinator_chats=coordinator_chats,
        source=f"participant:{participant.study_id}",
    )


async def mark_reachable(session: AsyncSession, participant_id: int) -> None:
    """A message got through: the participant is reachable again."""
    reach = await session.get(ParticipantReach, participant_id)
    if reach is not None and reach.unreachable_since is not None:
        reach.unreachable_since = None
        reach.notified_at = None
        reach.last_error = None
