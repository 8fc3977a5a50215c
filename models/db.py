"""One engine and one session factory per process, configured for both SQLite
(the default file) and PostgreSQL (real deployments, several processes)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, cast

from sqlalchemy import Insert, Table, TextClause, bindparam, event, text
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, InvalidatePoolError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.sql.schema import CallableColumnDefault, ScalarElementColumnDefault

from models import sqlite_driver

SessionFactory = async_sessionmaker[AsyncSession]
T = TypeVar("T")
log = logging.getLogger(__name__)

TRANSIENT_SQLSTATES = ("08", "57P", "40001", "40P01")  # connection, operator intervention, serialization, deadlock
RECORD_PAUSES = (0.2, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
"""Waits between tries of `retry_transient`: about a minute in all, time for PostgreSQL
to restart or another SQLite writer to finish."""


def is_transient(error: BaseException) -> bool:
    """A database that went away, restarted, is locked or asked us to retry: the
    transaction was rolled back and is worth trying again."""
    if isinstance(error, OperationalError | InterfaceError | ConnectionError):
        return True  # ConnectionError: asyncpg's "connection refused" while PostgreSQL restarts
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    # The driver's error, wrapped by SQLAlchemy or raw (asyncpg raises "cannot connect
    # now", 57P03, unwrapped while a new connection is made to a restarting server).
    cause = error.orig if isinstance(error, DBAPIError) else error
    code = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
    return isinstance(code, str) and code.startswith(TRANSIENT_SQLSTATES)


async def retry_transient(
    operation: Callable[[], Awaitable[T]], *, what: str, pauses: Sequence[float] = RECORD_PAUSES
) -> T:
    """Run ``operation`` (one whole transaction), again after a pause each time the
    database fails transiently; the last failure is raised. For recording what already
    happened outside the database (a message Telegram accepted): giving up at the first
    failure would leave the row claimed, and its lease would send the message twice."""
    for pause in pauses:
        try:
            return await operation()
        except Exception as error:
            if not is_transient(error):
                raise
            log.warning("%s: database unavailable (%s); trying again in %.1f s", what, type(error).__name__, pause)
        await asyncio.sleep(pause)
    return await operation()


POOL_SIZE = 20
"""PostgreSQL connections a process keeps open: the updates' transactions in progress at
once (``bot.app.CONCURRENT_UPDATES``, 16), the group commit of the questions' message ids,
the dispatcher's and the alert ticks', and one to spare. SQLAlchemy's default of 5 kept
too few: every update beyond the fifth opened a connection of its own and closed it
after (in a burst of answers, connecting was 8 % of the CPU spent handling them)."""
POOL_OVERFLOW = 5
"""More connections a process may open for a moment beyond POOL_SIZE (an export, the
overview): at most 25 a process, so that four processes stay within PostgreSQL's
default max_connections of 100 (see the README's "Several bot processes")."""


PING_IDLE_AFTER = 5.0
"""Seconds a pooled PostgreSQL connection may sit unused and still be taken without a
ping first (`ping_when_idle`)."""


def create_engine(
    url: str,
    *,
    ping_idle_after: float = PING_IDLE_AFTER,
    monotonic: Callable[[], float] = time.monotonic,
    **kwargs: Any,
) -> AsyncEngine:
    """Create the async engine. On SQLite: aiosqlite with at most one trip to its thread
    a statement (`models.sqlite_driver`), WAL (readers do not block the writer), a busy
    timeout instead of instant 'database is locked', foreign keys on. On PostgreSQL: a
    pool as large as the transactions in progress, and a connection pinged before use
    only when it sat idle (`ping_when_idle`; ``monotonic`` is its clock)."""
    if url.startswith("sqlite"):
        create_private_file(make_url(url).database)
        kwargs.setdefault("module", sqlite_driver.dbapi())  # at most one trip to SQLite's thread a statement
        engine = create_async_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            journal = cur.fetchone()
            if isinstance(dbapi_conn, sqlite_driver.OneTripConnection):  # a database in memory has no WAL
                dbapi_conn.wal = journal is not None and str(journal[0]).lower() == "wal"
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    kwargs.setdefault("pool_size", POOL_SIZE)
    kwargs.setdefault("max_overflow", POOL_OVERFLOW)
    engine = create_async_engine(url, **kwargs)
    if not kwargs.get("pool_pre_ping"):
        ping_when_idle(engine, ping_idle_after, monotonic)
    return engine


def ping_when_idle(engine: AsyncEngine, idle_after: float, monotonic: Callable[[], float] = time.monotonic) -> None:
    """Ping a pooled connection before it is used only when it sat unused for
    ``idle_after`` seconds; a dead one is replaced, with every connection pooled before
    it (as SQLAlchemy's own pre-ping does), before anything runs on it.

    SQLAlchemy's ``pool_pre_ping`` pings at every checkout: on asyncpg three round trips
    (``BEGIN``, ``;``, ``ROLLBACK``) before each transaction, as many as a short
    transaction's own statements. What kills a connection is mostly time: a server or
    firewall closing idle ones, a restart during a quiet hour. A connection given back a
    moment ago is taken as it is; if it died meanwhile (a restart under load), its first
    statement fails as a disconnect, SQLAlchemy recycles the whole pool, and the caller
    retries as it does for any transient failure (`is_transient`)."""
    pool = engine.sync_engine.pool
    dialect = engine.dialect

    def given_back(_dbapi_connection: Any, record: Any) -> None:
        record.info[_GIVEN_BACK] = monotonic()

    def taken(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if monotonic() - record.info.get(_GIVEN_BACK, float("-inf")) < idle_after:
            return
        try:
            alive = dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as error:
            if not dialect.is_disconnect(error, dbapi_connection, None):
                raise
            alive = False
        if not alive:
            raise InvalidatePoolError("a pooled connection was found closed by its ping")

    event.listen(pool, "connect", given_back)  # a new connection needs no ping
    event.listen(pool, "checkin", given_back)
    event.listen(pool, "checkout", taken)


_GIVEN_BACK = "given_back_at"


def create_private_file(path: str | None) -> None:
    """Create the SQLite file readable by its owner only (0600) before SQLite does
    (it would follow the umask, usually world-readable); its -wal and -shm files take
    the same mode. An existing file is left as it is."""
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


def create_session_factory(engine: AsyncEngine) -> SessionFactory:
    """Sessions that keep loaded values after commit (handlers read them to reply)."""
    return async_sessionmaker(engine, expire_on_commit=False)


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from synchronous code, even when an event
    loop is already running in this thread (Alembic called from a test or the
    demo): then it runs on its own loop in a worker thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def insert_new(session: AsyncSession, model: Any, rows: Sequence[dict[str, Any]], unique: Sequence[str]) -> None:
    """``INSERT … ON CONFLICT (unique) DO NOTHING`` of ``rows`` (several value sets, the
    column defaults filled in), on SQLite and PostgreSQL: rows that already exist are left alone."""
    if not rows:
        return
    statement, values = _new_rows(session, model, rows, unique, returning=False)
    await session.execute(statement, values)


async def claim_new(session: AsyncSession, model: Any, row: dict[str, Any], unique: Sequence[str]) -> bool:
    """``insert_new`` of one row, saying whether it went in: False when a row with the same
    ``unique`` key is there already (on PostgreSQL, once the transaction that wrote that row
    has committed; had it rolled back, this row goes in)."""
    statement, values = _new_rows(session, model, [row], unique, returning=True)
    return (await session.execute(statement, values[0])).first() is not None


async def claim_many(session: AsyncSession, model: Any, rows: Sequence[dict[str, Any]], unique: str) -> set[Any]:
    """`claim_new` of several rows in one statement (one ``VALUES`` list): the ``unique``
    values of the rows that went in."""
    if not rows:
        return set()
    statement, values = _new_rows(session, model, rows, (unique,), returning=True, rows_at_once=len(rows))
    numbered = {f"{key}_{i}": value for i, row in enumerate(values) for key, value in row.items()}
    return set((await session.execute(statement, numbered)).scalars())


# ---------------------------------------------------------------- rows written at the flush


_LATER = "rows_written_later"


def insert_later(session: AsyncSession, statement: Insert, row: dict[str, Any]) -> None:
    """Add ``row`` to the rows of ``statement`` (a Core ``INSERT``, built once) that this
    transaction writes together, all of them in one statement (`_write_later`): before
    the ORM's next flush writes anything (so that the rows keep their order with those
    it adds: an answer's audit row before the alert it raised), and at the latest when
    the transaction commits. However the transaction ends otherwise (a rollback, even
    one that fails; the session closed), they are dropped with it.

    For the rows the answer path writes and nothing reads back in the transaction (an
    answer and its audit row): a group of updates sharing a transaction
    (`bot.app.TrialApplication._run_group`) writes its answers in one statement and
    their audit rows in another, instead of two statements an answer. A read of such a
    table before the commit must call `write_later_rows` first; nothing in a group does.
    The rows are held as given (a dict or list in them must not change before the
    commit), and a savepoint cannot hold or write them (its rollback would lose rows
    held before it): both refuse."""
    if session.in_nested_transaction():
        raise RuntimeError("rows cannot be held inside a savepoint")
    if not session.in_transaction():
        session.sync_session.begin()  # no I/O yet; however it ends, the rows end with it
    session.info.setdefault(_LATER, {}).setdefault(statement, []).append(row)


async def write_later_rows(session: AsyncSession) -> None:
    """Write the rows `insert_later` holds now (before a statement that must come after
    them: one that returns an id of the same table, or reads it)."""
    if session.info.get(_LATER):
        await session.run_sync(_write_later)


def _write_later(session: Session, *_args: Any) -> None:
    if not session.info.get(_LATER):
        return
    if session.in_nested_transaction():
        raise RuntimeError("rows held to the commit cannot be written inside a savepoint")
    pending: dict[Insert, list[dict[str, Any]]] = session.info.pop(_LATER)
    connection = session.connection()
    for statement, rows in pending.items():
        connection.execute(statement, rows)


def _drop_later(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(_LATER, None)


event.listen(Session, "before_flush", _write_later)
event.listen(Session, "before_commit", _write_later)
event.listen(Session, "after_transaction_end", _drop_later)


def _new_rows(
    session: AsyncSession,
    model: Any,
    rows: Sequence[dict[str, Any]],
    unique: Sequence[str],
    *,
    returning: bool,
    rows_at_once: int = 0,
) -> tuple[TextClause, list[dict[str, Any]]]:
    """The cached statement for ``rows``' columns and the rows with the defaults filled in
    (``rows_at_once``: see `_insert_new_statement`)."""
    table = model.__table__
    defaults = _python_defaults(table)
    keys = tuple(dict.fromkeys([*rows[0], *defaults]))
    statement = _insert_new_statement(
        session.bind.dialect, table, keys, tuple(unique), returning=returning, rows_at_once=rows_at_once
    )
    return statement, [{**{k: make() for k, make in defaults.items() if k not in row}, **row} for row in rows]


@functools.cache
def _python_defaults(table: Table) -> dict[str, Callable[[], Any]]:
    """The table's Python-side column defaults (what a Core INSERT fills in for a column
    not given), each as a function making the value."""
    found: dict[str, Callable[[], Any]] = {}
    for column in table.columns:
        default = column.default
        if isinstance(default, CallableColumnDefault):
            found[column.key] = functools.partial(default.arg, cast(Any, None))  # its wrapper takes a context
        elif isinstance(default, ScalarElementColumnDefault):
            found[column.key] = functools.partial(lambda value: value, default.arg)
        elif default is not None:
            raise TypeError(f"{table.name}.{column.key}: a default insert_new cannot fill in ({default!r})")
    return found


@functools.cache
def _insert_new_statement(
    dialect: Dialect,
    table: Table,
    keys: tuple[str, ...],
    unique: tuple[str, ...],
    *,
    returning: bool = False,
    rows_at_once: int = 0,
) -> TextClause:
    """The INSERT … ON CONFLICT DO NOTHING of these columns, as text with typed parameters
    (``returning``: with ``RETURNING 1``, a row for each row inserted). ``rows_at_once``
    N > 0: N rows in one ``VALUES`` list, their parameters numbered (``update_id_0``…),
    returning the first ``unique`` column of each row inserted (`claim_many`).

    SQLAlchemy 2.0 compiles a dialect's ``insert().on_conflict_do_nothing()`` anew on every
    execution (its ON CONFLICT clause has no cache key, so the statement is never cached):
    in a fan-out that was a compile per group of outcomes recorded, about a sixth of the
    dispatcher's CPU. A ``text()`` statement is compiled once and cached like any other;
    its parameters carry the columns' types, so values are converted as a Core INSERT
    converts them. The syntax is the same on SQLite (3.24 and later; RETURNING from 3.35)
    and PostgreSQL."""
    quote = dialect.identifier_preparer.quote
    columns = [table.c[key] for key in keys]
    suffixes = [f"_{i}" for i in range(rows_at_once)] if rows_at_once else [""]
    values = ", ".join(f"({', '.join(':' + c.key + suffix for c in columns)})" for suffix in suffixes)
    returned = quote(table.c[unique[0]].name) if rows_at_once else "1"
    sql = (
        f"INSERT INTO {dialect.identifier_preparer.format_table(table)} ({', '.join(quote(c.name) for c in columns)}) "
        f"VALUES {values} "
        f"ON CONFLICT ({', '.join(quote(table.c[key].name) for key in unique)}) DO NOTHING"
        f"{' RETURNING ' + returned if returning else ''}"
    )
    return text(sql).bindparams(*(bindparam(c.key + suffix, type_=c.type) for suffix in suffixes for c in columns))
