"""A reminder's clinical side: is a due row still wanted at send time, and what
follows a send (a dose reminder opens its dose-log row and plans its follow-up, an
unanswered dose is closed as "no answer", a visit window that closed unrecorded
raises the missed-visit alert, a blocked chat flags the participant unreachable).

The bot renders and sends; the outbox (scheduler.outbox) claims and records."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from domain import audit, visit_questionnaires
from domain.alerts import raise_alert
from domain.doses import planned_from_row
from domain.errors import DomainError
from domain.participant_state import resume
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
from models.db import SessionFactory, insert_new
from scheduler import store
from scheduler.calendar import local_date
from scheduler.outbox import finish
from scheduler.planner import MessageKind, make_dose_followup
from scheduler.protocol import Protocol

RECENTLY_ANSWERED = timedelta(days=3)  # a questionnaire completed this recently is not invited again

_DOSE_KEYED = frozenset(
    {MessageKind.DOSE_FOLLOWUP.value, MessageKind.DOSE_REMIND_LATER.value, MessageKind.DOSE_NO_ANSWER_CLOSE.value}
)
_INVITATIONS = frozenset({MessageKind.CHECKIN_PROMPT.value, MessageKind.QUESTIONNAIRE_PROMPT.value})
_VISITS = frozenset(
    {MessageKind.VISIT_REMINDER.value, MessageKind.VISIT_WINDOW_CHECK.value, MessageKind.VISIT_DATE_NOTICE.value}
)


@dataclass
class Facts:
    """What the re-check of a batch of rows needs, read with a few set-based queries
    (``load_facts``) instead of one query per row: the dose-log rows and reminder rows
    the dose follow-ups refer to, the visits the visit rows are about, and the
    invitations recently answered."""

    dose_logs: dict[tuple[int, str], DoseLog] = field(default_factory=dict)
    reminder_ids: dict[tuple[int, str], int] = field(default_factory=dict)
    visits: dict[tuple[int, int], ClinicVisit] = field(default_factory=dict)
    recently_answered: set[tuple[int, str]] = field(default_factory=set)
    unreachable: set[int] = field(default_factory=set)  # participants flagged unreachable


async def load_facts(session: AsyncSession, rows: Sequence[ScheduledMessage], now: datetime) -> Facts:
    """The facts for ``rows``: at most five statements whatever their number (a batch
    of dose reminders needs one: who is flagged unreachable)."""
    facts = Facts()
    if rows:
        facts.unreachable = set(
            await session.scalars(
                select(ParticipantReach.participant_id).where(
                    ParticipantReach.participant_id.in_({r.participant_id for r in rows}),
                    ParticipantReach.unreachable_since.is_not(None),
                )
            )
        )
    dosed = [r for r in rows if r.kind in _DOSE_KEYED]
    if dosed:
        pids = {r.participant_id for r in dosed}
        keys = {str(r.payload.get("reminder_key")) for r in dosed}
        for log_row in await session.scalars(
            select(DoseLog).where(DoseLog.participant_id.in_(pids), DoseLog.reminder_key.in_(keys))
        ):
            facts.dose_logs[(log_row.participant_id, log_row.reminder_key)] = log_row
        for pid, key, row_id in await session.execute(
            select(ScheduledMessage.participant_id, ScheduledMessage.key, ScheduledMessage.id).where(
                ScheduledMessage.participant_id.in_(pids), ScheduledMessage.key.in_(keys)
            )
        ):
            facts.reminder_ids[(pid, key)] = row_id
    visited = [r for r in rows if r.kind in _VISITS]
    if visited:
        weeks = {int(r.payload["week"]) for r in visited}
        for visit in await session.scalars(
            select(ClinicVisit).where(
                ClinicVisit.participant_id.in_({r.participant_id for r in visited}), ClinicVisit.week.in_(weeks)
            )
        ):
            facts.visits[(visit.participant_id, visit.week)] = visit
    invited = [r for r in rows if r.kind in _INVITATIONS]
    if invited:
        found = await session.execute(
            select(QuestionnaireSession.participant_id, QuestionnaireSession.instrument_id)
            .where(
                QuestionnaireSession.participant_id.in_({r.participant_id for r in invited}),
                QuestionnaireSession.instrument_id.in_({str(r.payload.get("instrument", "")) for r in invited}),
                QuestionnaireSession.completed_at >= now - RECENTLY_ANSWERED,
            )
            .distinct()
        )
        facts.recently_answered = {(pid, instrument) for pid, instrument in found}
    return facts


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
    facts: Facts,
    protocol: Protocol,
) -> bool:
    """Kind-specific re-check; carries out the rows that send nothing. False when the row
    was finished here (cancelled, skipped or done). ``facts``: what ``load_facts`` read
    for the row's batch; a visit questionnaire is not invited again for a visit (a diary:
    a day) that has its response."""
    kind = row.kind
    payload = row.payload
    if kind in (MessageKind.DOSE_FOLLOWUP.value, MessageKind.DOSE_REMIND_LATER.value):
        log_row = facts.dose_logs.get((participant.id, str(payload.get("reminder_key"))))
        if log_row is None or log_row.answer in (DoseAnswer.TAKEN, DoseAnswer.SKIPPED, DoseAnswer.NO_ANSWER):
            finish(row, MessageStatus.CANCELLED, now, "dose answered")
            return False
        return True
    if kind == MessageKind.DOSE_NO_ANSWER_CLOSE.value:
        log_row = facts.dose_logs.get((participant.id, str(payload.get("reminder_key"))))
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
    if kind == MessageKind.QUESTIONNAIRE_PROMPT.value:
        if await visit_questionnaires.prompt_answered(session, participant, dict(payload), now, protocol):
            finish(row, MessageStatus.SKIPPED, now, "already answered for this visit")
            return False
        return True
    if kind in (MessageKind.CHECKIN_PROMPT.value, MessageKind.QUESTIONNAIRE_PROMPT.value):
        # Already answered (e.g. with /checkin) shortly before: no invitation needed.
        if (participant.id, str(payload.get("instrument", ""))) in facts.recently_answered:
            finish(row, MessageStatus.SKIPPED, now, "already answered")
            return False
        return True
    if kind in _VISITS:
        visit = facts.visits.get((participant.id, int(payload["week"])))
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


async def after_sends(
    session: AsyncSession,
    rows: Iterable[ScheduledMessage],
    now: datetime,
    protocol: Protocol,
    flagged: set[int] | None = None,
) -> None:
    """What follows the sends of a batch, in at most three statements whatever its size:
    each dose reminder opens its dose-log row and plans its one follow-up (``INSERT …
    ON CONFLICT DO NOTHING``: a row already there, from a send repeated after a crash,
    stays), and every participant reached is reachable again (``clear_unreachable``;
    ``flagged``: only these can be flagged, so the others need no statement)."""
    logs: list[dict[str, object]] = []
    followups: list[dict[str, object]] = []
    reached: set[int] = set()
    for row in rows:
        reached.add(row.participant_id)
        if row.kind != MessageKind.DOSE_REMINDER.value:
            continue
        payload = row.payload
        hh, mm = (int(x) for x in str(payload.get("local_time", "09:00")).split(":"))
        logs.append(
            {
                "participant_id": row.participant_id,
                "reminder_key": row.key,
                "regimen": str(payload.get("regimen", "")),
                "drug": str(payload.get("drug", ""))[:64],
                "dose_date": date.fromisoformat(str(payload["date"])),
                "planned_time": time(hh, mm),
                "reminded_at": now,
                "later_count": 0,
            }
        )
        followup = make_dose_followup(planned_from_row(row), now, protocol)
        if followup is not None:
            followups.append(_as_values(store.new_row(row.participant_id, followup, now)))
    await insert_new(session, DoseLog, logs, ("participant_id", "reminder_key"))
    await insert_new(session, ScheduledMessage, followups, ("participant_id", "key"))
    await clear_unreachable(session, reached if flagged is None else reached & flagged)


def _as_values(row: ScheduledMessage) -> dict[str, object]:
    """An ORM row not yet added, as the column values of a Core INSERT."""
    return {c.key: getattr(row, c.key) for c in ScheduledMessage.__table__.columns if c.key != "id"}


async def clear_unreachable(session: AsyncSession, participant_ids: set[int]) -> None:
    """Messages got through: these participants are reachable again (one statement)."""
    if participant_ids:
        await session.execute(
            update(ParticipantReach)
            .where(
                ParticipantReach.participant_id.in_(participant_ids), ParticipantReach.unreachable_since.is_not(None)
            )
            .values(unreachable_since=None, notified_at=None, last_error=None)
            .execution_options(synchronize_session=False)
        )


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
