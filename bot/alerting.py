"""The "alerts" tick: escalation, the 08:00 same-day digest, and sending every
pending alert delivery until Telegram accepts it.

Alerts and deliveries are rows (models/alerts.py), so a restart loses none.
Deliveries go through the outbox reminders use (scheduler.outbox.ALERTS): each is
claimed under a token and a lease (ALERT_LEASE_SECONDS) before its send, sent
with no database lock held, then marked sent with its message id; a failed send
is never marked sent: it gets the outbox's back-off and the next beat tries
again; a refused one (a 400) is dead-lettered. This module keeps the Telegram
part: rendering, sending, redrawing. Coordinators read English, one glance at
2 a.m.: level, study id and arm first, then what was reported, why, the time of
awareness, the SAE deadline, the alert id. Never a name, a phone number or a
Telegram id.
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, time, timedelta, tzinfo
from typing import TYPE_CHECKING

from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from telegram import InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import BadRequest, RetryAfter

from bot import callbacks
from bot import media as media_files
from bot.digest import split_digest
from domain import audit
from domain import media as domain_media
from domain.acknowledgement import DIGEST_KIND
from domain.alerts import delivery_refused, queue_delivery, raise_alert
from models import Alert, AlertDelivery, AlertLevel, DeliveryStatus, Participant
from models.db import retry_transient
from scheduler import outbox
from scheduler.protocol import Protocol

if TYPE_CHECKING:
    from bot.app import TrialApplication

log = logging.getLogger(__name__)

DIGEST_TIME = time(8, 0)

HEADERS = {
    AlertLevel.URGENT: "🚨 URGENT",
    AlertLevel.SAME_DAY: "🟠 SAME-DAY REVIEW",
    AlertLevel.INFO: "ℹ️ INFO",
}


def _local(value: datetime, tz: tzinfo) -> str:
    return value.astimezone(tz).strftime("%a %d %b %Y %H:%M")


def arm_drug(protocol: Protocol, arm_id: str) -> str:
    """The arm's main drug (its first regimen in the protocol file), in English, for staff."""
    arm = protocol.arms.get(arm_id)
    return arm.regimens[0].drug.en if arm is not None and arm.regimens else "?"


def render(
    alert: Alert,
    participant: Participant | None,
    tz: tzinfo,
    *,
    protocol: Protocol,
    purpose: str = "alert",
    escalate_after: int = 30,
) -> str:
    """The coordinator's message for an alert (or its escalation), as it stands now."""
    if alert.kind == DIGEST_KIND:
        return alert.summary
    who = participant.study_id if participant else "no participant"
    arm = f" · arm {participant.arm} ({arm_drug(protocol, participant.arm)})" if participant else ""
    lines = []
    if purpose == "escalation" and alert.level is AlertLevel.SAME_DAY:
        lines.append("⏫ ESCALATED: nobody acknowledged this same-day item by the end of clinic hours")
    elif purpose == "escalation":
        lines.append(f"⏫ ESCALATED: nobody acknowledged this within {escalate_after} min")
    if purpose.startswith("update-"):
        lines.append(f"➕ NEW FINDINGS for alert #{alert.id}: {', '.join(alert.details.get('new_keys', []))}")
    lines.append(f"{HEADERS[alert.level]} · {who}{arm}")
    if alert.details.get("follows"):
        lines.append(f"New findings after alert #{alert.details['follows']} (acknowledged or escalated)")
    lines.append(alert.summary)
    if alert.reasons:
        lines.append("Why: " if len(alert.reasons) == 1 else "Why:")
        if len(alert.reasons) == 1:
            lines[-1] += str(alert.reasons[0])
        else:
            lines.extend(f"• {reason}" for reason in alert.reasons)
    zone = getattr(tz, "key", str(tz))
    lines.append(f"Aware: {_local(alert.aware_at, tz)} ({zone})")
    if alert.deadline_at is not None:
        lines.append(f"SERIOUS: report to the sponsor by {_local(alert.deadline_at, tz)} (24 h)")
    if alert.acknowledged_at is not None:
        ack = f"✅ Acknowledged by {alert.acknowledged_by} at {_local(alert.acknowledged_at, tz)}"
        if alert.ack_note:
            ack += f" · note: {alert.ack_note}"
        lines.append(ack)
        lines.append(f"Alert #{alert.id}")
    else:
        lines.append(f"Alert #{alert.id} · press Acknowledge or send /ack {alert.id}")
    return "\n".join(lines)


