"""PostgreSQL's pooled connections are pinged before use only when they sat idle
(`models.db.ping_when_idle`): a dead idle connection is replaced before anything runs on
it, and a connection given back a moment ago costs no round trip."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from models.db import create_engine, is_transient

pytestmark = pytest.mark.postgres


class Clock:
    """The pool's monotonic clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


async def backend_pid(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int((await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def kill(url: str, pid: int) -> None:
    """Close one server-side connection, as a restart or an idle timeout would."""
    dsn = url.replace("postgresql+asyncpg://", "postgresql://")
    admin = await asyncpg.connect(dsn)
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()


async def test_a_connection_that_died_while_idle_is_replaced_before_use(pg_url: str) -> None:
    clock = Clock()
    engine = create_engine(pg_url, pool_size=1, max_overflow=0, ping_idle_after=5.0, monotonic=clock)
    try:
        first = await backend_pid(engine)
        await kill(pg_url, first)
        clock.now += 5.0  # idle long enough to be pinged
        second = await backend_pid(engine)  # no error: the ping found it closed
        assert second != first
    finally:
        await engine.dispose()


async def test_a_connection_given_back_a_moment_ago_is_taken_without_a_ping(pg_url: str) -> None:
    """The trade, shown both ways: a connection used a moment ago is not pinged (were
    it, the dead one here would be replaced unseen); its failure is a transient one the
    caller retries, and the pool is renewed for the retry."""
    clock = Clock()
    engine = create_engine(pg_url, pool_size=1, max_overflow=0, ping_idle_after=5.0, monotonic=clock)
    try:
        first = await backend_pid(engine)
        await kill(pg_url, first)
        clock.now += 4.9
        with pytest.raises(DBAPIError) as failure:
            await backend_pid(engine)
        assert is_transient(failure.value)
        assert await backend_pid(engine) != first
    finally:
        await engine.dispose()


async def test_a_live_connection_is_pinged_only_after_idling_and_kept(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    engine = create_engine(pg_url, pool_size=1, max_overflow=0, ping_idle_after=5.0, monotonic=clock)
    pings = 0
    ping = engine.dialect.do_ping

    def counting(dbapi_connection: object) -> bool:
        nonlocal pings
        pings += 1
        return ping(dbapi_connection)

    monkeypatch.setattr(engine.dialect, "do_ping", counting)
    try:
        first = await backend_pid(engine)
        assert pings == 0  # a new connection
        clock.now += 4.9
        assert await backend_pid(engine) == first
        assert pings == 0  # given back a moment ago
        clock.now += 60.0
        assert await backend_pid(engine) == first
        assert pings == 1
    finally:
        await engine.dispose()
