"""Reminder operations shared by Telegram and the shell: reminder time, pause, resume,
/stop, visits recorded, dose and visit answers, and the /status summary.

Each one validates first (a DomainError changes nothing), then changes the rows, audits
the change and re-plans, all in the caller's transaction."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.digits import to_ascii_digits
from domain import audit
from domain.alerts import raise_alert
from domain.enrollment import participant_snapshot
from domain.errors import DomainError
from domain.parsing import ParseError, parse_date, parse_study_id
from domain.participants import by_study_id
from domain.triage import double_dose
from models import (
    Alert,
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
from scheduler import store
from scheduler.calendar import local_date
from scheduler.planner import MessageKind, PlannedMessage, make_remind_later
from scheduler.protocol import DoubleDoseCheck, Protocol

PARTICIPANT_STOP = "participant_stop"
ADHERENCE_DAYS = 28


def _today(now: datetime, protocol: Protocol) -> date:
    return local_date(now, protocol.tz)


def _changed(
    session: AsyncSession,
    participant: Participant,
    *,
    actor: str,
    action: str,
    now: datetime,
    before: dict[str, object],
) -> None:
    participant.updated_at = now
    audit.record(
        session,
        at=now,
        actor=actor,
        action=action,
        participant_id=participant.id,
        before=before,
        after=participant_snapshot(participant),
    )


async def set_reminder_time(
    session: AsyncSession, participant: Participant, at: time, *, now: datetime, protocol: Protocol
) -> None:
    """/settime: the participant's own dose reminder time (honoured even in quiet hours)."""
    if participant.status == ParticipantStatus.WITHDRAWN:
        raise DomainError(f"{participant.study_id} has withdrawn")
    before = participant_snapshot(participant)
    participant.reminder_time = at
    _changed(
        session,
        participant,
        actor=audit.participant_actor(participant.study_id),
        action="participant.set_reminder_time",
        now=now,
        before=before,
    )
    await store.replan(session, participant, now, protocol)


@dataclass(frozen=True)
class PauseRequest:
    """A validated `/pause STUDY_ID [UNTIL_DATE] [REASON…]`."""

    study_id: str
    until: date | None
    reason: str | None


def parse_pause_args(args: list[str]) -> PauseRequest:
    """`STUDY_ID [UNTIL_DATE] [REASON…]`: the second word is a date when it reads as one."""
    if not args:
        raise ParseError("usage: /pause STUDY_ID [UNTIL_DATE] [REASON…], e.g. /pause BSM-001 2026-12-01 travelling")
    study_id = parse_study_id(args[0])
    rest = list(args[1:])
    until = None
    if rest:
        try:
            until = parse_date(rest[0])
            rest = rest[1:]
        except ParseError:
            until = None
    return PauseRequest(study_id, until, " ".join(rest)[:200] or None)


async def pause(
    session: AsyncSession, request: PauseRequest, *, actor: str, now: datetime, protocol: Protocol
) -> Participant:
    """/pause: no routine messages until `until` (they resume by themselves that day) or /resume."""
    participant = await by_study_id(session, request.study_id, for_update=True)
    if participant.status in (ParticipantStatus.WITHDRAWN, ParticipantStatus.INVITED):
        raise DomainError(f"{participant.study_id} is {participant.status.value}; only a linked participant is paused")
    if request.until is not None and request.until <= _today(now, protocol):
        raise DomainError(f"the pause must end after today (got {request.until.isoformat()})")
    before = participant_snapshot(participant)
    participant.status = ParticipantStatus.PAUSED
    participant.paused_until = request.until
    participant.pause_reason = request.reason
    _changed(session, participant, actor=actor, action="participant.pause", now=now, before=before)
    await store.replan(session, participant, now, protocol)
    return participant


