"""Photos, voice notes and audio files a participant attached to a report, as rows:
the file's bytes live in the database (one backup covers them), each downloaded
once through the Bot API with retries, each forwarded to the coordinator chats
as a reply to the report's alert (alert_deliveries rows, purpose "media-<id>")."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, LargeBinary, String
from sqlalchemy.orm import Mapped, deferred, mapped_column

from models.base import Base, string_enum


class MediaStatus(enum.StrEnum):
    """Where one file stands."""

    HELD = "held"  # sent outside a report: waits for "Report a problem with this photo" (never downloaded)
    PENDING = "pending"  # attached to a report; its download is due (retried with back-off)
    STORED = "stored"  # downloaded, hashed, kept (and queued for the coordinators)
    DUPLICATE = "duplicate"  # the same bytes (SHA-256) are already stored with this report: not kept twice
    DEAD = "dead"  # the Bot API refused the download for good (a 400): never retried, the admins told


class ReportMedia(Base):
    """One file a participant sent with a report: who, when, what (kind, MIME type,
    size, SHA-256) and, once downloaded, its content."""

    __tablename__ = "report_media"
    __table_args__ = (
        Index("ix_report_media_due", "status", "next_attempt_at"),
        Index("ix_report_media_session", "session_id", "sha256"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"), index=True)
    session_id: Mapped[int | None] = mapped_column(ForeignKey("questionnaire_sessions.id"))  # the report
    kind: Mapped[str] = mapped_column(String(16))  # photo | voice | audio | document
    file_id: Mapped[str] = mapped_column(String(255))  # the Bot API's id, for getFile and for forwarding
    file_unique_id: Mapped[str] = mapped_column(String(64))
    media_group_id: Mapped[str | None] = mapped_column(String(64))  # an album's photos share it
    mime_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int | None] = mapped_column(BigInteger)  # bytes: as announced, then as downloaded
    sha256: Mapped[str | None] = mapped_column(String(64))
    content: Mapped[bytes | None] = deferred(mapped_column(LargeBinary))
    status: Mapped[MediaStatus] = mapped_column(string_enum(MediaStatus, "media_status"))
    received_by: Mapped[str] = mapped_column(String(64))  # participant:<study id>
    received_at: Mapped[datetime]
    stored_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime]
    last_error: Mapped[str | None] = mapped_column(String(200))
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id"))  # the alert it was forwarded under
