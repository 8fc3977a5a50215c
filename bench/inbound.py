"""Inbound updates: K participants answering the check-in's first question at the same
moment (a button press each), served by the real bot (bot.runner.serve: long polling,
one unit of work per update), against the floor: a bare PTB Application whose only
handler replies "ok" (no database), polling the same server, fed the same burst (a
press of a question's button each: a press's update, which carries the question with
its keyboard, costs PTB about 5 % more to read than a text message's).

Latency: from the update being queued at the server (the participant's press) to the
first thing the bot sends back to that chat being recorded by the server.

Both serve with the heap settled as `python -m bot` does (`bot.runner.settle_heap`: what
starting made is frozen out of the garbage collector's passes); otherwise the floor's
collector would walk everything the benchmark's process has loaded and made before it,
a cost a bare PTB process does not have. Each unfreezes when done, so that the
scenarios after it (the other database's) run on the heap they would have had."""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import Application, ContextTypes, TypeHandler

from bench.common import register_team_chats, settings_for, settled_heap, summary_ms
from bench.seed import CHAT_BASE, same_minute_profiles, seed
from bot.app import build_application
from bot.runner import serve
from bot.services import build_services
from core.clock import ManualClock
from devtools.botapi_server import BotAPIServer, SentMessage, TranscriptEntry
from devtools.harness import DEFAULT_START, TOKEN
from domain.content import load_content
from scheduler.calendar import to_local


class _Latency:
    """Per chat: when the participant acted, and when the bot first answered after that."""

    def __init__(self) -> None:
        self.asked: dict[int, float] = {}
        self.answered: dict[int, float] = {}

    def __call__(self, entry: TranscriptEntry) -> None:
        if entry.role == "user":
            self.asked[entry.chat_id] = entry.time
            self.answered.pop(entry.chat_id, None)
        elif entry.role == "bot" and entry.chat_id in self.asked and entry.chat_id not in self.answered:
            self.answered[entry.chat_id] = entry.time

    def figures(self, k: int) -> dict[str, Any]:
        latencies = [self.answered[c] - t for c, t in self.asked.items() if c in self.answered]
        first = min(self.asked.values(), default=0.0)
        last = max(self.answered.values(), default=first)
        return {
            "k": k,
            "answered": len(latencies),
            "updates_per_s": round(len(latencies) / (last - first), 1) if last > first else 0.0,
            **summary_ms(latencies),
        }


async def run_inbound(url: str, k: int, *, latency_ms: float = 0.0) -> dict[str, Any]:
    """The trial bot: K linked participants open /checkin, then all answer at once
    (``latency_ms``: the server's round trip for each of the bot's calls)."""
    protocol = load_content().protocol
    local = to_local(DEFAULT_START, protocol.tz)
    await seed(url, k, same_minute_profiles(local.date(), local.time()), protocol, DEFAULT_START, keep="none")
    async with BotAPIServer(token=TOKEN) as server:
        users = [server.user(CHAT_BASE + i, f"P{i}", language_code="en") for i in range(k)]
        register_team_chats(server)
        services = build_services(settings_for(server, url), ManualClock(DEFAULT_START))
        app = build_application(services, rate_limiter=False)
        stop = asyncio.Event()
        ready = asyncio.Event()
        task = asyncio.create_task(serve(app, stop, poll_timeout=1, ready=ready, heartbeat_seconds=None))
        try:
            await asyncio.wait_for(ready.wait(), 30)
            questions = []
            for user in users:
                await user.send("/checkin")
            for user in users:
                found = await server.wait_for(user.id, lambda m: bool(m.buttons), timeout=60)
                questions.append(found[-1])
            latency = _Latency()
            server.subscribe(latency)
            server.latency = latency_ms / 1000
            for user, question in zip(users, questions, strict=True):
                await user.press(question, _all_is_well(question))
            await _all_answered(latency, k)
            figures = latency.figures(k)
        finally:
            stop.set()
            await task
            await services.engine.dispose()
            gc.unfreeze()
    return {
        **figures,
        "latency_ms": latency_ms,
        "handler": "check-in answer button (unit of work, questionnaire engine, triage)",
    }


FLOOR_QUESTION = InlineKeyboardMarkup(
    [[InlineKeyboardButton(label, callback_data=f"q:1:item:{label.lower()}") for label in ("Yes", "No")]]
)
"""The floor's question: a message with two buttons, as the check-in's first question."""


async def run_floor(k: int) -> dict[str, Any]:
    """python-telegram-bot's own floor: one handler that replies "ok", no database, fed
    the same burst as the bot: each of K participants presses a button of a question."""

    async def reply_ok(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_chat is not None
        await context.bot.send_message(update.effective_chat.id, "ok")

    async with BotAPIServer(token=TOKEN) as server:
        users = [server.user(CHAT_BASE + i, f"P{i}", language_code="en") for i in range(k)]
        app: Application[Any, Any, Any, Any, Any, Any] = server.app_builder().token(TOKEN).build()
        app.add_handler(TypeHandler(Update, reply_ok))
        async with app:
            for user in users:
                await app.bot.send_message(user.id, "Question 1 of 9", reply_markup=FLOOR_QUESTION)
            questions = [(await server.wait_for(user.id, lambda m: bool(m.buttons), timeout=60))[-1] for user in users]
            await app.start()
            assert app.updater is not None
            await app.updater.start_polling(poll_interval=0, timeout=1)
            await server.wait_for_poll()
            latency = _Latency()
            server.subscribe(latency)
            with settled_heap():
                for user, question in zip(users, questions, strict=True):
                    await user.press(question, "No")
                await _all_answered(latency, k)
            await app.updater.stop()
            await app.stop()
    return {**latency.figures(k), "handler": "bare PTB Application, one handler replying 'ok' to a button press"}


def _all_is_well(question: SentMessage) -> str:
    """The button of the answer that raises nothing ("no" / "none", by its callback data:
    two participants in three read Bangla buttons): a benchmark must not page the team."""
    for row in question.buttons:
        for text, data in row:
            if data and data.startswith("q:") and data.rsplit(":", 1)[1] in ("no", "none"):
                return text
    raise AssertionError(f"no 'no' answer among {question.buttons}")


async def _all_answered(latency: _Latency, k: int, timeout: float = 120.0) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while len(latency.answered) < k:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(latency.answered)} of {k} answered")
        await asyncio.sleep(0.02)