def ack_keyboard(alert: Alert) -> InlineKeyboardMarkup | None:
    """The Acknowledge button, while the alert is open."""
    if alert.acknowledged_at is not None or alert.kind == DIGEST_KIND:
        return None
    return InlineKeyboardMarkup([[InlineKeyboardButton("✅ Acknowledge", callback_data=callbacks.ack(alert.id))]])


async def alerts_tick(app: TrialApplication) -> None:
    """Escalate what waited too long, build the 08:00 digest, download the files
    attached to reports (which queues their forwards), send what is pending."""
    await escalate_due(app)
    await build_digest(app)
    await media_files.download_pending(app)
    await send_pending(app)


async def escalate_due(app: TrialApplication) -> None:
    """URGENT alerts unacknowledged after ESCALATE_AFTER_MINUTES, and same-day
    alerts unacknowledged at the end of their clinic hours, go to the escalation
    chats, exactly once (marked escalated in the same transaction)."""
    services = app.services
    settings = services.settings
    now = services.clock.now()
    cutoff = now - timedelta(minutes=settings.escalate_after_minutes)
    async with services.sessions() as session:
        due = list(
            await session.scalars(
                select(Alert).where(
                    or_(
                        and_(Alert.level == AlertLevel.URGENT, Alert.aware_at <= cutoff),
                        and_(Alert.level == AlertLevel.SAME_DAY, Alert.escalate_at <= now),
                    ),
                    Alert.acknowledged_at.is_(None),
                    Alert.escalated_at.is_(None),
                )
            )
        )
        if not due:
            return
        for alert in due:
            alert.escalated_at = now
            for chat_id in settings.escalation_chat_ids:
                queue_delivery(session, alert, chat_id, "escalation", now)
            audit.record(
                session,
                at=now,
                actor=audit.SYSTEM,
                action="alert.escalate",
                participant_id=alert.participant_id,
                after={"alert": alert.id, "chats": len(settings.escalation_chat_ids)},
            )
        try:
            await session.commit()
        except IntegrityError:  # another process escalated them meanwhile
            await session.rollback()


async def build_digest(app: TrialApplication) -> None:
    """From 08:00 local, once a day: INFO alerts listing every same-day item raised
    before 08:00 and not yet in a digest (each item once; nothing when there is
    nothing), split into messages Telegram accepts (see bot.digest)."""
    services = app.services
    settings = services.settings
    tz = settings.tz
    now = services.clock.now()
    local = now.astimezone(tz)
    since = datetime.combine(local.date(), DIGEST_TIME, tz)
    if local < since:
        return
    async with services.sessions() as session:
        if await _digest_built(session, local.date().isoformat()):
            return  # once a day: items given back by a refused digest wait for tomorrow's
        items = list(
            await session.scalars(
                select(Alert)
                .where(
                    Alert.level == AlertLevel.SAME_DAY,
                    Alert.digest_sent_at.is_(None),
                    Alert.acknowledged_at.is_(None),
                    Alert.aware_at < since,
                )
                .order_by(Alert.aware_at, Alert.id)
            )
        )
        if not items:
            return
        ids = [alert.id for alert in items]
        claimed = await session.execute(
            update(Alert).where(Alert.id.in_(ids), Alert.digest_sent_at.is_(None)).values(digest_sent_at=now)
        )
        if claimed.rowcount != len(ids):  # type: ignore[attr-defined]
            await session.rollback()  # another process is building it
            return
        people = {
            p.id: p
            for p in await session.scalars(
                select(Participant).where(Participant.id.in_({a.participant_id for a in items if a.participant_id}))
            )
        }
        lines = []
        for alert in items:
            person = people.get(alert.participant_id or 0)
            who = f"{person.study_id} (arm {person.arm})" if person else "no participant"
            why = "; ".join(str(r) for r in alert.reasons) or alert.summary.splitlines()[0]
            lines.append(f"• {who} · /ack {alert.id} · {why} · reported {_local(alert.aware_at, tz)}")
        parts = split_digest(f"📋 Same-day review, {local.strftime('%a %d %b %Y')}", lines)
        for number, part in enumerate(parts, start=1):
            await raise_alert(
                session,
                participant=None,
                kind=DIGEST_KIND,
                level=AlertLevel.INFO,
                summary=part.text,
                reasons=[],
                now=now,
                coordinator_chats=settings.coordinator_chat_ids,
                details={"alerts": [ids[i] for i in part.items], "date": local.date().isoformat(), "part": number},
                source=f"digest:{local.date().isoformat()}" + (f":{number}" if number > 1 else ""),
            )
        await session.commit()


