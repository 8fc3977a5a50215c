"""The database goes away or is locked while people use the bot: the bot logs,
retries, and loses nothing Telegram delivered."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3

import pytest
from sqlalchemy import func, select

from devtools.botapi_server import BotAPIServer
from devtools.harness import ADMIN_ID, BotHarness
from models import AuditEntry, Participant
from tests.bothelpers import admin_says
from tests.conftest import Figures

ROUNDS = 8


async def count(bot: BotHarness, model: type, *where: object) -> int:
    assert bot.services is not None
    async with bot.services.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def test_postgres_connections_killed_again_and_again_lose_nothing(
    bot: BotHarness, server: BotAPIServer, db_url: str, figures: Figures
) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only: killing server-side connections")
    import asyncpg

    name = db_url.rpartition("/")[2]
    admin_dsn = db_url.replace("postgresql+asyncpg://", "postgresql://").rpartition("/")[0] + "/test"
    killer = await asyncpg.connect(admin_dsn)
    terminated = 0

    async def keep_killing() -> None:
        nonlocal terminated
        while True:
            terminated += len(
                await killer.fetch(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = $1 AND pid <> pg_backend_pid()",
                    name,
                )
            )
            await asyncio.sleep(0.005)

    chaos = asyncio.create_task(keep_killing())
    try:
        admin = server.user(ADMIN_ID, "Admin", language_code="en", label="admin")
        for i in range(ROUNDS):
            await admin.send(f"/enroll BSM-{300 + i} A 2026-10-25 en")
            await asyncio.sleep(0.15)  # pace the traffic so the kills land while updates are handled
        await asyncio.sleep(0.5)
    finally:
        chaos.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await chaos
        await killer.close()
    reply = await admin_says(server, "/participants", "participant(s)")
    assert f"{ROUNDS} participant(s)" in reply.content
    assert await count(bot, Participant) == ROUNDS
    assert await count(bot, AuditEntry, AuditEntry.action == "enrollment_code.issue") == ROUNDS
    assert terminated >= 1  # the chaos really hit the bot's connections
    figures.add("PostgreSQL connections killed under the bot", terminated)


async def test_a_locked_sqlite_database_delays_but_loses_nothing(
    bot: BotHarness, server: BotAPIServer, db_url: str, figures: Figures
) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("SQLite only: another writer holding the lock")
    path = db_url.split("///", 1)[1]
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    admin = server.user(ADMIN_ID, "Admin", language_code="en", label="admin")
    update = await admin.send("/enroll BSM-310 A 2026-10-25 en")
    with pytest.raises(AssertionError):
        await server.wait_for(ADMIN_ID, "One-time code", since=update, timeout=1.5)  # waiting for the lock
    other.execute("COMMIT")
    other.close()
    await server.wait_for(ADMIN_ID, "One-time code", since=update, timeout=30)
    assert await count(bot, Participant) == 1
    figures.add("SQLite write locks held by another writer", 1)
