"""The "overview" tick: the trial at a glance to the coordinator chats every Sunday from
08:00 (trial time zone), once, however many bot processes share the database.

Claimed like the digest: a `team_reports` row per Sunday is the claim (its unique key
refuses a second process), with a short lease; the picture is drawn off the event loop
and sent with no database lock held; the row is marked sent after the last chat. A failed
send is taken up again when the lease ends (the chats that already have it are skipped)."""

from __future__ import annotations

import logging
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from charts import overview_files
from domain import audit, summary
from models import TeamReport
from models.db import retry_transient

if TYPE_CHECKING:
    from bot.app import TrialApplication

log = logging.getLogger(__name__)

OVERVIEW_KIND = "overview"
OVERVIEW_WEEKDAY = 6  # Sunday: the first clinic day of the Bangladesh week
OVERVIEW_TIME = time(8, 0)
LEASE = timedelta(minutes=5)


def overview_period(now: datetime, app: TrialApplication) -> str | None:
    """The Sunday (ISO date) whose overview is due at `now`, or None before 08:00 or on other days."""
    local = now.astimezone(app.services.protocol.tz)
    if local.weekday() != OVERVIEW_WEEKDAY or local.time() < OVERVIEW_TIME:
        return None
    return local.date().isoformat()


async def _claim(app: TrialApplication, period: str, now: datetime) -> int | None:
    """This process's claim on the period's overview: the chats already sent, or None."""
    services = app.services
    async with services.one_writer(), services.sessions() as session:
        row = await session.scalar(
            select(TeamReport).where(TeamReport.kind == OVERVIEW_KIND, TeamReport.period == period)
        )
        if row is None:
            session.add(TeamReport(kind=OVERVIEW_KIND, period=period, claimed_until=now + LEASE, attempts=1))
            try:
                await session.commit()
            except IntegrityError:  # another process claimed it first
                await session.rollback()
                return None
            return 0
        if row.sent_at is not None or row.claimed_until > now:
            return None
        claimed = await session.execute(
            update(TeamReport)
            .where(TeamReport.id == row.id, TeamReport.sent_at.is_(None), TeamReport.claimed_until == row.claimed_until)
            .values(claimed_until=now + LEASE, attempts=row.attempts + 1)
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            await session.rollback()
            return None
        done = row.chats_sent
        await session.commit()
        return done


async def weekly_overview_tick(app: TrialApplication) -> None:
    """Send the Sunday overview to every coordinator chat, once."""
    services = app.services
    chats = list(services.settings.coordinator_chat_ids)
    now = services.clock.now()
    period = overview_period(now, app)
    if period is None or not chats or not services.settings.weekly_overview:
        return
    done = await _claim(app, period, now)
    if done is None:
        return
    protocol = services.protocol
    async with services.sessions() as session:
        rows = await summary.load_overview(session, protocol, now)
    rendered = await overview_files(rows, protocol.trial_id, now, protocol.tz)
    caption = f"Sunday overview · {protocol.trial_id} · {len(rows)} participant(s) · {period}"
    sent = done
    error: str | None = None
    for chat_id in chats[done:]:
        try:
            await app.bot.send_photo(chat_id, rendered.png, caption=caption, filename=f"overview-{period}.png")
        except Exception as exc:
            error = type(exc).__name__
            log.warning("Sunday overview not sent to one chat (%s); will retry", error)
            break
        sent += 1

    async def record() -> None:
        async with services.one_writer(), services.sessions() as session:
            row = await session.scalar(
                select(TeamReport).where(TeamReport.kind == OVERVIEW_KIND, TeamReport.period == period)
            )
            if row is None:
                return
            row.chats_sent = sent
            row.last_error = error
            if sent == len(chats):
                row.sent_at = services.clock.now()
                audit.record(
                    session,
                    at=row.sent_at,
                    actor=audit.SYSTEM,
                    action="overview.send",
                    after={"period": period, "chats": sent, "participants": len(rows)},
                )
            await session.commit()

    await retry_transient(record, what=f"recording the {period} overview as sent")
