"""Reminder fan-out: N participants whose dose reminder falls due in the same minute,
sent by the real dispatcher (bot.dispatch) through the real PTB Bot to the local
Bot API server. Counts what arrived: lost, sent twice, late."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from sqlalchemy import func, select

from bench.common import register_team_chats, running_app, settled_heap
from bench.seed import CHAT_BASE, same_minute_profiles, seed
from bot.dispatch import FREE_RATE, auto_slots, dispatch_tick
from devtools.botapi_server import BotAPIServer
from devtools.harness import DEFAULT_START
from domain.content import load_content
from models import MessageStatus, ScheduledMessage
from scheduler.calendar import to_local

LATE_AFTER_S = 60.0  # a reminder sent more than a minute after it fell due is late


async def run_fanout(
    url: str,
    n: int,
    *,
    limiter: bool,
    inject_429: int = 0,
    concurrency: int = 0,
    latency_ms: float = 0.0,
    rate: int = FREE_RATE,
) -> dict[str, Any]:
    """Seed ``n`` reminders due now, dispatch until none is left (``concurrency``:
    DISPATCH_CONCURRENCY, 0 the default: sized to the round trip; ``latency_ms``: the
    server's round trip; ``rate``: TELEGRAM_SEND_RATE, above 30 paid broadcasts), and
    measure."""
    protocol = load_content().protocol
    now = DEFAULT_START  # Sunday 09:00 in Dhaka
    local = to_local(now, protocol.tz)
    seeded = await seed(url, n, same_minute_profiles(local.date(), local.time()), protocol, now, keep="due")
    assert seeded.rows == n, f"expected one due reminder per participant, planned {seeded.rows}"
    async with BotAPIServer(token=_token()) as server:
        register_team_chats(server)
        server.latency = latency_ms / 1000
        for i in range(n):
            server.user(CHAT_BASE + i, f"P{i}", language_code="en")
        if inject_429:
            server.faults.add("sendMessage", "429", times=inject_429, retry_after=1)
        async with running_app(
            server, url, now, rate_limiter=limiter, dispatch_concurrency=concurrency, telegram_send_rate=rate
        ) as (app, _):
            server.clear_history()
            started = time.time()
            ticks = 0
            while True:
                await dispatch_tick(app)
                ticks += 1
                left = await _due_left(app, now)
                if left == 0 or ticks >= 20:
                    break
            elapsed = time.time() - started
            statuses = await _statuses(app)
            round_trip_s = float(getattr(app.bot.request, "round_trip_s", 0.0))
            record_s = app.dispatch_record_s
        sends = [r for r in server.requests if r.method == "sendMessage"]
        ok = [r for r in sends if r.status == 200 and r.fault is None]
        per_chat = Counter(m.chat_id for i in range(n) for m in server.messages(CHAT_BASE + i))
    first = min((r.time for r in ok), default=started)
    last = max((r.time for r in ok), default=started)
    lost = sum(1 for i in range(n) if per_chat[CHAT_BASE + i] == 0)
    twice = sum(1 for i in range(n) if per_chat[CHAT_BASE + i] > 1)
    late = sum(1 for r in ok if r.time - started > LATE_AFTER_S)
    measured = len(ok) / (last - started) if last > started else 0.0
    return {
        "n": n,
        "limiter": limiter,
        "concurrency": concurrency,
        "round_trip_ms": round(round_trip_s * 1000, 1),
        "record_ms": round(record_s * 1000, 1),
        "send_rate": rate,
        "paid": sum(1 for r in ok if r.params.get("allow_paid_broadcast")),
        "slots": concurrency or auto_slots(round_trip_s, record_s, rate),
        "latency_ms": latency_ms,
        "sent": len(ok),
        "messages_per_s": round(measured, 1),
        "steady_messages_per_s": round((len(ok) - 1) / (last - first), 1) if last > first else 0.0,
        "seconds": round(elapsed, 2),
        "lost": lost,
        "sent_twice": twice,
        "late": late,
        "late_after_s": LATE_AFTER_S,
        "last_sent_after_s": round(last - started, 1),
        "injected_429": inject_429,
        "unhandled_429": statuses.get("retry_after_left", 0),
        "rows": statuses,
        "ticks": ticks,
    }


def _token() -> str:
    from devtools.harness import TOKEN

    return TOKEN


async def _due_left(app: Any, now: Any) -> int:
    async with app.services.sessions() as session:
        left: int = (
            await session.scalar(
                select(func.count()).where(
                    ScheduledMessage.status.in_((MessageStatus.PLANNED, MessageStatus.SENDING)),
                    ScheduledMessage.next_attempt_at <= now,
                    ScheduledMessage.kind == "dose_reminder",
                )
            )
            or 0
        )
        return left


async def _statuses(app: Any) -> dict[str, int]:
    async with app.services.sessions() as session:
        counts = {
            str(status.value): int(count)
            for status, count in await session.execute(
                select(ScheduledMessage.status, func.count())
                .where(ScheduledMessage.kind == "dose_reminder")
                .group_by(ScheduledMessage.status)
            )
        }
        retry = await session.scalar(
            select(func.count()).where(
                ScheduledMessage.kind == "dose_reminder", ScheduledMessage.last_error == "RetryAfter"
            )
        )
    counts["retry_after_left"] = int(retry or 0)
    return counts


async def run_send_floor(n: int, *, latency_ms: float = 0.0) -> dict[str, Any]:
    """PTB's own send floor: a bare ``Bot.send_message`` loop (one after another, no
    database, no rendering), against the same test server, to ``n`` chats, on a heap
    settled as the dispatcher's is."""
    async with BotAPIServer(token=_token()) as server:
        server.latency = latency_ms / 1000
        for i in range(n):
            server.user(CHAT_BASE + i, f"P{i}", language_code="en")
        async with server.make_bot() as bot:
            await bot.get_me()  # connection warm, as the bot's is after initialize
            server.clear_history()
            with settled_heap():  # as the dispatcher's (bench.common.running_app)
                started = time.time()
                for i in range(n):
                    await bot.send_message(CHAT_BASE + i, "Time for your dose.")
        ok = [r for r in server.requests if r.method == "sendMessage" and r.status == 200 and r.fault is None]
    last = max((r.time for r in ok), default=started)
    return {
        "n": n,
        "latency_ms": latency_ms,
        "sent": len(ok),
        "messages_per_s": round(len(ok) / (last - started), 1) if last > started else 0.0,
        "sender": "bare PTB Bot.send_message loop, no database",
    }
