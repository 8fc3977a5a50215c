"""Reports the bot sends the study team on a calendar (the Sunday overview), one row per
report and period: the row is the claim, so two bot processes send it once."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base


class TeamReport(Base):
    """One scheduled report for one period (e.g. the overview of Sunday 2026-11-01):
    claimed by one process for a short lease, marked sent once every chat has it."""

    __tablename__ = "team_reports"
    __table_args__ = (UniqueConstraint("kind", "period", name="uq_team_reports_kind_period"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))  # overview
    period: Mapped[str] = mapped_column(String(32))  # the local date it is for, ISO
    claimed_until: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(default=0)
    sent_at: Mapped[datetime | None]
    chats_sent: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(String(200))
