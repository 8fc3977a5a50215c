"""A participant's own state as the study team and the participant change it: the dose
reminder time (/settime), a pause (/pause, and its end by date or /resume) and /stop.

Each one validates first (a DomainError changes nothing), then changes the row, audits
the change and re-plans, all in the caller's transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time

from sqlalchemy.ext.asyncio import AsyncSession

from domain import audit
from domain.alerts import raise_alert
from domain.enrollment import participant_snapshot
from domain.errors import DomainError
from domain.parsing import ParseError, parse_date, parse_study_id
from domain.participants import by_study_id
from models import AlertLevel, Participant, ParticipantStatus
from scheduler import store
from scheduler.calendar import local_date
from scheduler.protocol import Protocol

PARTICIPANT_STOP = "participant_stop"


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
    if request.until is not None and request.until <= local_date(now, protocol.tz):
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
