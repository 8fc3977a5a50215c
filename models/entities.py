"""Tables of the foundation: participants, enrollment codes, chat links,
processed updates and the audit log."""

from __future__ import annotations

import enum
from datetime import date, datetime, time
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, string_enum


class ParticipantStatus(enum.StrEnum):
    """Where a participant stands in the follow-up."""

    INVITED = "invited"  # enrolled by the team, chat not linked yet
    ACTIVE = "active"
    PAUSED = "paused"  # by an admin (/pause) or by the participant (/stop)
    WITHDRAWN = "withdrawn"  # stops everything; data kept


class Language(enum.StrEnum):
    """Languages the bot speaks with participants."""

    BN = "bn"
    EN = "en"


class Participant(Base):
    """A trial participant, known to the bot by study id only (no name, no phone)."""

    __tablename__ = "participants"
    # The dispatcher looks for ended pauses every beat: without this, a whole-table read.
    __table_args__ = (Index("ix_participants_status_paused_until", "status", "paused_until"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[str] = mapped_column(String(32), unique=True)
    arm: Mapped[str] = mapped_column(String(1))
    baseline_date: Mapped[date]
    language: Mapped[Language] = mapped_column(string_enum(Language, "language"))
    status: Mapped[ParticipantStatus] = mapped_column(
        string_enum(ParticipantStatus, "participant_status"), default=ParticipantStatus.INVITED
    )
    reminder_time: Mapped[time | None]  # /settime; None = the protocol's default time
    own_weekday: Mapped[int | None]  # 0 = Monday … 6 = Sunday: the day chosen for the `rule: participant` regimen
    follow_weekday: Mapped[int | None]  # the day chosen for the `rule: after` regimen (None: the protocol's rule)
    paused_until: Mapped[date | None]
    pause_reason: Mapped[str | None] = mapped_column(String(200))
    withdrawn_at: Mapped[datetime | None]
    withdrawal_reason: Mapped[str | None] = mapped_column(String(200))
    switches: Mapped[dict[str, Any] | None]  # per-participant protocol switches, e.g. {"raynaud": true}
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    chat: Mapped[ChatLink | None] = relationship(back_populates="participant", lazy="raise")


class EnrollmentCode(Base):
    """A one-time code that links a Telegram chat to a participant. Only its
    SHA-256 is stored: a database dump does not hand out working codes."""

    __tablename__ = "enrollment_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class ChatLink(Base):
    """Which Telegram chat belongs to which participant. Kept apart from the
    participant row so that Telegram ids never travel with trial data."""

    __tablename__ = "chat_links"

    id: Mapped[int] = mapped_column(primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"), unique=True)
    chat_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    user_id: Mapped[int] = mapped_column(BigInteger)
    linked_at: Mapped[datetime]

    participant: Mapped[Participant] = relationship(back_populates="chat", lazy="raise")


class ProcessedUpdate(Base):
    """Telegram update ids already applied, written in the same transaction as
    the update's effects, so a re-delivered update is never applied twice."""

    __tablename__ = "processed_updates"

    update_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    processed_at: Mapped[datetime] = mapped_column(index=True)
    outcome: Mapped[str] = mapped_column(String(16))  # ok | error


class AuditEntry(Base):
    """Append-only record of everything a person (or the bot on their behalf) did:
    who, when, what, and the values before and after."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_participant_at", "participant_id", "at"),
        # An index, not a constraint: SQLite adds it without rebuilding the table
        # (a rebuild would silently drop the append-only triggers).
        Index("uq_audit_log_seq", "seq", unique=True),
        Index("ix_audit_log_unsealed", "row_hash", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(64))  # participant:BSM-001 | admin:123 | cli:user | system | telegram:456
    action: Mapped[str] = mapped_column(String(64), index=True)
    participant_id: Mapped[int | None] = mapped_column(ForeignKey("participants.id"))
    before: Mapped[dict[str, Any] | None]
    after: Mapped[dict[str, Any] | None]
    detail: Mapped[str | None] = mapped_column(Text)
    # Tamper evidence, filled once by the sealer (domain.audit_chain), in commit order.
    seq: Mapped[int | None] = mapped_column(BigInteger)
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    row_hash: Mapped[str | None] = mapped_column(String(64))


class AuditChainHead(Base):
    """The end of the audit hash chain (one row). Locking it serialises sealers,
    on PostgreSQL and SQLite alike."""

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    row_hash: Mapped[str] = mapped_column(String(64))
