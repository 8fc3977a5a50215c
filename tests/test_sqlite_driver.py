"""models.sqlite_driver: every statement on SQLite is at most one trip to aiosqlite's thread,
with the results, row counts, row ids and errors SQLAlchemy's own adapter gives."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select, text, update
from sqlalchemy.dialects.sqlite.aiosqlite import AsyncAdapt_aiosqlite_cursor, AsyncAdapt_aiosqlite_ss_cursor
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from models import sqlite_driver
from models.db import create_engine, is_transient
from models.sqlite_driver import OneTripConnection, OneTripCursor

metadata = MetaData()
things = Table(
    "things",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(20), nullable=False, unique=True),
)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'driver.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield engine
    await engine.dispose()


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    """How many functions were queued to aiosqlite's thread since the last call."""
    queued = 0
    queue = aiosqlite.Connection._execute

    async def counting(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal queued
        queued += 1
        return await queue(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counting)

    def since() -> int:
        nonlocal queued
        n, queued = queued, 0
        return n

    return since


async def test_the_engine_uses_the_one_trip_cursor(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        adapted = raw.dbapi_connection
        assert isinstance(adapted, OneTripConnection)
        assert isinstance(adapted.cursor(), OneTripCursor)


async def test_each_statement_is_at_most_one_trip_with_its_results(
    engine: AsyncEngine, trips: Callable[[], int]
) -> None:
    """Reads before the first write and the first write go to SQLite's thread, one trip
    each; once the transaction holds the write lock its statements make none; the
    commit makes one."""
    async with engine.begin() as conn:
        trips()
        none = (await conn.execute(select(things).where(things.c.id == 99))).all()
        assert trips() == 1
        assert none == []

        first = await conn.execute(insert(things).values(name="a"))
        assert trips() == 1
        assert first.inserted_primary_key == (1,)

        returned = await conn.execute(insert(things).values(name="b").returning(things.c.id, things.c.name))
        assert returned.all() == [(2, "b")]

        assert trips() == 0
        await conn.execute(insert(things), [{"name": "c"}, {"name": "d"}, {"name": "e"}])
        assert trips() == 1  # executemany: always in SQLite's thread

        changed = await conn.execute(update(things).where(things.c.id > 3).values(name=things.c.name + "!"))
        assert changed.rowcount == 2

        rows = (await conn.execute(select(things.c.name).order_by(things.c.id))).scalars().all()
        assert rows == ["a", "b", "c", "d!", "e!"]
        assert trips() == 0
    assert trips() == 1  # the commit; the pool's rollback on return makes none
    async with engine.begin() as conn:  # the next transaction holds no lock until it writes
        assert (await conn.execute(select(things.c.name).where(things.c.id == 2))).scalar_one() == "b"
        assert trips() == 1


async def test_a_bare_begin_takes_no_lock_so_its_statements_still_go_to_the_thread(
    engine: AsyncEngine, trips: Callable[[], int]
) -> None:
    async with engine.connect() as conn:
        await conn.exec_driver_sql("BEGIN")
        trips()
        assert (await conn.execute(select(things))).all() == []
        assert trips() == 1


async def test_once_the_budget_is_spent_the_rest_of_the_transaction_goes_to_the_thread(
    engine: AsyncEngine, trips: Callable[[], int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The budget is the transaction's, spent by its statements on the loop together: a
    later write does not win it back; the next transaction has it whole."""
    monkeypatch.setattr(sqlite_driver, "INLINE_BUDGET_S", 1e-9)  # the first statement on the loop spends it
    async with engine.begin() as conn:  # the pooled connection's budget is renewed at its next commit
        await conn.execute(select(things))
    for stored, names in enumerate((("a", "b", "c"), ("d", "e", "f"))):
        async with engine.begin() as conn:
            await conn.execute(insert(things).values(name=names[0]))
            trips()
            await conn.execute(insert(things).values(name=names[1]))
            assert trips() == 0  # on the loop: the lock was held and the budget not yet spent
            await conn.execute(insert(things).values(name=names[2]))
            assert trips() == 1
            assert (await conn.execute(select(func.count()).select_from(things))).scalar_one() == 3 * (stored + 1)
            assert trips() == 1


async def test_a_commit_sent_as_a_statement_renews_the_budget_too(
    engine: AsyncEngine, trips: Callable[[], int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_driver, "INLINE_BUDGET_S", 1e-9)
    async with engine.begin() as conn:
        await conn.execute(select(things))
    async with engine.connect() as conn:
        await conn.execute(insert(things).values(name="a"))
        await conn.execute(insert(things).values(name="b"))  # on the loop: spends the budget
        await conn.exec_driver_sql("COMMIT")
        await conn.execute(insert(things).values(name="c"))  # the next transaction's first write
        trips()
        await conn.execute(insert(things).values(name="d"))
        assert trips() == 0
        await conn.commit()


async def test_a_savepoint_goes_to_the_thread_and_leaves_the_lock_held(
    engine: AsyncEngine, trips: Callable[[], int]
) -> None:
    async with engine.begin() as conn:
        await conn.execute(insert(things).values(name="a"))
        trips()
        async with conn.begin_nested():
            assert trips() == 1  # SAVEPOINT: not a statement for the loop
            await conn.execute(insert(things).values(name="b"))
            assert trips() == 0
        assert trips() == 1  # RELEASE SAVEPOINT
        await conn.execute(insert(things).values(name="c"))
        assert trips() == 0  # still the lock's holder


async def test_without_a_wal_every_statement_goes_to_the_thread(trips: Callable[[], int]) -> None:
    """A database in memory has no WAL (its journal_mode stays "memory"): a writer there
    could wait on readers, so nothing runs on the event loop."""
    engine = create_engine("sqlite+aiosqlite:///:memory:")
    try:
        async with engine.begin() as conn:
            raw = await conn.get_raw_connection()
            assert isinstance(raw.dbapi_connection, OneTripConnection) and not raw.dbapi_connection.wal
            await conn.run_sync(metadata.create_all)
            await conn.execute(insert(things).values(name="a"))
            trips()
            await conn.execute(insert(things).values(name="b"))
            assert trips() == 1
    finally:
        await engine.dispose()


async def test_a_file_database_is_in_wal_mode(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        assert isinstance(raw.dbapi_connection, OneTripConnection) and raw.dbapi_connection.wal


async def test_commit_and_rollback_make_no_trip_when_nothing_is_open(
    engine: AsyncEngine, trips: Callable[[], int]
) -> None:
    async with engine.connect() as conn:
        await conn.execute(select(things))
        trips()
        await conn.commit()  # a read opens no transaction on SQLite: nothing to commit
        assert trips() == 0
        await conn.execute(insert(things).values(name="x"))
        trips()
        await conn.rollback()
        assert trips() == 1
        assert (await conn.execute(select(things))).all() == []
    # And nothing is left open for the next user of the file: another connection writes at once.
    other = await aiosqlite.connect(engine.url.database or "", timeout=0)
    try:
        await other.execute("INSERT INTO things (name) VALUES ('y')")
        await other.commit()
    finally:
        await other.close()


async def test_a_failed_write_is_rolled_back_on_its_way_back_to_the_pool(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(insert(things).values(name="kept?"))
        with pytest.raises(IntegrityError):
            await conn.execute(insert(things).values(id=1, name="clash"))
    # no commit: the pool's rollback on return must reach SQLite, or the write lock stays held
    other = await aiosqlite.connect(engine.url.database or "", timeout=0)
    try:
        await other.execute("INSERT INTO things (name) VALUES ('y')")
        await other.commit()
        assert [row async for row in await other.execute("SELECT name FROM things")] == [("y",)]
    finally:
        await other.close()


async def test_a_streamed_result_still_comes_through_the_server_side_cursor(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(insert(things), [{"name": f"n{i}"} for i in range(50)])
    async with engine.connect() as conn:
        stream = await conn.stream(select(things.c.name).order_by(things.c.id))
        cursor = stream._real_result.cursor  # type: ignore[attr-defined]
        assert isinstance(cursor, AsyncAdapt_aiosqlite_ss_cursor)
        names = [row.name async for row in stream]
    assert names == [f"n{i}" for i in range(50)]


async def test_a_transaction_begun_by_hand_is_rolled_back_for_real(engine: AsyncEngine) -> None:
    """export/run.py begins its read snapshot with a bare BEGIN (a SELECT opens none)."""
    async with engine.connect() as conn:
        await conn.exec_driver_sql("BEGIN")
        await conn.execute(select(things))
        raw = await conn.get_raw_connection()
        assert isinstance(raw.dbapi_connection, OneTripConnection) and raw.dbapi_connection.in_transaction
    # given back without a commit: the pool's rollback must end it, or SQLite stays in it
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        assert raw.dbapi_connection is not None
        sqlite = raw.dbapi_connection.driver_connection
        assert not await sqlite._execute(lambda: sqlite._conn.in_transaction)


async def test_executemany_with_returning_reports_what_sqlalchemys_adapter_reports(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        raw = await conn.get_raw_connection()
        adapted = raw.dbapi_connection
        assert isinstance(adapted, OneTripConnection)
        ours, stock = adapted.cursor(), AsyncAdapt_aiosqlite_cursor(adapted)
        statement = "INSERT INTO things (name) VALUES (?) RETURNING id"
        await conn.run_sync(lambda _: ours.executemany(statement, [("p",), ("q",)]))
        await conn.run_sync(lambda _: stock.executemany(statement, [("r",), ("s",)]))
        assert (ours.description, ours.rowcount, ours.fetchall()) == (stock.description, stock.rowcount, [])
        assert ours.description is None


async def test_a_closed_connection_is_a_disconnect_sqlalchemy_recognises(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        assert raw.dbapi_connection is not None
        await raw.dbapi_connection.driver_connection.close()
        with pytest.raises(OperationalError) as error:
            await conn.execute(select(things))
        assert error.value.connection_invalidated
        assert is_transient(error.value)


async def test_errors_are_sqlalchemys_and_leave_the_transaction_usable(
    engine: AsyncEngine, trips: Callable[[], int]
) -> None:
    async with engine.connect() as conn:
        await conn.execute(insert(things).values(name="same"))
        trips()
        with pytest.raises(IntegrityError):
            await conn.execute(insert(things).values(name="same"))
        assert trips() == 0  # it failed on the event loop: the lock was held
        raw = await conn.get_raw_connection()
        assert isinstance(raw.dbapi_connection, OneTripConnection) and not raw.dbapi_connection.writing
        await conn.rollback()
        with pytest.raises(OperationalError) as error:
            await conn.execute(text("SELECT nothing FROM nowhere"))
        assert is_transient(error.value)  # OperationalError: the retry paths treat it as such
        await conn.rollback()
        assert (await conn.execute(select(things))).all() == []  # the first insert rolled back with the rest
