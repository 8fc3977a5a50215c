"""SQLAlchemy's aiosqlite driver, with at most one trip to SQLite's thread a statement.

aiosqlite runs SQLite in a thread of its own; every call is a trip there and back
(queued to the thread, run, its result handed back to the event loop, which resumes
the caller at its next turn). SQLAlchemy's adapter (2.0,
`sqlalchemy.dialects.sqlite.aiosqlite`) makes three or four trips for one statement:
open a cursor, execute, fetch the rows (if it returns any), close the cursor. SQLite
has one writer at a time (`bot.services.Services.one_writer`), so the trips of a
writing transaction follow one another while every other writer waits, and each trip waits for a turn of an
event loop that is busy with other chats' replies: in a burst of check-in answers
SQLite's thread was idle 97 % of the time and the event loop waited on it a quarter of
the burst. Here one statement is one trip: the four steps run together in SQLite's
thread (`_run`). Everything else is SQLAlchemy's adapter unchanged: the errors it
raises (a closed connection too), the transaction, commit and rollback, server-side
cursors (streamed results) and the connection's thread.

Inside a writing transaction a statement makes no trip at all: it runs on the event loop
(`OneTripCursor._trip`). Once a transaction has written, its connection holds SQLite's
write lock, and in WAL mode readers never block it: its statements wait for nobody,
while every other writer waits for its commit. A trip there only stretched the time the
lock is held by a turn of a busy event loop a statement (and a hand-over of the GIL).
To the thread still go: reads before the first write; the first write (it may wait up
to the busy timeout for another process's lock); the commit and anything but a plain
SELECT, INSERT, UPDATE, DELETE, REPLACE or WITH (a savepoint, a pragma: the commit may
checkpoint the WAL to disk); every ``executemany``; everything on a connection not in
WAL mode; and the rest of a transaction once its statements on the loop took
`INLINE_BUDGET_S` together. An answer's transaction is two trips: its first write and
its commit. (A first write to a TEMP table or an attached database would take no lock
on the main file and mislead this; the bot writes to neither.)

It relies on two internals of aiosqlite (pinned below 0.23 in pyproject.toml):
``Connection._execute`` (queue a function to the connection's thread, as aiosqlite's own
methods do) and ``Connection._conn`` (the sqlite3 connection, looked up on the event
loop as aiosqlite's own ``cursor()`` does; opened with ``check_same_thread=False``, and
used by one side at a time, as every trip is awaited before the next statement).
`tests/test_sqlite_driver.py` fails if an upgrade moves either, or if a statement takes
more trips than these."""

from __future__ import annotations

import sqlite3
import time
from collections import deque
from collections.abc import Callable
from typing import Any, cast

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)

_Outcome = tuple[Any, list[Any] | None, int | None, int, bool]
INLINE_BUDGET_S = 0.01
"""Time a transaction's statements may take on the event loop, together; the rest of the
transaction goes to SQLite's thread (a large read or many writes after the first write
hold up the event loop by about this much at most)."""
_INLINE = ("SELECT", "INSERT", "UPDATE", "DELETE", "REPLACE", "WITH")
"""What may run on the event loop while the write lock is held."""
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")
"""What a statement starts with when SQLite's implicit BEGIN before it takes the write
lock (sqlite3 opens a transaction only before these; an explicit ``BEGIN`` takes none)."""


def _run(connection: sqlite3.Connection, operation: str, parameters: Any, many: bool) -> _Outcome:
    """In SQLite's thread: the statement, its description, its rows (all of them: the
    adapter's cursor is buffered), the last row id, the row count, and whether a
    transaction is open after it. ``many`` (executemany) has no description and no rows,
    as in SQLAlchemy's adapter."""
    cursor = connection.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
            return None, None, cursor.lastrowid, cursor.rowcount, connection.in_transaction
        if parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else None
        return description, rows, cursor.lastrowid, cursor.rowcount, connection.in_transaction
    finally:
        cursor.close()


async def _at_once(connection: sqlite3.Connection, operation: str, parameters: Any, many: bool) -> _Outcome:
    """`_run` on the event loop, as a coroutine that never suspends: SQLAlchemy's
    ``greenlet_spawn`` insists that a statement awaits something."""
    return _run(connection, operation, parameters, many)


class OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    """SQLAlchemy's buffered aiosqlite cursor, each statement in at most one trip."""

    __slots__ = ()

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        self._trip(operation, parameters, many=False)

    def executemany(self, operation: Any, seq_of_parameters: Any) -> Any:
        self._trip(operation, seq_of_parameters, many=True)

    def _trip(self, operation: Any, parameters: Any, *, many: bool) -> None:
        adapted = cast("OneTripConnection", self._adapt_connection)
        kind = str(operation).lstrip()[:7].upper()
        held = adapted.writing
        inline = (
            held
            and adapted.wal
            and not many
            and adapted.inline_left > 0
            and kind.startswith(_INLINE)
            and self._connection._running
        )
        adapted.untracked()  # until SQLite says otherwise after the statement (a failed one too)
        try:
            sqlite = self._connection._conn  # closed: ValueError("no active connection"), mapped as before
            if inline:  # this connection holds the write lock: nothing to wait for
                started = time.perf_counter()
                outcome = self.await_(_at_once(sqlite, operation, parameters, many))
                adapted.inline_left -= time.perf_counter() - started
            else:
                outcome = self.await_(self._connection._execute(_run, sqlite, operation, parameters, many))
            description, rows, lastrowid, rowcount, adapted.in_transaction = outcome
        except Exception as error:
            adapted._handle_exception(error)
        if adapted.in_transaction:
            adapted.writing = held or kind.startswith(_WRITES)
        else:
            adapted.ended()  # a COMMIT or ROLLBACK sent as a statement
        if description:
            self.description = description
            self.lastrowid = self.rowcount = -1
            self._rows = deque(rows or ())
        else:
            self.description = None
            self.lastrowid = cast(int, lastrowid)  # sqlite3 says None before any insert, as the stock adapter passes on
            self.rowcount = rowcount


class OneTripConnection(AsyncAdapt_aiosqlite_connection):
    """SQLAlchemy's aiosqlite connection whose buffered cursors are `OneTripCursor`,
    and whose commit or rollback makes no trip when no transaction is open.

    The pool rolls back every connection it is given back (SQLAlchemy's reset on
    return), after the session's own commit: one more trip for every transaction, to
    roll back nothing. Whether a transaction is open is SQLite's answer after the last
    statement (`_run`); what this class cannot follow (a streamed result, the adapter's
    own ``execute``) counts as open. (Setting ``isolation_level`` opens nothing: to
    autocommit, sqlite3 commits first.)

    ``writing``: SQLite said a transaction is open after a statement that writes (a bare
    ``BEGIN`` or a savepoint takes no lock), so this connection holds the write lock;
    cleared by the commit, the rollback, an error, a streamed result. ``inline_left``:
    what is left of the transaction's `INLINE_BUDGET_S`. ``wal``: the connection's
    journal is a WAL (set by `models.db.create_engine` from ``PRAGMA journal_mode``);
    without one nothing runs on the event loop."""

    __slots__ = ("in_transaction", "inline_left", "wal", "writing")

    def __init__(self, dbapi: Any, connection: Any) -> None:
        super().__init__(dbapi, connection)
        self.in_transaction = True
        self.writing = False
        self.inline_left = INLINE_BUDGET_S
        self.wal = False

    def cursor(self, server_side: bool = False) -> AsyncAdapt_aiosqlite_cursor:
        if server_side:
            self.untracked()
            return super().cursor(server_side=True)
        return OneTripCursor(self)

    def execute(self, *args: Any, **kw: Any) -> Any:
        self.untracked()
        return super().execute(*args, **kw)

    def commit(self) -> None:
        self._end(super().commit)

    def rollback(self) -> None:
        self._end(super().rollback)

    def _end(self, finish: Callable[[], None]) -> None:
        """Commit or roll back (``finish``), with a trip only when a transaction is open."""
        self.ended()
        if self.in_transaction:
            finish()
            self.in_transaction = False

    def untracked(self) -> None:
        """What follows is not seen statement by statement: a transaction counts as open,
        and no write lock as known to be held."""
        self.in_transaction = True
        self.writing = False

    def ended(self) -> None:
        """The transaction is over: no lock held, the next one's budget whole."""
        self.writing = False
        self.inline_left = INLINE_BUDGET_S


class OneTripDBAPI(AsyncAdapt_aiosqlite_dbapi):
    """The DBAPI module SQLAlchemy's aiosqlite dialect is given (``create_engine(module=…)``)."""

    def connect(self, *arg: Any, **kw: Any) -> OneTripConnection:
        kw["check_same_thread"] = False  # a writing transaction's statements run on the event loop
        adapted = super().connect(*arg, **kw)
        return OneTripConnection(self, adapted._connection)


def dbapi() -> OneTripDBAPI:
    """A new DBAPI module for one engine."""
    return OneTripDBAPI(aiosqlite, sqlite3)