async def resume(
    session: AsyncSession,
    study_id: str,
    *,
    actor: str,
    now: datetime,
    protocol: Protocol,
    action: str = "participant.resume",
) -> Participant:
    """/resume (or a pause whose end date has come): routine messages again, from now on."""
    participant = await by_study_id(session, study_id, for_update=True)
    if participant.status != ParticipantStatus.PAUSED:
        raise DomainError(f"{study_id} is not paused (status {participant.status.value})")
    before = participant_snapshot(participant)
    participant.status = ParticipantStatus.ACTIVE
    participant.paused_until = None
    participant.pause_reason = None
    _changed(session, participant, actor=actor, action=action, now=now, before=before)
    await store.replan(session, participant, now, protocol)
    return participant


async def stop_by_participant(
    session: AsyncSession,
    participant: Participant,
    *,
    now: datetime,
    protocol: Protocol,
    coordinator_chats: list[int],
) -> bool:
    """/stop confirmed: pause everything (reason participant_stop) and tell the coordinators.
    Returns False when it was already stopped (nothing changed)."""
    if participant.status == ParticipantStatus.PAUSED and participant.pause_reason == PARTICIPANT_STOP:
        return False
    if participant.status not in (ParticipantStatus.ACTIVE, ParticipantStatus.PAUSED):
        return False
    before = participant_snapshot(participant)
    participant.status = ParticipantStatus.PAUSED
    participant.paused_until = None
    participant.pause_reason = PARTICIPANT_STOP
    _changed(
        session,
        participant,
        actor=audit.participant_actor(participant.study_id),
        action="participant.stop",
        now=now,
        before=before,
    )
    await store.replan(session, participant, now, protocol)
    await raise_alert(
        session,
        participant=participant,
        kind="participant_stop",
        level=AlertLevel.INFO,
        summary=f"{participant.study_id} asked for no more messages (/stop); all reminders are paused.",
        reasons=["The participant confirmed /stop. Contact them; /resume restarts the reminders."],
        now=now,
        coordinator_chats=coordinator_chats,
        source=f"participant:{participant.study_id}",
    )
    return True


# --------------------------------------------------------------------------- visits


@dataclass(frozen=True)
class VisitRequest:
    """A validated `/visit STUDY_ID WEEK done|missed [DATE]`."""

    study_id: str
    week: int
    outcome: VisitStatus
    on: date | None


VISIT_USAGE = (
    "usage: /visit STUDY_ID WEEK done|missed [DATE] or /visit STUDY_ID WEEK on DATE, "
    "e.g. /visit BSM-001 4 done 2026-11-22, /visit BSM-001 4 on 2026-11-24"
)


def _parse_week(text: str, usage: str) -> int:
    try:
        return int(to_ascii_digits(text).strip().lower().removeprefix("week").removeprefix("w"))
    except ValueError:
        raise ParseError(f"'{text[:10]}' is not a visit week; {usage}") from None


def parse_visit_args(args: list[str]) -> VisitRequest:
    """`STUDY_ID WEEK done|missed [DATE]` (the date only with done; default today)."""
    usage = VISIT_USAGE
    if len(args) < 3 or len(args) > 4:
        raise ParseError(usage)
    study_id = parse_study_id(args[0])
    week = _parse_week(args[1], usage)
    outcome_text = args[2].strip().lower()
    if outcome_text not in ("done", "missed"):
        raise ParseError(f"say done or missed, not '{outcome_text[:10]}'; {usage}")
    outcome = VisitStatus(outcome_text)
    on = parse_date(args[3]) if len(args) == 4 else None
    if on is not None and outcome is VisitStatus.MISSED:
        raise ParseError("a date goes with done only")
    return VisitRequest(study_id, week, outcome, on)