async def _digest_built(session: AsyncSession, day: str) -> bool:
    """Whether today's digest exists (its first part's source is `digest:<date>`)."""
    found = await session.scalar(select(Alert.id).where(Alert.kind == DIGEST_KIND, Alert.source == f"digest:{day}"))
    return found is not None


async def send_pending(app: TrialApplication) -> None:
    """Send every due delivery, each claimed through the outbox (scheduler.outbox.ALERTS:
    a token and a lease, so no other process sends it meanwhile); failures wait for
    the outbox's back-off."""
    services = app.services
    lease = timedelta(seconds=services.settings.alert_lease_seconds)
    for _ in range(outbox.MAX_BATCHES * outbox.BATCH):  # a bound, never reached: alerts are few
        now = services.clock.now()
        token = secrets.token_hex(8)
        claimed = await outbox.claim(outbox.ALERTS, services.sessions, now, token, lease)
        for delivery_id, _alert_id in claimed:
            await _send_one(app, delivery_id, token, now)
        if len(claimed) < outbox.ALERTS.batch:
            return


async def _send_one(app: TrialApplication, delivery_id: int, token: str, now: datetime) -> None:
    """Render and send one claimed delivery, then record its outcome through the outbox:
    sent (with its message id) only when Telegram accepted it, dead-lettered when
    Telegram refused it for good, else given back with the back-off."""
    services = app.services
    settings = services.settings
    async with services.sessions() as session:
        found = await outbox.claimed(outbox.ALERTS, session, [delivery_id], token)
        if not found:
            return
        delivery: AlertDelivery = found[0]
        alert = await session.get(Alert, delivery.alert_id)
        assert alert is not None
        participant = await session.get(Participant, alert.participant_id) if alert.participant_id else None
        chat_id = delivery.chat_id
        media_id = domain_media.media_id_of(delivery.purpose)
        file: media_files.Forward | None = None
        if media_id is not None:  # a participant's photo or voice note: a reply to the alert's message
            prepared = await media_files.prepare_forward(session, alert, participant, delivery, media_id)
            if prepared is None:  # the file's row is gone: nothing to send, ever
                outbox.finish(delivery, DeliveryStatus.DEAD, now, "file not found")
            elif not isinstance(prepared, media_files.Forward):  # the alert's own message goes first
                outbox.postpone(delivery, max(prepared, now), now, "waiting for the alert's message")
            if not isinstance(prepared, media_files.Forward):
                await session.commit()
                return
            file = prepared
        text = render(
            alert,
            participant,
            settings.tz,
            protocol=services.protocol,
            purpose=delivery.purpose,
            escalate_after=settings.escalate_after_minutes,
        )
        markup = ack_keyboard(alert)
    try:
        if file is not None:
            message = await media_files.forward(app.bot, chat_id, file)
        else:
            message = await app.bot.send_message(chat_id, text, reply_markup=markup)
    except BadRequest as exc:  # the same request would be refused again: never retried
        await dead_letter(app, delivery_id, token, exc)
        return
    except Exception as exc:
        wait = exc.retry_after if isinstance(exc, RetryAfter) else 0
        at_least = wait if isinstance(wait, timedelta) else timedelta(seconds=wait)
        name = type(exc).__name__
        await outbox.release(
            outbox.ALERTS, services.sessions, delivery_id, token, now, name, failed=True, at_least=at_least
        )
        log.warning("alert delivery %s not sent (%s); will retry", delivery_id, name)
        return

    async def record() -> None:
        async with services.sessions() as session:
            await outbox.mark_sent(
                outbox.ALERTS, session, [(delivery_id, message.message_id)], token, services.clock.now()
            )
            await session.commit()

    # Telegram accepted it: record it even if the database is away for a while, else the
    # lease runs out and the coordinators get the alert twice.
    await retry_transient(record, what=f"recording alert delivery {delivery_id} as sent")
    log.info("alert delivery %s sent", delivery_id)


