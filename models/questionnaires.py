"""Questionnaires as rows: a session per questionnaire taken (its engine state
in JSON, so any bot process continues it after a restart), one row per stored
answer, and the adverse events that /report produces."""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, true
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, JSONType, string_enum


class QuestionnaireStatus(enum.StrEnum):
    """Where one questionnaire session stands."""

    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    CANCELLED = "cancelled"  # /cancel: answers kept, never counted as complete
    SUSPENDED = "suspended"  # put aside by /report; resumed when the report ends
    EXPIRED = "expired"  # left unfinished past its end (week over, report idle): answers kept, findings final


class QuestionnaireSession(Base):
    """One participant taking one instrument version, from start to completion
    (or cancellation). `state` is `domain.questionnaires.State.to_dict()`."""

    __tablename__ = "questionnaire_sessions"
    __table_args__ = (
        Index("ix_questionnaire_sessions_participant_status", "participant_id", "status"),
        Index("ix_questionnaire_sessions_visit", "participant_id", "instrument_id", "visit_week"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"))
    instrument_id: Mapped[str] = mapped_column(String(64))
    instrument_version: Mapped[str] = mapped_column(String(16))
    status: Mapped[QuestionnaireStatus] = mapped_column(string_enum(QuestionnaireStatus, "questionnaire_status"))
    origin: Mapped[str] = mapped_column(String(16))  # command | prompt | report
    visit_week: Mapped[int | None]  # the visit a visit-week questionnaire belongs to (fixed at its start)
    state: Mapped[dict[str, Any]]
    current_message_id: Mapped[int | None] = mapped_column(BigInteger)  # the question on screen
    started_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    completed_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]  # closed as expired by the tick from then on (None: never)
    closed_at: Mapped[datetime | None]  # completed, cancelled or expired (late safety corrections count from it)
    scores: Mapped[dict[str, Any] | None]
    triage: Mapped[dict[str, Any] | None]  # latest triage result (final at completion) and advice given


class QuestionnaireAnswer(Base):
    """One answer as given (a changed answer is a new row): item, value, when,
    and the instrument version it answered."""

    __tablename__ = "questionnaire_answers"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("questionnaire_sessions.id"), index=True)
    item_id: Mapped[str] = mapped_column(String(64))
    value: Mapped[Any] = mapped_column(JSONType, nullable=True)  # None = skipped
    skipped: Mapped[bool] = mapped_column(default=False)
    answered_at: Mapped[datetime]
    instrument_version: Mapped[str] = mapped_column(String(16))


class AdverseEvent(Base):
    """An adverse event reported with /report, or recorded by the study team
    (`/sae`, `python -m cli sae`: a death, an admission they heard of by
    phone): what, since when, how bad, and each ICH E2A seriousness criterion,
    linked to the alert it raised. A report left unfinished with a seriousness
    criterion is still a row (complete False)."""

    __tablename__ = "adverse_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"), index=True)
    session_id: Mapped[int | None] = mapped_column(ForeignKey("questionnaire_sessions.id"), unique=True)
    """The /report it came from (None: recorded by staff)."""
    source: Mapped[str] = mapped_column(String(16), default="participant", server_default="participant")
    """"participant" (/report) or "staff"."""
    recorded_by: Mapped[str | None] = mapped_column(String(64))
    """The staff actor who recorded it (admin:<id>, cli:<user>); None for a participant's report."""
    note: Mapped[str | None] = mapped_column(Text)
    """Staff's free-text note (who told them, what happened)."""
    complete: Mapped[bool] = mapped_column(default=True, server_default=true())  # False: from an unfinished /report
    category: Mapped[str] = mapped_column(String(32))  # the chosen list value (or "other")
    term: Mapped[str] = mapped_column(Text)  # the list label (English) or the participant's words
    onset_date: Mapped[date | None]
    grade: Mapped[int | None]  # provisional, confirmed by the investigator
    serious: Mapped[bool]
    results_in_death: Mapped[bool]
    life_threatening: Mapped[bool]
    hospitalisation: Mapped[bool]
    disability: Mapped[bool]
    congenital_anomaly: Mapped[bool]
    important_medical_event: Mapped[bool]
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id"))
    reported_at: Mapped[datetime]
    outcome: Mapped[str | None] = mapped_column(String(32))
    """CDISC AEOUT-like (domain.adverse_events.OUTCOMES); None: not recorded yet."""
    outcome_at: Mapped[datetime | None]
    """When the study team last set the outcome (who: the audit row)."""