async def record_visit(
    session: AsyncSession, request: VisitRequest, *, actor: str, now: datetime, protocol: Protocol
) -> ClinicVisit:
    """/visit: record a clinic visit as done (on a date) or missed; its reminders and
    window check stop."""
    participant = await by_study_id(session, request.study_id, for_update=True)
    if participant.status == ParticipantStatus.INVITED:
        raise DomainError(f"{participant.study_id} has not linked a chat yet")
    weeks = [v.week for v in protocol.visits]
    if request.week not in weeks:
        raise DomainError(f"the protocol has no visit at week {request.week} (visits: {', '.join(map(str, weeks))})")
    today = _today(now, protocol)
    if request.on is not None and request.on > today:
        raise DomainError(f"the visit date {request.on.isoformat()} is in the future")
    visits = await store.ensure_visits(session, participant, protocol)
    visit = next(v for v in visits if v.week == request.week)
    before = {"status": visit.status.value, "attended_on": visit.attended_on.isoformat() if visit.attended_on else None}
    visit.status = request.outcome
    visit.attended_on = (request.on or today) if request.outcome is VisitStatus.DONE else None
    visit.recorded_by = actor[:64]
    visit.recorded_at = now
    audit.record(
        session,
        at=now,
        actor=actor,
        action="visit.record",
        participant_id=participant.id,
        before=before,
        after={
            "week": visit.week,
            "status": visit.status.value,
            "attended_on": visit.attended_on.isoformat() if visit.attended_on else None,
        },
    )
    await store.replan(session, participant, now, protocol)
    return visit


@dataclass(frozen=True)
class AgreedDateRequest:
    """A validated `/visit STUDY_ID WEEK on DATE`: the date agreed with the participant."""

    study_id: str
    week: int
    on: date


def is_agreed_date(args: list[str]) -> bool:
    """Whether `/visit` arguments are the `on DATE` form (else done|missed)."""
    return len(args) >= 3 and args[2].strip().lower() == "on"


def parse_agreed_date_args(args: list[str]) -> AgreedDateRequest:
    """`STUDY_ID WEEK on DATE` (DATE as /enroll reads it, Bengali digits too)."""
    if len(args) != 4 or args[2].strip().lower() != "on":
        raise ParseError(VISIT_USAGE)
    return AgreedDateRequest(parse_study_id(args[0]), _parse_week(args[1], VISIT_USAGE), parse_date(args[3]))


@dataclass(frozen=True)
class AgreedDate:
    """What `/visit … on DATE` did: the visit, and whether the date still waits for the
    admin's confirmation (outside the window: nothing changed yet)."""

    study_id: str
    visit: ClinicVisit
    on: date
    needs_confirmation: bool
    told: bool = True  # False while paused: no message goes, the team tells them by phone

    @property
    def outside_window(self) -> bool:
        """The date lies outside the protocol window (a protocol deviation)."""
        return not self.visit.window_start <= self.on <= self.visit.window_end


async def agree_visit_date(
    session: AsyncSession,
    request: AgreedDateRequest,
    *,
    actor: str,
    now: datetime,
    protocol: Protocol,
    deviation_confirmed: bool = False,
) -> AgreedDate:
    """/visit STUDY_ID WEEK on DATE: store the agreed date (who, when, audited), re-plan that
    visit's reminders and end-of-window check to it, and queue the participant's notice.
    A date outside the window changes nothing until the admin confirms it; confirmed, it is
    recorded as a protocol deviation."""
    participant = await by_study_id(session, request.study_id, for_update=True)
    visit = await _movable_visit(session, participant, request, now=now, protocol=protocol)
    result = AgreedDate(participant.study_id, visit, request.on, needs_confirmation=False)
    if result.outside_window and not deviation_confirmed:
        return AgreedDate(participant.study_id, visit, request.on, needs_confirmation=True)
    before = {
        "agreed_date": visit.agreed_date.isoformat() if visit.agreed_date else None,
        "deviation": visit.deviation,
    }
    visit.agreed_date = request.on
    visit.agreed_by = actor[:64]
    visit.agreed_at = now
    visit.deviation = result.outside_window
    facts = _visit_facts(visit)
    pid = participant.id
    action = "visit.agree_date"
    audit.record(session, at=now, actor=actor, action=action, participant_id=pid, before=before, after=facts)
    if visit.deviation:
        audit.record(session, at=now, actor=actor, action="visit.deviation", participant_id=pid, after=facts)
    await store.replan(session, participant, now, protocol)
    await _queue_date_notice(session, participant, visit, now=now, protocol=protocol)
    told = store.is_messaged(participant, _today(now, protocol))
    return AgreedDate(participant.study_id, visit, request.on, needs_confirmation=False, told=told)