async def dead_letter(app: TrialApplication, delivery_id: int, token: str, error: BadRequest) -> None:
    """Telegram refused a delivery for good (a 400: too long, chat not found…): the outbox
    marks it dead (never retried), the domain records what follows (domain.alerts), and
    the admins are told at once in their private chats (best effort)."""
    services = app.services
    now = services.clock.now()
    reason = f"{type(error).__name__}: {error.message}"[:200]
    async with services.sessions() as session:
        delivery = await outbox.give_up(outbox.ALERTS, session, delivery_id, token, now, reason)
        if delivery is None:
            return
        refused = await delivery_refused(session, delivery, now, reason)
        await session.commit()
    log.error("alert delivery %s refused for good (%s): dead-lettered", delivery_id, type(error).__name__)
    text = (
        f"⚠️ Alert #{refused.alert_id} ({refused.kind}, {refused.study_id or 'no participant'}) could not be "
        f"delivered to chat {refused.chat_id}: Telegram refused it for good ({reason}). It will not be retried: "
        "please check the chat and read it with /alerts."
    )
    if refused.released:
        text += f" The {refused.released} same-day item(s) it listed go into tomorrow's digest; /alerts lists them now."
    for admin_id in services.settings.admin_user_ids:
        try:
            await app.bot.send_message(admin_id, text)
        except Exception as exc:
            log.error("admin %s not told of dead alert delivery %s (%s)", "?", delivery_id, type(exc).__name__)


async def redraw(app: TrialApplication, alert_id: int, extra: tuple[int, int] | None = None) -> None:
    """Edit the alert's message in every chat it was sent to (after an
    acknowledgement or new findings); `extra` is one more (chat, message) to
    edit, e.g. the copy /alerts showed. A failed edit is logged, not raised."""
    services = app.services
    settings = services.settings
    async with services.sessions() as session:
        alert = await session.get(Alert, alert_id)
        if alert is None:
            return
        participant = await session.get(Participant, alert.participant_id) if alert.participant_id else None
        deliveries = list(
            await session.scalars(
                select(AlertDelivery).where(
                    AlertDelivery.alert_id == alert_id,
                    AlertDelivery.status == DeliveryStatus.SENT,
                    AlertDelivery.message_id.is_not(None),
                    AlertDelivery.purpose.not_like(f"{domain_media.MEDIA_PURPOSE}%"),  # a file has no text to redraw
                )
            )
        )
        targets = []
        for delivery in deliveries:
            text = render(
                alert,
                participant,
                settings.tz,
                protocol=services.protocol,
                purpose=delivery.purpose,
                escalate_after=settings.escalate_after_minutes,
            )
            assert delivery.message_id is not None
            targets.append((delivery.chat_id, delivery.message_id, text))
        if extra is not None and (extra[0], extra[1]) not in {(c, m) for c, m, _ in targets}:
            targets.append((extra[0], extra[1], render(alert, participant, settings.tz, protocol=services.protocol)))
        markup = ack_keyboard(alert)
    for chat_id, message_id, text in targets:
        try:
            await app.bot.edit_message_text(text, chat_id=chat_id, message_id=message_id, reply_markup=markup)
        except Exception as exc:
            log.warning("alert %s message not redrawn in one chat (%s)", alert_id, type(exc).__name__)
