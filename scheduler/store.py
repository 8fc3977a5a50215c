"""The planner's output as rows: store a participant's plan and re-plan it by key diff.

Called whenever something the schedule depends on changes: a chat linked (the participant
becomes ACTIVE), ``/settime``, pause, resume, ``/stop``, withdrawal, a visit recorded. It
runs in the caller's transaction, so the rows change exactly when the change that caused
them is committed. Rows already sent, skipped or failed are history and never touched;
nothing recorded is deleted (pending rows are marked cancelled, not removed).
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models import ClinicVisit, MessageStatus, Participant, ScheduledMessage, VisitStatus
from models import ParticipantStatus as RowStatus
from scheduler.calendar import local_date
from scheduler.planner import (
    MessageKind,
    ParticipantStatus,
    PlanInput,
    PlannedMessage,
    RecordedVisit,
    VisitOutcome,
    plan,
    replan_diff,
)
from scheduler.protocol import Protocol

# Rows made while running (never in plan()): kept by a re-plan while the
# participant is still messaged, cancelled with everything else otherwise.
DISPATCHER_KINDS = frozenset(
    {MessageKind.DOSE_FOLLOWUP.value, MessageKind.DOSE_REMIND_LATER.value, MessageKind.VISIT_DATE_NOTICE.value}
)


def is_messaged(participant: Participant, today: date) -> bool:
    """Whether routine messages may go to this participant on local date ``today``:
    ACTIVE, or PAUSED with an end date that has come."""
    if participant.status == RowStatus.ACTIVE:
        return True
    return (
        participant.status == RowStatus.PAUSED
        and participant.paused_until is not None
        and participant.paused_until <= today
    )


def plan_input(participant: Participant, visits: list[ClinicVisit], protocol: Protocol) -> PlanInput:
    """The planner's view of a participant row and its recorded visits. The row's two
    weekday columns go to the regimens the protocol lets the participant place: the one
    taken on their own weekday, and the one they may move off its default day."""
    status = {
        RowStatus.INVITED: ParticipantStatus.INVITED,
        RowStatus.ACTIVE: ParticipantStatus.ACTIVE,
        RowStatus.PAUSED: ParticipantStatus.PAUSED,
        RowStatus.WITHDRAWN: ParticipantStatus.WITHDRAWN,
    }[participant.status]
    weekdays: dict[str, int | str] = {}
    arm = protocol.arms.get(participant.arm)
    for regimen in arm.regimens if arm is not None else ():
        rule = regimen.weekday
        if rule is None or regimen.frequency != "weekly":
            continue
        if rule.rule == "participant":
            own = participant.own_weekday
            weekdays[regimen.id] = own if own is not None else participant.baseline_date.weekday()
        elif rule.rule == "after" and rule.participant_may_choose and participant.follow_weekday is not None:
            weekdays[regimen.id] = participant.follow_weekday
    recorded = {
        v.week: RecordedVisit(VisitOutcome(v.status.value), v.attended_on)
        for v in visits
        if v.status is not VisitStatus.PLANNED
    }
    return PlanInput(
        study_id=participant.study_id,
        arm=participant.arm,
        baseline=participant.baseline_date,
        reminder_time=participant.reminder_time,
        dose_weekdays=weekdays,
        status=status,
        paused_until=participant.paused_until,
        recorded_visits=recorded,
        visit_dates={v.week: v.agreed_date for v in visits if v.agreed_date is not None},
        switches={str(name): bool(on) for name, on in (participant.switches or {}).items()},
    )


async def ensure_visits(session: AsyncSession, participant: Participant, protocol: Protocol) -> list[ClinicVisit]:
    """The participant's visit rows (week order), creating from the protocol any that are missing
    (on first use, or a visit added to the protocol later)."""
    rows = list(
        await session.scalars(
            select(ClinicVisit).where(ClinicVisit.participant_id == participant.id).order_by(ClinicVisit.week)
        )
    )
    have = {v.week for v in rows}
    missing = [v for v in protocol.visits if v.week not in have]
    if not missing:
        return rows
    for visit in missing:
        vd = protocol.schedule_visit(participant.baseline_date, visit.week)
        row = ClinicVisit(
            participant_id=participant.id,
            week=visit.week,
            target_date=vd.target,
            visit_date=vd.date,
            window_start=vd.window_start,
            window_end=vd.window_end,
            status=VisitStatus.PLANNED,
        )
        session.add(row)
        rows.append(row)
    await session.flush()
    return sorted(rows, key=lambda v: v.week)


def _apply(row: ScheduledMessage, message: PlannedMessage, now: datetime) -> None:
    row.kind = message.kind.value
    row.due_at = message.due_at
    row.stale_after = message.stale_after
    row.respects_quiet_hours = message.respects_quiet_hours
    row.payload = dict(message.payload)
    row.next_attempt_at = message.due_at
    row.updated_at = now


def new_row(participant_id: int, message: PlannedMessage, now: datetime) -> ScheduledMessage:
    """A PLANNED row for a planned message (also used for the dispatcher's follow-ups)."""
    row = ScheduledMessage(
        participant_id=participant_id,
        key=message.key,
        status=MessageStatus.PLANNED,
        attempts=0,
        created_at=now,
    )
    _apply(row, message, now)
    return row


async def replan(session: AsyncSession, participant: Participant, now: datetime, protocol: Protocol) -> dict[str, int]:
    """Bring the participant's pending rows in line with a fresh plan; returns counts
    (added, moved, cancelled) for the audit. Idempotent: a second call changes nothing."""
    # One re-plan per participant at a time (two processes must not insert the same key).
    await session.execute(select(Participant.id).where(Participant.id == participant.id).with_for_update())
    visits = await ensure_visits(session, participant, protocol) if participant.status != RowStatus.INVITED else []
    wanted = plan(plan_input(participant, visits, protocol), protocol, now)
    rows = {
        row.key: row
        for row in await session.scalars(
            select(ScheduledMessage).where(ScheduledMessage.participant_id == participant.id).with_for_update()
        )
    }
    pending = {
        key: row.due_at
        for key, row in rows.items()
        if row.status is MessageStatus.PLANNED and row.kind not in DISPATCHER_KINDS
    }
    diff = replan_diff(pending, wanted)
    added = moved = cancelled = 0
    for message in diff.to_add:
        old = rows.get(message.key)
        if old is None:
            session.add(new_row(participant.id, message, now))
            added += 1
        elif old.status is MessageStatus.CANCELLED:  # paused, then resumed: wanted again
            _apply(old, message, now)
            old.status = MessageStatus.PLANNED
            old.last_error = None
            added += 1
        # SENT / SKIPPED / FAILED / SENDING: history or in flight; never planned twice.
    for message in diff.to_move:
        _apply(rows[message.key], message, now)
        moved += 1
    for key in diff.to_cancel:
        _cancel(rows[key], now, "re-planned")
        cancelled += 1
    if not is_messaged(participant, local_date(now, protocol.tz)):
        for row in rows.values():
            if row.status is MessageStatus.PLANNED and row.kind in DISPATCHER_KINDS:
                _cancel(row, now, "participant not messaged")
                cancelled += 1
    await session.flush()
    return {"added": added, "moved": moved, "cancelled": cancelled}


def reuse(row: ScheduledMessage, message: PlannedMessage, now: datetime) -> None:
    """A finished row of the same key planned again (e.g. the same visit date agreed a
    second time): PLANNED again with the new message, history fields cleared."""
    _apply(row, message, now)
    row.status = MessageStatus.PLANNED
    row.attempts = 0
    row.sent_at = None
    row.telegram_message_id = None
    row.last_error = None


def cancel(row: ScheduledMessage, now: datetime, why: str) -> None:
    """Mark one pending row cancelled (kept as history, never deleted)."""
    _cancel(row, now, why)


def _cancel(row: ScheduledMessage, now: datetime, why: str) -> None:
    row.status = MessageStatus.CANCELLED
    row.last_error = why
    row.updated_at = now


async def cancel_followups(session: AsyncSession, participant_id: int, reminder_key: str, now: datetime) -> None:
    """Cancel the pending follow-up and "remind me later" rows of one dose reminder
    (it was answered, or closed as no answer)."""
    for kind in (MessageKind.DOSE_FOLLOWUP, MessageKind.DOSE_REMIND_LATER):
        await cancel_followups_of_kind(session, participant_id, reminder_key, kind, now)


async def cancel_followups_of_kind(
    session: AsyncSession, participant_id: int, reminder_key: str, kind: MessageKind, now: datetime
) -> None:
    """Cancel one kind of pending dispatcher row of a dose reminder (e.g. the 2-hour
    follow-up once the participant asked to be reminded later instead)."""
    rows = await session.scalars(
        select(ScheduledMessage).where(
            ScheduledMessage.participant_id == participant_id,
            ScheduledMessage.status == MessageStatus.PLANNED,
            ScheduledMessage.key.startswith(reminder_key + ":", autoescape=True),
            ScheduledMessage.kind == kind.value,
        )
    )
    for row in rows:
        _cancel(row, now, "dose answered")
