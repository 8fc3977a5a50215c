"""The database goes away or is locked while people use the bot: the bot logs,
retries, and loses nothing Telegram delivered."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from devtools.botapi_server import BotAPIServer
from devtools.harness import ADMIN_ID, BotHarness
from models import AuditEntry, Participant
from tests.bothelpers import admin_says, dose_reminders_per_chat, seed_due_reminders
from tests.conftest import IN_CI, Figures

ROUNDS = 8


async def count(bot: BotHarness, model: type, *where: object) -> int:
    assert bot.services is not None
    async with bot.services.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


@pytest.mark.logs_errors(
    "failed outside its handlers",
    "error while handling update",
    "not handled: the database stayed unavailable",
    "tick ",
    "dispatch of row",
)
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


# --- During a dispatcher tick --------------------------------------------------------

TICK_REMINDERS = 150


async def _statuses(bot: BotHarness) -> dict[str, int]:
    from models import MessageStatus, ScheduledMessage
    from scheduler.planner import MessageKind

    assert bot.services is not None
    async with bot.services.sessions() as session:
        rows = await session.execute(
            select(ScheduledMessage.status, func.count())
            .where(ScheduledMessage.kind == MessageKind.DOSE_REMINDER.value)
            .group_by(ScheduledMessage.status)
        )
        return {MessageStatus(status).value: int(n) for status, n in rows.all()}


def _restart_command() -> list[str] | None:
    """How to restart this machine's PostgreSQL (the Debian cluster tools, as root)."""
    import os
    import shutil
    from pathlib import Path

    clusters = sorted(Path("/etc/postgresql").glob("*/main")) if Path("/etc/postgresql").exists() else []
    if shutil.which("pg_ctlcluster") is None or not clusters or os.geteuid() != 0:
        return None
    version = clusters[-1].parent.name
    return ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart", "-m", "fast"]


@pytest.mark.destructive
@pytest.mark.logs_errors("")  # any: a server restart cuts every connection, wherever it is
async def test_postgres_restarted_during_a_dispatch_tick_loses_and_duplicates_nothing(
    bot: BotHarness, server: BotAPIServer, db_url: str, figures: Figures
) -> None:
    """PostgreSQL itself is restarted (fast shutdown: every connection cut) while a tick
    sends 150 reminders. The message in flight is recorded once the server is back
    (models.db.retry_transient); if the tick fails (logged), the rows it had claimed are
    taken over after their lease (the clock is moved past it, as the heartbeat would find
    them 5 minutes later). Each participant gets exactly one reminder."""
    if not db_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only: restarting the server")
    restart = _restart_command()
    if restart is None:
        if IN_CI:
            pytest.fail("CI=true: this test restarts PostgreSQL and needs pg_ctlcluster as root")
        pytest.skip("needs pg_ctlcluster as root to restart PostgreSQL")
    chats = await seed_due_reminders(bot, server, db_url, TICK_REMINDERS)
    tick = asyncio.create_task(bot.tick(may_fail=True))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while sum(dose_reminders_per_chat(server, chats).values()) < 20:  # the tick is sending (30 a second)
        assert loop.time() < deadline and not tick.done(), "the tick did not start sending"
        await asyncio.sleep(0.05)
    assert not tick.done() and sum(dose_reminders_per_chat(server, chats).values()) < TICK_REMINDERS  # mid-tick
    process = await asyncio.create_subprocess_exec(*restart)
    assert await process.wait() == 0, "PostgreSQL did not restart"
    await tick  # the tick either failed on the lost connection (logged) or rode it out
    for _ in range(5):  # later beats, each past the lease of the rows the failed tick held
        if (await _statuses(bot)).get("sent") == TICK_REMINDERS:
            break
        bot.clock.advance(timedelta(minutes=6))
        await bot.tick(may_fail=True)
    assert await _statuses(bot) == {"sent": TICK_REMINDERS}
    counts = dose_reminders_per_chat(server, chats)
    assert set(counts.values()) == {1}, "a reminder was lost or sent twice"
    figures.add("PostgreSQL restarts during a dispatcher tick", 1)


async def test_a_sqlite_lock_during_a_dispatch_tick_delays_but_loses_and_duplicates_nothing(
    bot: BotHarness, server: BotAPIServer, db_url: str, figures: Figures
) -> None:
    """Another writer holds SQLite's write lock when the tick starts: the tick waits for
    it (busy timeout), sends nothing meanwhile, then sends every reminder once."""
    if not db_url.startswith("sqlite"):
        pytest.skip("SQLite only: another writer holding the lock")
    chats = await seed_due_reminders(bot, server, db_url, 30)
    other = sqlite3.connect(db_url.split("///", 1)[1], isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    tick = asyncio.create_task(bot.tick())
    await asyncio.sleep(1.5)
    assert not tick.done() and sum(dose_reminders_per_chat(server, chats).values()) == 0  # waiting for the lock
    other.execute("COMMIT")
    other.close()
    await asyncio.wait_for(tick, timeout=60)
    assert set(dose_reminders_per_chat(server, chats).values()) == {1}
    assert await _statuses(bot) == {"sent": 30}
    figures.add("SQLite write locks held by another writer", 1)
