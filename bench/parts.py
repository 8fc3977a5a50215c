"""``python -m bench.parts [--db sqlite|postgresql] [-n N]``: what the parts of an answer's
transaction cost in CPU, each timed alone: the figures behind "What would close more"
in the README's benchmark section (issue 18). Not part of ``make bench``.

For each database, N transactions of each kind in a loop, on a migrated database with
one participant and one questionnaire session; CPU (``time.process_time``) per
transaction; each kind's figure is the median of ROUNDS rounds, the kinds taken in
turn within a round, so that the VM's drift falls on all of them alike:

- ``select``: a session, ``SELECT 1``, the commit;
- ``select x2``: the same with two statements;
- ``row``: a session, the questionnaire session's row read into an ORM object by its
  id, the commit;
- ``row + writes, ORM``: that, then the answer's row, its audit row and the session's
  new state, written as the answer path writes them (the ORM's flush at the commit);
- ``row + writes, Core``: the same three writes as Core statements.

Derived: a statement is ``select x2`` less ``select``; a transaction's own cost (the
session, a pooled connection, ``BEGIN``, the commit) is ``select`` less a statement."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import bindparam, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bench.common import databases
from bench.seed import same_minute_profiles, seed
from devtools.harness import DEFAULT_START
from domain import audit
from domain.content import load_content
from models import AuditEntry, Participant, QuestionnaireAnswer, QuestionnaireSession
from models.db import create_engine
from models.questionnaires import QuestionnaireStatus
from scheduler.calendar import to_local

ROUNDS = 5
N = 1_000

Kind = Callable[[AsyncSession, int], Awaitable[object]]


async def measure(url: str, n: int, rounds: int = ROUNDS) -> dict[str, float]:
    """CPU milliseconds per transaction of each kind (the median of ``rounds``), and the
    derived figures, on the database at ``url`` (migrated, empty)."""
    protocol = load_content().protocol
    local = to_local(DEFAULT_START, protocol.tz)
    await seed(url, 1, same_minute_profiles(local.date(), local.time()), protocol, DEFAULT_START, keep="none")
    engine = create_engine(url)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    now = DEFAULT_START
    try:
        async with sessions() as db:
            participant = (await db.scalars(select(Participant))).one()
            row = QuestionnaireSession(
                participant_id=participant.id,
                instrument_id=protocol.checkin.instrument,
                instrument_version="1",
                status=QuestionnaireStatus.IN_PROGRESS,
                origin="command",
                state={},
                started_at=now,
                updated_at=now,
            )
            db.add(row)
            await db.commit()
            participant_id, session_id = participant.id, row.id

        one = text("SELECT 1")
        answer_row = {
            "session_id": session_id,
            "item_id": "q1",
            "value": "no",
            "skipped": False,
            "answered_at": now,
            "instrument_version": "1",
        }
        audit_row = {
            "at": now,
            "actor": "participant:BSM-001",
            "action": "questionnaire.answer",
            "participant_id": participant_id,
            "after": {"session": session_id, "item": "q1", "value": "no"},
        }
        by_id = select(QuestionnaireSession).where(QuestionnaireSession.id == bindparam("id"))
        insert_answer, insert_audit = insert(QuestionnaireAnswer), insert(AuditEntry)
        new_state = (
            update(QuestionnaireSession)
            .where(QuestionnaireSession.id == bindparam("session"))
            .values(state=bindparam("state"), triage=bindparam("triage"), updated_at=bindparam("at"))
        )

        async def one_select(db: AsyncSession, _i: int) -> None:
            await db.execute(one)

        async def two_selects(db: AsyncSession, _i: int) -> None:
            await db.execute(one)
            await db.execute(one)

        async def read_row(db: AsyncSession, _i: int) -> QuestionnaireSession | None:
            return await db.scalar(by_id, {"id": session_id})

        async def orm_writes(db: AsyncSession, i: int) -> None:
            found = await read_row(db, i)
            assert found is not None
            db.add(QuestionnaireAnswer(**answer_row))
            audit.record(db, **audit_row)
            found.state, found.triage, found.updated_at = {"n": i}, {"n": i}, now

        async def core_writes(db: AsyncSession, i: int) -> None:
            await read_row(db, i)
            connection = await db.connection()
            await connection.execute(insert_answer, answer_row)
            await connection.execute(insert_audit, audit_row)
            state = {"session": session_id, "state": {"n": i}, "triage": {"n": i}, "at": now}
            await connection.execute(new_state, state)

        kinds: dict[str, Kind] = {
            "select": one_select,
            "select x2": two_selects,
            "row": read_row,
            "row + writes, ORM": orm_writes,
            "row + writes, Core": core_writes,
        }

        async def run(kind: Kind, count: int) -> float:
            start = time.process_time()
            for i in range(count):
                async with sessions() as db:
                    await kind(db, i)
                    await db.commit()
            return (time.process_time() - start) / count * 1000

        for kind in kinds.values():  # warm up: statements compiled and cached, pool filled
            await run(kind, 50)
        taken: dict[str, list[float]] = {name: [] for name in kinds}
        for _ in range(rounds):
            for name, kind in kinds.items():
                taken[name].append(await run(kind, n))
    finally:
        await engine.dispose()
    figures = {name: statistics.median(values) for name, values in taken.items()}
    statement = figures["select x2"] - figures["select"]
    figures["a statement (derived)"] = statement
    figures["a transaction's own cost (derived)"] = figures["select"] - statement
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", action="append", choices=("sqlite", "postgresql"), help="only these databases")
    parser.add_argument("-n", type=int, default=N, help=f"transactions of each kind a round (default {N:,})")
    args = parser.parse_args(argv)
    with databases() as dbs:
        kinds = args.db or (["sqlite", "postgresql"] if dbs.postgres is not None else ["sqlite"])
        results: dict[str, dict[str, float]] = {}
        for kind in kinds:
            results[kind] = asyncio.run(_measure_fresh(dbs, kind, args.n))
    names = list(next(iter(results.values())))
    print(f"CPU ms a transaction, median of {ROUNDS} rounds of {args.n:,}:")
    print(f"| part | {' | '.join(results)} |")
    print(f"|---|{'---|' * len(results)}")
    for name in names:
        print(f"| {name} | {' | '.join(f'{results[kind][name]:.3f}' for kind in results)} |")
    return 0


async def _measure_fresh(dbs: Any, kind: str, n: int) -> dict[str, float]:
    async with dbs.fresh(kind) as url:
        return await measure(url, n)


if __name__ == "__main__":
    raise SystemExit(main())