async def _movable_visit(
    session: AsyncSession, participant: Participant, request: AgreedDateRequest, *, now: datetime, protocol: Protocol
) -> ClinicVisit:
    """The visit a date can be agreed for, or a DomainError saying why not."""
    if participant.status in (ParticipantStatus.INVITED, ParticipantStatus.WITHDRAWN):
        raise DomainError(f"{participant.study_id} is {participant.status.value}; only a linked participant is told")
    weeks = [v.week for v in protocol.visits if v.week > 0]
    if request.week not in weeks:
        listed = ", ".join(map(str, weeks))
        raise DomainError(f"the protocol has no visit at week {request.week} to move (visits: {listed})")
    if request.on < _today(now, protocol):
        raise DomainError(f"{request.on.isoformat()} is in the past; agree a date from today on")
    visits = await store.ensure_visits(session, participant, protocol)
    visit = next(v for v in visits if v.week == request.week)
    if visit.status is not VisitStatus.PLANNED:
        on = f" on {visit.attended_on.isoformat()}" if visit.attended_on else ""
        raise DomainError(f"the week {visit.week} visit is already recorded as {visit.status.value}{on}; nothing moved")
    if visit.agreed_date == request.on:
        raise DomainError(f"{request.on.isoformat()} is already the agreed date of the week {visit.week} visit")
    return visit


def _visit_facts(visit: ClinicVisit) -> dict[str, object]:
    return {
        "week": visit.week,
        "agreed_date": visit.agreed_date.isoformat() if visit.agreed_date else None,
        "target_date": visit.target_date.isoformat(),
        "window_start": visit.window_start.isoformat(),
        "window_end": visit.window_end.isoformat(),
        "deviation": visit.deviation,
    }


async def _queue_date_notice(
    session: AsyncSession, participant: Participant, visit: ClinicVisit, *, now: datetime, protocol: Protocol
) -> None:
    """The participant's "your visit is now on …" message, sent by the dispatcher (retried
    like any reminder; waits for quiet hours). An earlier notice of the same visit not yet
    sent is cancelled: only the latest date is told."""
    assert visit.agreed_date is not None
    for row in await session.scalars(
        select(ScheduledMessage).where(
            ScheduledMessage.participant_id == participant.id,
            ScheduledMessage.kind == MessageKind.VISIT_DATE_NOTICE.value,
            ScheduledMessage.status == MessageStatus.PLANNED,
            ScheduledMessage.key.startswith(f"visit:{visit.week}:agreed:", autoescape=True),
        )
    ):
        store.cancel(row, now, "a later date was agreed")
    message = PlannedMessage(
        f"visit:{visit.week}:agreed:{visit.agreed_date.isoformat()}",
        MessageKind.VISIT_DATE_NOTICE,
        now,
        protocol.day_clock.midnight(visit.agreed_date + timedelta(days=1)),
        True,
        {
            "week": visit.week,
            "visit_date": visit.agreed_date.isoformat(),
            "target_date": visit.target_date.isoformat(),
            "window_start": visit.window_start.isoformat(),
            "window_end": visit.window_end.isoformat(),
        },
    )
    existing = await session.scalar(
        select(ScheduledMessage).where(
            ScheduledMessage.participant_id == participant.id, ScheduledMessage.key == message.key
        )
    )
    if existing is None:
        session.add(store.new_row(participant.id, message, now))
    else:  # the same date agreed again after another one: tell it again
        store.reuse(existing, message, now)


