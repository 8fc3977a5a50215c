"""Small helpers the end-to-end tests share (what an admin or participant does)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any

from devtools.botapi_server import BotAPIServer, SentMessage, SimUser
from devtools.harness import ADMIN_ID, BotHarness

CODE_RE = re.compile(r"One-time code: ([A-Z0-9]+)")
STUDY_ID_RE = re.compile(r"[A-Z]{2,}-\d+")


async def admin_says(server: BotAPIServer, text: str, expect: str | None = None) -> SentMessage:
    """The admin sends `text` in their private chat; returns the bot's reply."""
    admin = server.user(ADMIN_ID, "Admin", language_code="en", label="admin")
    update = await admin.send(text)
    (reply,) = await server.wait_for(ADMIN_ID, expect, since=update)
    return reply


async def enroll(server: BotAPIServer, args: str) -> str:
    """/enroll through Telegram; returns the one-time code."""
    reply = await admin_says(server, f"/enroll {args}", "One-time code")
    match = CODE_RE.search(reply.content)
    assert match, reply.content
    return match.group(1)


async def says(server: BotAPIServer, user: SimUser, text: str, expect: str | None = None) -> SentMessage:
    """A participant sends `text`; returns the bot's (first matching) reply."""
    update = await user.send(text)
    found = await server.wait_for(user.id, expect, since=update)
    return found[0]


async def presses(
    server: BotAPIServer, user: SimUser, message: SentMessage, button: str, expect: str | None = None
) -> SentMessage:
    """A participant presses a button; returns the bot's next matching message."""
    update = await user.press(message, button)
    found = await server.wait_for(user.id, expect, since=update)
    return found[0]


async def link(server: BotAPIServer, user: SimUser, code: str, language_button: str = "বাংলা") -> SentMessage:
    """/start CODE, then choose a language; returns the welcome."""
    prompt = await says(server, user, f"/start {code}", "Which language")
    return await presses(server, user, prompt, language_button, STUDY_ID_RE)


async def seed_due_reminders(bot: BotHarness, server: BotAPIServer, db_url: str, count: int) -> list[int]:
    """``count`` linked participants whose dose reminder is due at the harness clock's
    now; returns their chat ids."""
    from bench.seed import CHAT_BASE, same_minute_profiles, seed
    from scheduler.calendar import to_local

    assert bot.services is not None
    protocol = bot.services.protocol
    now = bot.clock.now()
    local = to_local(now, protocol.tz)
    profiles = same_minute_profiles(local.date(), local.time())
    await seed(db_url, count, profiles, protocol, now, keep="due", kinds=frozenset({"dose_reminder"}))
    chats = [CHAT_BASE + i for i in range(count)]
    for chat in chats:
        server.user(chat, "P", language_code="en")
    return chats


def dose_reminders_per_chat(server: BotAPIServer, chats: list[int]) -> dict[int, int]:
    """Dose reminders (messages with a "Taken" button) received per chat."""

    def taken(data: str | None) -> bool:
        return bool(data and data.startswith("dose:") and data.endswith(":taken"))

    return {
        chat: sum(1 for message in server.messages(chat) for row in message.buttons for _, d in row if taken(d))
        for chat in chats
    }


async def eventually(predicate: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:  # noqa: ASYNC109
    """Poll ``predicate`` (a few times a second) until it holds; fail naming ``what``
    after ``timeout`` seconds. For state outside the bot's clock: other processes, the
    real clock."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.2)


async def settled(counts: Callable[[], dict[Any, int]], beats: int = 3, beat: float = 1.0) -> dict[Any, int]:
    """``counts()`` once nothing more has arrived for ``beats`` heartbeats of another
    process (``beat`` seconds each): duplicates are counted after the system has settled,
    not at the first sign that everything arrived."""
    loop = asyncio.get_running_loop()
    last = counts()
    quiet_since = loop.time()
    while loop.time() - quiet_since < beats * beat:
        await asyncio.sleep(beat / 4)
        now = counts()
        if now != last:
            last, quiet_since = now, loop.time()
    return last
