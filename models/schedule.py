"""Reminders as rows: planned messages (the dispatcher's outbox), the dose log, clinic
visits, and whether a participant can still be reached. Rows survive restarts, can be
paused and audited, and several bot processes share them on PostgreSQL."""

from __future__ import annotations

import enum
from datetime import date, datetime, time
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, string_enum


class MessageStatus(enum.StrEnum):
    """Where one planned message stands.

    PLANNED: waiting for its time (or for a retry after a network error). SENDING: claimed
    by one dispatcher (``claim_token``) until ``claimed_until``. SENT: done (for rows that
    send nothing, such as the "no answer" close: carried out). SKIPPED: not sent because it
    was stale, or no longer wanted when its time came. CANCELLED: removed by a re-plan
    (pause, /stop, withdrawal, a visit recorded). FAILED: Telegram refused it for good
    (the participant blocked the bot, the chat is gone).
    """

    PLANNED = "planned"
    SENDING = "sending"
    SENT = "sent"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    FAILED = "failed"


class DoseAnswer(enum.StrEnum):
    """What the participant said to a dose reminder (LATER until a final answer)."""

    TAKEN = "taken"
    SKIPPED = "skipped"
    LATER = "later"
    NO_ANSWER = "no_answer"


class VisitStatus(enum.StrEnum):
    """A clinic visit: still to come, or recorded by the study team."""

    PLANNED = "planned"
    DONE = "done"
    MISSED = "missed"


class ScheduledMessage(Base):
    """One planned message (or bookkeeping step) for one participant, under the planner's
    stable key; the dispatcher claims it when due, re-checks it, sends it and records it."""

    __tablename__ = "scheduled_messages"
    __table_args__ = (
        UniqueConstraint("participant_id", "key", name="uq_scheduled_messages_participant_key"),
        Index("ix_scheduled_messages_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"), index=True)
    key: Mapped[str] = mapped_column(String(96))
    kind: Mapped[str] = mapped_column(String(24))  # scheduler.planner.MessageKind value
    due_at: Mapped[datetime]
    stale_after: Mapped[datetime]
    respects_quiet_hours: Mapped[bool]
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[MessageStatus] = mapped_column(string_enum(MessageStatus, "message_status"))
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime]
    claim_token: Mapped[str | None] = mapped_column(String(32))
    claimed_until: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    telegram_message_id: Mapped[int | None] = mapped_column(BigInteger)
    last_error: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class DoseLog(Base):
    """One dose reminder and what became of it: the adherence record for the trial."""

    __tablename__ = "dose_log"
    __table_args__ = (
        UniqueConstraint("participant_id", "reminder_key", name="uq_dose_log_participant_reminder"),
        Index("ix_dose_log_participant_date", "participant_id", "dose_date"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"))
    reminder_key: Mapped[str] = mapped_column(String(96))
    regimen: Mapped[str] = mapped_column(String(32))
    drug: Mapped[str] = mapped_column(String(64))
    dose_date: Mapped[date]  # planned local date
    planned_time: Mapped[time]  # planned local time
    reminded_at: Mapped[datetime]
    answer: Mapped[DoseAnswer | None] = mapped_column(string_enum(DoseAnswer, "dose_answer"))
    answered_at: Mapped[datetime | None]
    later_count: Mapped[int] = mapped_column(default=0)


class ClinicVisit(Base):
    """A protocol visit for one participant: its date and window, and how it was recorded."""

    __tablename__ = "clinic_visits"
    __table_args__ = (UniqueConstraint("participant_id", "week", name="uq_clinic_visits_participant_week"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"))
    week: Mapped[int]
    target_date: Mapped[date]
    visit_date: Mapped[date]  # moved to a clinic day inside the window
    window_start: Mapped[date]
    window_end: Mapped[date]
    status: Mapped[VisitStatus] = mapped_column(string_enum(VisitStatus, "visit_status"))
    attended_on: Mapped[date | None]
    recorded_by: Mapped[str | None] = mapped_column(String(64))
    recorded_at: Mapped[datetime | None]
    will_come_at: Mapped[datetime | None]  # "I will come" pressed
    reschedule_requested_at: Mapped[datetime | None]  # "I need another date" pressed
    # A date agreed with the participant (/visit STUDY_ID WEEK on DATE): reminders and the
    # end-of-window check follow it; outside the window it is a protocol deviation.
    agreed_date: Mapped[date | None]
    agreed_by: Mapped[str | None] = mapped_column(String(64))
    agreed_at: Mapped[datetime | None]
    deviation: Mapped[bool] = mapped_column(default=False, server_default=false())

    @property
    def due_date(self) -> date:
        """The day the participant is expected: the agreed date, else the planned one."""
        return self.agreed_date or self.visit_date

    @property
    def open_until(self) -> date:
        """The last day the visit can still be done as planned (an agreed date may lie
        after the window)."""
        return max(self.window_end, self.due_date)


class ParticipantReach(Base):
    """Whether Telegram still delivers to a participant. Set when a send is refused
    (blocked the bot); cleared by the next message that gets through. The coordinators
    are told once per episode (``notified_at``)."""

    __tablename__ = "participant_reach"

    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"), primary_key=True)
    unreachable_since: Mapped[datetime | None]
    notified_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(200))
