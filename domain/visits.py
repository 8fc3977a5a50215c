"""Clinic visits as the study team records them (/visit … done|missed), the date agreed
with the participant (/visit … on DATE, a deviation when outside the window, and the
participant's notice), and the participant's answer to a visit reminder ("I will come" /
"I need another date").

Each one validates first (a DomainError changes nothing), then changes the rows, audits
the change and re-plans, all in the caller's transaction."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.digits import to_ascii_digits
from domain import audit
from domain.alerts import raise_alert
from domain.errors import DomainError
from domain.parsing import ParseError, parse_date, parse_study_id
from domain.participants import by_study_id
from models import AlertLevel, ClinicVisit, MessageStatus, Participant, ParticipantStatus, ScheduledMessage, VisitStatus
from scheduler import store
from scheduler.calendar import local_date
from scheduler.planner import MessageKind, PlannedMessage
from scheduler.protocol import Protocol


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
    today = local_date(now, protocol.tz)
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
    told = store.is_messaged(participant, local_date(now, protocol.tz))
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
    if request.on < local_date(now, protocol.tz):
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