class VisitChoice(enum.StrEnum):
    """The buttons under a visit reminder."""

    COME = "come"
    OTHER_DATE = "other"


async def answer_visit(
    session: AsyncSession,
    participant: Participant,
    week: int,
    choice: VisitChoice,
    *,
    now: datetime,
    protocol: Protocol,
    coordinator_chats: list[int],
) -> ClinicVisit | None:
    """ "I will come" is recorded; "I need another date" also alerts the coordinators
    (INFO: they call the participant to agree a date; nothing is unsafe yet).
    None when the visit does not exist or is already recorded."""
    visits = await store.ensure_visits(session, participant, protocol)
    visit = next((v for v in visits if v.week == week), None)
    if visit is None or visit.status is not VisitStatus.PLANNED:
        return None
    actor = audit.participant_actor(participant.study_id)
    if choice is VisitChoice.COME:
        visit.will_come_at = now
        audit.record(
            session, at=now, actor=actor, action="visit.will_come", participant_id=participant.id, after={"week": week}
        )
        return visit
    first = visit.reschedule_requested_at is None
    visit.reschedule_requested_at = now
    audit.record(
        session,
        at=now,
        actor=actor,
        action="visit.need_other_date",
        participant_id=participant.id,
        after={"week": week},
    )
    if first:
        await raise_alert(
            session,
            participant=participant,
            kind="visit_reschedule",
            level=AlertLevel.INFO,
            summary=(
                f"{participant.study_id} needs another date for the week {week} visit "
                f"(planned {visit.visit_date.isoformat()}, window {visit.window_start.isoformat()} to "
                f"{visit.window_end.isoformat()})."
            ),
            reasons=["The participant pressed 'I need another date'. Please call them to agree a date."],
            now=now,
            coordinator_chats=coordinator_chats,
            source=f"clinic_visit:{visit.id}",
        )
    return visit


# --------------------------------------------------------------------------- doses


class DoseOutcome(enum.StrEnum):
    """How a dose button press ended (the handler picks the reply from it)."""

    TAKEN = "taken"
    SKIPPED = "skipped"
    LATER = "later"
    TOO_LATE_FOR_LATER = "too_late_for_later"
    ALREADY = "already"  # a final answer was already recorded: nothing changed
    CLOSED = "closed"  # recorded as no answer (the next day came)
    UNKNOWN = "unknown"
    DOUBLE_DOSE = "double_dose"  # taken too soon after the last one (the regimen's double_dose_check)


@dataclass(frozen=True)
class DoseResult:
    """The outcome, the dose log row and (for "later") when the reminder comes back."""

    outcome: DoseOutcome
    log: DoseLog | None = None
    later_at: datetime | None = None
    advice: str | None = None  # DOUBLE_DOSE: the triage table's advice the participant gets


def planned_from_row(row: ScheduledMessage) -> PlannedMessage:
    """A stored row back as the planner's value (for make_remind_later / make_dose_followup)."""
    return PlannedMessage(
        row.key, MessageKind(row.kind), row.due_at, row.stale_after, row.respects_quiet_hours, dict(row.payload)
    )


def _double_dose_check(protocol: Protocol, participant: Participant, regimen_id: str) -> DoubleDoseCheck | None:
    """The regimen's double-dose check from the protocol file (None: it has none)."""
    arm = protocol.arms.get(participant.arm)
    regimen = next((r for r in arm.regimens if r.id == regimen_id), None) if arm is not None else None
    return regimen.double_dose_check if regimen is not None else None


