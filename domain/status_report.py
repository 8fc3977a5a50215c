"""What the study team and the participant read about one participant's schedule: the
/status report (next visit, adherence over four weeks, last check-in, open alerts,
unreachable since) and the next planned rows (/schedule). Reads only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.participants import by_study_id
from models import (
    Alert,
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
from scheduler.planner import MessageKind
from scheduler.protocol import Protocol

ADHERENCE_DAYS = 28


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
    today = local_date(now, protocol.tz)
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
    today = local_date(now, protocol.tz)
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
