"""The audit table is append-only (triggers on both databases) and tamper-evident
(a hash chain the verifier walks)."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.exc import DBAPIError

from devtools.botapi_server import BotAPIServer
from devtools.harness import BotHarness
from domain import audit
from domain.audit_chain import seal, verify
from models import AuditEntry
from tests.bothelpers import admin_says, enroll, link


async def some_history(server: BotAPIServer) -> None:
    code = await enroll(server, "BSM-040 B 2026-10-25 bn fri")
    await link(server, server.user(4040), code)
    await admin_says(server, "/withdraw BSM-040 test", "withdrawn")


async def test_sealing_chains_every_row_and_verifies(bot: BotHarness, server: BotAPIServer) -> None:
    await some_history(server)
    assert bot.services is not None
    async with bot.services.sessions() as session:
        total = await session.scalar(select(func.count()).select_from(AuditEntry))
        assert total and await seal(session) == total
        assert await seal(session) == 0  # idempotent
        report = await verify(session)
    assert report.ok, report.problems
    assert report.sealed == total and report.unsealed == 0 and report.head_seq == total


@pytest.mark.parametrize(
    "statement",
    [
        lambda: update(AuditEntry).values(action="edited"),
        lambda: update(AuditEntry).values(detail="quietly changed"),
        lambda: delete(AuditEntry),
    ],
    ids=["update-action", "update-detail", "delete"],
)
async def test_the_database_refuses_to_change_or_delete_audit_rows(
    bot: BotHarness, server: BotAPIServer, statement: object
) -> None:
    await some_history(server)
    assert bot.services is not None
    for sealed_first in (False, True):
        async with bot.services.sessions() as session:
            if sealed_first:
                await seal(session)
            with pytest.raises(DBAPIError, match="append-only"):
                await session.execute(statement())  # type: ignore[operator]
            await session.rollback()
    async with bot.services.sessions() as session:
        assert (await verify(session)).ok


async def test_an_edit_behind_the_triggers_back_is_detected(bot: BotHarness, server: BotAPIServer) -> None:
    await some_history(server)
    assert bot.services is not None
    async with bot.services.sessions() as session:
        await seal(session)
        victim = await session.scalar(select(AuditEntry).order_by(AuditEntry.id).offset(1).limit(1))
        assert victim is not None
        # What a superuser or a restored, edited backup could do: bypass the triggers.
        if session.bind.dialect.name == "postgresql":
            await session.execute(text("ALTER TABLE audit_log DISABLE TRIGGER USER"))
        else:
            await session.execute(text("DROP TRIGGER audit_log_no_update"))
        await session.execute(update(AuditEntry).where(AuditEntry.id == victim.id).values(actor="admin:someone-else"))
        await session.commit()
        report = await verify(session)
    assert not report.ok
    assert any(f"audit id {victim.id}" in p and "changed" in p for p in report.problems)


async def test_a_row_written_later_is_the_row_record_adds_and_keeps_the_order(
    bot: BotHarness, server: BotAPIServer
) -> None:
    """`audit.write` (a Core INSERT held to the flush or commit, the answer path's) stores
    what `audit.record` (the ORM's, at the flush) stores, the labels cut alike; a row
    `record` added before it, not yet written, goes in first, and one added after it
    goes in after: the table keeps the order things happened in (without `write`'s
    flush the held row would take the lower id; without the held rows written before
    the ORM's flush, the last row would). All seal."""
    await some_history(server)
    assert bot.services is not None
    at = bot.clock.now()
    long_actor = "cli:" + "x" * 80
    async with bot.services.sessions() as session:
        audit.record(session, at=at, actor=long_actor, action="test.first", detail="added")
        await audit.write(session, at=at, actor=long_actor, action="test.second", after={"value": "no"})
        audit.record(session, at=at, actor=long_actor, action="test.third")
        await session.commit()
    async with bot.services.sessions() as session:
        rows = (await session.scalars(select(AuditEntry).where(AuditEntry.action.like("test.%")))).all()
        in_order = [row.action for row in sorted(rows, key=lambda row: row.id)]
        assert in_order == ["test.first", "test.second", "test.third"]
        assert {row.actor for row in rows} == {long_actor[:64]}
        second = next(row for row in rows if row.action == "test.second")
        assert second.after == {"value": "no"} and second.before is None and second.detail is None
        assert second.participant_id is None and second.at == at
        await seal(session)
        assert (await verify(session)).ok