async def answer_dose(
    session: AsyncSession,
    participant: Participant,
    reminder_id: int,
    answer: DoseAnswer,
    *,
    now: datetime,
    protocol: Protocol,
    coordinator_chats: list[int],
) -> DoseResult:
    """A Taken / Remind me later / Skipped press on a dose reminder (or its follow-up).
    The first final answer stands; pressing Taken twice records it once."""
    reminder = await session.get(ScheduledMessage, reminder_id)
    if (
        reminder is None
        or reminder.participant_id != participant.id
        or reminder.kind != MessageKind.DOSE_REMINDER.value
    ):
        return DoseResult(DoseOutcome.UNKNOWN)
    log = await session.scalar(
        select(DoseLog)
        .where(DoseLog.participant_id == participant.id, DoseLog.reminder_key == reminder.key)
        .with_for_update()
    )
    if log is None:
        return DoseResult(DoseOutcome.UNKNOWN)
    if log.answer is DoseAnswer.NO_ANSWER:
        return DoseResult(DoseOutcome.CLOSED, log)
    if log.answer in (DoseAnswer.TAKEN, DoseAnswer.SKIPPED):
        return DoseResult(DoseOutcome.ALREADY, log)
    actor = audit.participant_actor(participant.study_id)
    before = {"answer": log.answer.value if log.answer else None}
    if answer is DoseAnswer.LATER:
        later = make_remind_later(planned_from_row(reminder), now, protocol)
        if later is None:
            return DoseResult(DoseOutcome.TOO_LATE_FOR_LATER, log)
        log.answer = DoseAnswer.LATER
        log.answered_at = now
        log.later_count += 1
        existing = await session.scalar(
            select(ScheduledMessage).where(
                ScheduledMessage.participant_id == participant.id, ScheduledMessage.key == later.key
            )
        )
        if existing is None:
            session.add(store.new_row(participant.id, later, now))
        await store.cancel_followups_of_kind(session, participant.id, reminder.key, MessageKind.DOSE_FOLLOWUP, now)
        audit.record(
            session,
            at=now,
            actor=actor,
            action="dose.later",
            participant_id=participant.id,
            before=before,
            after={"reminder_key": reminder.key, "answer": "later", "remind_at": later.due_at.isoformat()},
        )
        return DoseResult(DoseOutcome.LATER, log, later.due_at)
    previous = None
    check = _double_dose_check(protocol, participant, log.regimen)
    if check is not None and answer is DoseAnswer.TAKEN:
        # Lock the participant's dose log: two "Taken" presses at once in two processes
        # must see each other, or neither raises the double-dose alert (PostgreSQL; SQLite
        # has one writer at a time).
        await session.execute(select(Participant.id).where(Participant.id == participant.id).with_for_update())
        previous = await session.scalar(
            select(func.max(DoseLog.answered_at)).where(
                DoseLog.participant_id == participant.id,
                DoseLog.regimen == log.regimen,
                DoseLog.answer == DoseAnswer.TAKEN,
                DoseLog.id != log.id,
            )
        )
    log.answer = answer
    log.answered_at = now
    await store.cancel_followups(session, participant.id, reminder.key, now)
    audit.record(
        session,
        at=now,
        actor=actor,
        action=f"dose.{answer.value}",
        participant_id=participant.id,
        before=before,
        after={"reminder_key": reminder.key, "answer": answer.value, "dose_date": log.dose_date.isoformat()},
    )
    if answer is DoseAnswer.TAKEN and check is not None and double_dose(previous, now, check.within):
        assert previous is not None
        hours = (now - previous).total_seconds() / 3600
        drug = protocol.arm(participant.arm).regimen(log.regimen).drug.en
        await raise_alert(
            session,
            participant=participant,
            kind=check.alert_kind,
            level=AlertLevel.URGENT,
            summary=(
                f"{participant.study_id} confirmed a {drug} dose {hours:.0f} hours after the previous "
                f"confirmed dose (dose of {log.dose_date.isoformat()})."
            ),
            reasons=[check.why],
            now=now,
            coordinator_chats=coordinator_chats,
            details={"previous_taken_at": previous.isoformat(), "this_taken_at": now.isoformat()},
            source=f"dose_log:{log.id}",
        )
        return DoseResult(DoseOutcome.DOUBLE_DOSE, log, advice=check.advice)
    return DoseResult(DoseOutcome.TAKEN if answer is DoseAnswer.TAKEN else DoseOutcome.SKIPPED, log)


