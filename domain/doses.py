"""A participant's answer to a dose reminder (Taken / Remind me later / Skipped), and the
regimen's double-dose check (the protocol's `double_dose_check`) when a dose is confirmed
too soon after the previous one.

The first final answer stands; everything is audited in the caller's transaction."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from domain import audit
from domain.alerts import raise_alert
from domain.triage import double_dose
from models import AlertLevel, DoseAnswer, DoseLog, Participant, ScheduledMessage
from scheduler import store
from scheduler.planner import MessageKind, PlannedMessage, make_remind_later
from scheduler.protocol import DoubleDoseCheck, Protocol


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
