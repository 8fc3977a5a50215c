"""Acknowledging an alert: who and when, once, audited; it stops escalation.

Used by the Acknowledge button and by `/ack ALERT_ID [NOTE…]`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from domain import audit
from domain.errors import DomainError
from domain.quoting import name_with_actor
from models import Alert

DIGEST_KIND = "digest"
"""Alerts of this kind are the 08:00 same-day digest itself: nothing to acknowledge."""


@dataclass(frozen=True)
class Acknowledged:
    """The alert after the request; `already` when someone had acknowledged it before."""

    alert: Alert
    already: bool


def parse_alert_id(text: str) -> int:
    """'12' or '#12' -> 12; a DomainError with the usage otherwise."""
    cleaned = text.strip().lstrip("#")
    if not cleaned.isdecimal():
        raise DomainError(f"'{text[:20]}' is not an alert number; usage: /ack ALERT_ID [NOTE…]")
    return int(cleaned)


async def acknowledge(
    db: AsyncSession, alert_id: int, *, actor: str, display_name: str, note: str | None, now: datetime
) -> Acknowledged:
    """Record that `actor` has seen alert `alert_id` (first acknowledgement wins).

    Why: an acknowledged alert stops escalating and its messages show who took
    it; a second press must not overwrite who took it first. It records the
    findings it covered: anything found after it is a new alert.
    """
    alert = await db.scalar(select(Alert).where(Alert.id == alert_id))
    if alert is None or alert.kind == DIGEST_KIND:
        raise DomainError(f"there is no alert #{alert_id}")
    if alert.acknowledged_at is not None:
        return Acknowledged(alert, already=True)
    alert.acknowledged_at = now
    alert.acknowledged_by = name_with_actor(display_name, actor, 64)
    alert.ack_note = note or None
    covered = list(alert.details.get("keys", []))
    alert.details = {**alert.details, "acknowledged_keys": covered}  # what the coordinator was shown
    audit.record(
        db,
        at=now,
        actor=actor,
        action="alert.acknowledge",
        participant_id=alert.participant_id,
        before={"alert": alert.id, "acknowledged_at": None},
        after={"alert": alert.id, "acknowledged_at": now.isoformat(), "note": note or None, "covered": covered},
    )
    return Acknowledged(alert, already=False)


async def open_alerts(db: AsyncSession, limit: int = 30) -> list[Alert]:
    """Alerts nobody has acknowledged yet, oldest first (the digest itself excluded)."""
    found = await db.scalars(
        select(Alert)
        .where(Alert.acknowledged_at.is_(None), Alert.kind != DIGEST_KIND)
        .order_by(Alert.aware_at, Alert.id)
        .limit(limit)
    )
    return list(found)