# --------------------------------------------------------------------------- /status


@dataclass(frozen=True)
class StatusReport:
    """What /status shows about one participant."""

    participant: Participant
    next_visit: ClinicVisit | None
    doses_due: int
    doses_taken: int
    last_checkin: datetime | None
    open_alerts: int
    unreachable_since: datetime | None

    @property
    def adherence(self) -> float | None:
        """Taken / reminders due over the last 4 weeks, in % (None when none was due)."""
        return None if self.doses_due == 0 else 100.0 * self.doses_taken / self.doses_due


async def adherence_counts(
    session: AsyncSession, participant_id: int, now: datetime, protocol: Protocol
) -> tuple[int, int]:
    """(reminders due, taken) over the last 28 local days including today, from the dose log."""
    today = _today(now, protocol)
    start = today - timedelta(days=ADHERENCE_DAYS - 1)
    rows = (
        await session.execute(
            select(DoseLog.answer, func.count())
            .where(DoseLog.participant_id == participant_id, DoseLog.dose_date >= start, DoseLog.dose_date <= today)
            .group_by(DoseLog.answer)
        )
    ).all()
    due = sum(int(n) for _, n in rows)
    taken = sum(int(n) for answer, n in rows if answer is DoseAnswer.TAKEN)
    return due, taken


async def _last_checkin(session: AsyncSession, participant_id: int, instrument: str) -> datetime | None:
    """When the participant last completed the weekly check-in (issue 3's sessions)."""
    found: datetime | None = await session.scalar(
        select(func.max(QuestionnaireSession.completed_at)).where(
            QuestionnaireSession.participant_id == participant_id,
            QuestionnaireSession.instrument_id == instrument,
        )
    )
    return found


async def status_report(session: AsyncSession, study_id: str, *, now: datetime, protocol: Protocol) -> StatusReport:
    """/status STUDY_ID: arm, status, next visit, adherence, last check-in, open alerts."""
    participant = await by_study_id(session, study_id)
    invited = participant.status == ParticipantStatus.INVITED
    visits = [] if invited else await store.ensure_visits(session, participant, protocol)
    today = _today(now, protocol)
    next_visit = next(
        (v for v in visits if v.status is VisitStatus.PLANNED and v.week > 0 and v.open_until >= today), None
    )
    due, taken = await adherence_counts(session, participant.id, now, protocol)
    last = await _last_checkin(session, participant.id, protocol.checkin.instrument)
    open_alerts = int(
        await session.scalar(
            select(func.count())
            .select_from(Alert)
            .where(Alert.participant_id == participant.id, Alert.acknowledged_at.is_(None))
        )
        or 0
    )
    reach = await session.get(ParticipantReach, participant.id)
    return StatusReport(
        participant,
        next_visit,
        due,
        taken,
        last,
        open_alerts,
        reach.unreachable_since if reach else None,
    )


async def planned_rows(
    session: AsyncSession, participant_id: int, *kinds: MessageKind, limit: int = 5
) -> list[ScheduledMessage]:
    """The next pending rows of some kinds (for /schedule)."""
    return list(
        await session.scalars(
            select(ScheduledMessage)
            .where(
                ScheduledMessage.participant_id == participant_id,
                ScheduledMessage.status == MessageStatus.PLANNED,
                ScheduledMessage.kind.in_([k.value for k in kinds]),
            )
            .order_by(ScheduledMessage.due_at, ScheduledMessage.id)
            .limit(limit)
        )
    )
