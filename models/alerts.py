"""Alerts to coordinators, and their delivery to each chat, as rows: a restart
loses none and sends none twice, and a failed send is retried until it succeeds."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, string_enum


class AlertLevel(enum.StrEnum):
    """How fast a coordinator must look (same words as domain.triage.Level)."""

    URGENT = "urgent"  # at once, with escalation
    SAME_DAY = "same_day"  # at once in clinic hours, else at their next start; escalated at their end
    INFO = "info"  # for the record and the coordinators' chat (e.g. a participant's /stop)


class DeliveryStatus(enum.StrEnum):
    """Where one alert message to one chat stands (the outbox's life of a row, as
    MessageStatus: due, claimed by one sender until its lease ends, sent or dead)."""

    PENDING = "pending"
    SENDING = "sending"  # claimed (``claim_token``) until ``claimed_until``
    SENT = "sent"
    DEAD = "dead"  # refused by Telegram for good (a 400): never retried, the admins told at once


class Alert(Base):
    """Something a coordinator must see: what was reported, why it matters, for
    which study id (never a name or phone number)."""

    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_open", "acknowledged_at", "level"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    participant_id: Mapped[int | None] = mapped_column(ForeignKey("participants.id"), index=True)
    kind: Mapped[str] = mapped_column(String(40))  # red_flag | serious_ae | mtx_double_dose | visit_missed | …
    level: Mapped[AlertLevel] = mapped_column(string_enum(AlertLevel, "alert_level"))
    summary: Mapped[str] = mapped_column(Text)  # what was reported, in English, for the coordinator
    reasons: Mapped[list[Any]] = mapped_column(default=list)  # why it is urgent, in English
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)  # flags, criteria, grade, source answers
    source: Mapped[str | None] = mapped_column(String(64))  # e.g. questionnaire_session:12, dose_log:7
    aware_at: Mapped[datetime]  # time of awareness (starts the SAE clock)
    deadline_at: Mapped[datetime | None]  # aware_at + 24 h for serious events
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))
    ack_note: Mapped[str | None] = mapped_column(Text)
    escalated_at: Mapped[datetime | None]
    escalate_at: Mapped[datetime | None]  # same-day: the end of the clinic hours it was delivered in
    digest_sent_at: Mapped[datetime | None]


class AlertDelivery(Base):
    """One alert (or its escalation, or a file of its report) to one chat: a row of the
    outbox (scheduler.outbox.ALERTS) the sender claims, retried with back-off until
    Telegram accepts it."""

    __tablename__ = "alert_deliveries"
    __table_args__ = (
        UniqueConstraint("alert_id", "chat_id", "purpose", name="uq_alert_deliveries_alert_chat_purpose"),
        Index("ix_alert_deliveries_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"))
    chat_id: Mapped[int] = mapped_column(BigInteger)
    purpose: Mapped[str] = mapped_column(String(16))  # alert | escalation
    status: Mapped[DeliveryStatus] = mapped_column(string_enum(DeliveryStatus, "delivery_status"))
    message_id: Mapped[int | None] = mapped_column(BigInteger)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime]
    last_error: Mapped[str | None] = mapped_column(String(200))
    claim_token: Mapped[str | None] = mapped_column(String(32))
    claimed_until: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
