"""SQLAlchemy's aiosqlite driver, with one trip to SQLite's thread per statement.

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

It relies on two internals of aiosqlite (pinned below 0.23 in pyproject.toml):
``Connection._execute`` (queue a function to the connection's thread, as aiosqlite's own
methods do) and ``Connection._conn`` (the sqlite3 connection, looked up on the event
loop as aiosqlite's own ``cursor()`` does, and used only inside the thread).
`tests/test_sqlite_driver.py` fails if an upgrade moves either, or if a statement takes
more than one trip."""

from __future__ import annotations

import sqlite3
from collections import deque
from typing import Any, cast

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)

_Outcome = tuple[Any, list[Any] | None, int | None, int, bool]


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


class OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    """SQLAlchemy's buffered aiosqlite cursor, each statement in one trip."""

    __slots__ = ()

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        self._trip(operation, parameters, many=False)

    def executemany(self, operation: Any, seq_of_parameters: Any) -> Any:
        self._trip(operation, seq_of_parameters, many=True)

    def _trip(self, operation: Any, parameters: Any, *, many: bool) -> None:
        adapted = cast("OneTripConnection", self._adapt_connection)
        adapted.in_transaction = True  # until SQLite says otherwise (a failed statement too)
        try:
            sqlite = self._connection._conn  # closed: ValueError("no active connection"), mapped as before
            description, rows, lastrowid, rowcount, adapted.in_transaction = self.await_(
                self._connection._execute(_run, sqlite, operation, parameters, many)
            )
        except Exception as error:
            adapted._handle_exception(error)
        if description:
            self.description = description
            self.lastrowid = self.rowcount = -1
            self._rows = deque(rows or ())
        else:
            self.description = None
            self.lastrowid = lastrowid
            self.rowcount = rowcount


class OneTripConnection(AsyncAdapt_aiosqlite_connection):
    """SQLAlchemy's aiosqlite connection whose buffered cursors are `OneTripCursor`,
    and whose commit or rollback makes no trip when no transaction is open.

    The pool rolls back every connection it is given back (SQLAlchemy's reset on
    return), after the session's own commit: one more trip for every transaction, to
    roll back nothing. Whether a transaction is open is SQLite's answer after the last
    statement (`_run`); what this class cannot follow (a streamed result, the adapter's
    own ``execute``) counts as open. (Setting ``isolation_level`` opens nothing: to
    autocommit, sqlite3 commits first.)"""

    __slots__ = ("in_transaction",)

    def __init__(self, dbapi: Any, connection: Any) -> None:
        super().__init__(dbapi, connection)
        self.in_transaction = True

    def cursor(self, server_side: bool = False) -> AsyncAdapt_aiosqlite_cursor:
        if server_side:
            self.in_transaction = True
            return super().cursor(server_side=True)
        return OneTripCursor(self)

    def execute(self, *args: Any, **kw: Any) -> Any:
        self.in_transaction = True
        return super().execute(*args, **kw)

    def commit(self) -> None:
        if self.in_transaction:
            super().commit()
            self.in_transaction = False

    def rollback(self) -> None:
        if self.in_transaction:
            super().rollback()
            self.in_transaction = False


class OneTripDBAPI(AsyncAdapt_aiosqlite_dbapi):
    """The DBAPI module SQLAlchemy's aiosqlite dialect is given (``create_engine(module=…)``)."""

    def connect(self, *arg: Any, **kw: Any) -> OneTripConnection:
        adapted = super().connect(*arg, **kw)
        return OneTripConnection(self, adapted._connection)


def dbapi() -> OneTripDBAPI:
    """A new DBAPI module for one engine."""
    return OneTripDBAPI(aiosqlite, sqlite3)
