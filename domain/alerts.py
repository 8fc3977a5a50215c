"""Raising an alert: one row for the alert, one delivery row per coordinator
chat, in the caller's transaction, so an alert exists exactly when the answer
that caused it is stored.

Sending is not done here (the domain does not know Telegram): `raise_alert`
marks the session, and after the commit the bot runs the alert sender at once
(within seconds), and the scheduler's heartbeat retries whatever did not go
out. Coordinators see the study id, never a name or phone number."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from domain import audit
from domain.acknowledgement import DIGEST_KIND
from models import Alert, AlertDelivery, AlertLevel, DeliveryStatus, Participant

SAE_REPORTING_WINDOW = timedelta(hours=24)
ALERTS_RAISED = "alerts_raised"  # key in AsyncSession.info: the sender should run after commit


async def raise_alert(
    session: AsyncSession,
    *,
    participant: Participant | None,
    kind: str,
    level: AlertLevel,
    summary: str,
    reasons: Sequence[str],
    now: datetime,
    coordinator_chats: Sequence[int],
    details: dict[str, Any] | None = None,
    source: str | None = None,
    serious: bool = False,
    same_day_window: tuple[datetime, datetime] | None = None,
) -> Alert:
    """Record an alert and queue it for every coordinator chat. A same-day alert
    goes out at `same_day_window`'s start (now, in clinic hours; else their next
    start) and escalates at its end; without a window it waits for the 08:00
    digest. `serious` starts the 24-hour SAE clock."""
    alert = Alert(
        participant_id=participant.id if participant else None,
        kind=kind,
        level=level,
        summary=summary,
        reasons=list(reasons),
        details=details or {},
        source=source,
        aware_at=now,
        deadline_at=now + SAE_REPORTING_WINDOW if serious else None,
    )
    deliver_at: datetime | None = now
    if level is AlertLevel.SAME_DAY:
        deliver_at, alert.escalate_at = same_day_window or (None, None)
    session.add(alert)
    await session.flush()
    if deliver_at is not None:
        for chat_id in coordinator_chats:
            queue_delivery(session, alert, chat_id, "alert", deliver_at)
    audit.record(
        session,
        at=now,
        actor=audit.SYSTEM,
        action=f"alert.raise.{kind}"[:64],
        participant_id=alert.participant_id,
        # The alert row, not its summary: that may quote a participant's own words, and
        # the audit can never be purged.
        after={
            "alert": alert.id,
            "level": level.value,
            "reasons": list(reasons),
            "source": source,
            "deliver_at": deliver_at.isoformat() if deliver_at else None,
        },
    )
    return alert


def queue_delivery(session: AsyncSession, alert: Alert, chat_id: int, purpose: str, now: datetime) -> AlertDelivery:
    """Queue `alert` (flushed, so it has an id) for one chat; the sender picks it up
    after the commit (or at `now`, when that is later). `purpose` is "alert",
    "escalation" or "update-N" (the N-th message about new findings)."""
    delivery = AlertDelivery(
        alert_id=alert.id,
        chat_id=chat_id,
        purpose=purpose,
        status=DeliveryStatus.PENDING,
        attempts=0,
        next_attempt_at=now,
    )
    session.add(delivery)
    session.info[ALERTS_RAISED] = True
    return delivery


@dataclass(frozen=True)
class Refused:
    """A delivery Telegram refused for good, as the admins are told of it."""

    alert_id: int
    kind: str
    study_id: str | None
    chat_id: int
    released: int  # same-day items a refused digest gave back to tomorrow's digest


async def delivery_refused(session: AsyncSession, delivery: AlertDelivery, now: datetime, reason: str) -> Refused:
    """What follows a delivery the outbox dead-lettered (never retried): audited, and a
    refused digest's items are given back to tomorrow's digest (they are not lost: /alerts
    lists them meanwhile)."""
    alert = await session.get(Alert, delivery.alert_id)
    assert alert is not None
    participant = await session.get(Participant, alert.participant_id) if alert.participant_id else None
    released: list[int] = []
    if alert.kind == DIGEST_KIND:
        released = [int(i) for i in alert.details.get("alerts", [])]
        if released:
            await session.execute(update(Alert).where(Alert.id.in_(released)).values(digest_sent_at=None))
    audit.record(
        session,
        at=now,
        actor=audit.SYSTEM,
        action="alert.delivery.dead",
        participant_id=alert.participant_id,
        after={"alert": alert.id, "delivery": delivery.id, "chat": delivery.chat_id, "error": reason},
    )
    study_id = participant.study_id if participant else None
    return Refused(alert.id, alert.kind, study_id, delivery.chat_id, len(released))
