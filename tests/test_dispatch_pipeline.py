"""The dispatcher as a batched pipeline (issue 18): a batch is re-checked with a few
set-based statements, outcomes are group-committed, and the slots in flight follow the
round trip (DISPATCH_CONCURRENCY=0)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import event, func, select

from bot.dispatch import AUTO_MOST, auto_slots
from core.aio import GroupCommit
from core.clock import ManualClock
from devtools.botapi_server import BotAPIServer
from devtools.harness import BotHarness
from models import DoseLog, MessageStatus, ScheduledMessage
from tests.bothelpers import dose_reminders_per_chat, seed_due_reminders

REMINDERS = 120


@pytest.mark.parametrize(
    ("round_trip_ms", "slots"), [(0.5, 1), (20, 1), (33, 1), (40, 3), (80, 4), (150, 6), (2000, AUTO_MOST)]
)
def test_auto_slots_follow_the_round_trip(round_trip_ms: float, slots: int) -> None:
    """One slot while a round trip fits in Telegram's 1/30 s; enough to keep up with 30
    messages a second beyond that, plus one; never more than AUTO_MOST."""
    assert auto_slots(round_trip_ms / 1000) == slots


def test_auto_slots_count_the_recording_beyond_a_nearby_server() -> None:
    """Over a slow link a slot's cycle is the round trip and the outcome's transaction;
    on a nearby server one slot, however long recording takes."""
    assert auto_slots(0.080, 0.030) == 5
    assert auto_slots(0.020, 0.050) == 1


class _Statements:
    """Counts the statements the engine runs, and the executemany UPDATEs that mark rows sent."""

    def __init__(self) -> None:
        self.total = 0
        self.sent_groups = 0

    def __call__(
        self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> None:
        self.total += 1
        if statement.startswith("UPDATE scheduled_messages SET status") and "telegram_message_id" in statement:
            self.sent_groups += 1


@pytest.mark.parametrize("concurrency", [0, 8])
async def test_a_batch_costs_a_few_statements_and_outcomes_are_group_committed(
    server: BotAPIServer, db_url: str, clock: ManualClock, concurrency: int
) -> None:
    """120 reminders due: each sent once and recorded with its dose-log row; at the
    default on this nearby server (one slot) a reminder costs at most six statements
    (the per-row design cost about a dozen); with eight slots outcomes that come back
    together are stored together, in fewer transactions than there are reminders."""
    async with BotHarness(server, db_url, clock, overrides={"dispatch_concurrency": concurrency}) as bot:
        chats = await seed_due_reminders(bot, server, db_url, REMINDERS)
        assert bot.services is not None
        counted = _Statements()
        engine = bot.services.engine.sync_engine
        event.listen(engine, "before_cursor_execute", counted)
        try:
            await bot.tick()
        finally:
            event.remove(engine, "before_cursor_execute", counted)
        assert set(dose_reminders_per_chat(server, chats).values()) == {1}
        reminder = ScheduledMessage.kind == "dose_reminder"
        async with bot.services.sessions() as session:
            statuses = set(await session.scalars(select(ScheduledMessage.status).where(reminder)))
            logs = await session.scalar(select(func.count()).select_from(DoseLog))
        assert statuses == {MessageStatus.SENT} and logs == REMINDERS
        if concurrency == 0:
            assert counted.total <= 6 * REMINDERS, counted.total
        else:
            assert counted.sent_groups < REMINDERS, counted.sent_groups


async def test_group_commit_writes_what_arrived_meanwhile_together() -> None:
    """The shared group commit (reminder outcomes, questions' message ids): what arrives
    while a write runs goes in the next write, in order; a failed write fails every item
    of its group and only those; a writer cancelled mid-write does not leave the others
    waiting for ever."""
    written: list[list[int]] = []
    release = asyncio.Event()

    async def write(items: list[int]) -> None:
        written.append(list(items))
        if 1 in items:
            await release.wait()
        if 2 in items:
            raise ValueError("database away")

    group: GroupCommit[int] = GroupCommit(write)
    first = asyncio.create_task(group.add(1))
    await asyncio.sleep(0)
    later = [asyncio.create_task(group.add(i)) for i in (2, 3)]
    await asyncio.sleep(0)
    release.set()
    await first
    failed = await asyncio.gather(*later, return_exceptions=True)
    assert [type(f) for f in failed] == [ValueError, ValueError]
    await group.add(4)
    assert written == [[1], [2, 3], [4]]

    gates = {10: asyncio.Event(), 11: asyncio.Event()}

    async def blocking(items: list[int]) -> None:
        written.append(list(items))
        await gates[items[0]].wait()

    blocked: GroupCommit[int] = GroupCommit(blocking)
    holder = asyncio.create_task(blocked.add(10))
    await asyncio.sleep(0)
    writer, waiting = asyncio.create_task(blocked.add(11)), asyncio.create_task(blocked.add(12))
    gates[10].set()
    await holder
    for _ in range(20):
        await asyncio.sleep(0)
    assert written[-1] == [11, 12]  # the writer of 11 writes 12 too, and is cancelled meanwhile
    writer.cancel()
    (outcome,) = await asyncio.wait_for(asyncio.gather(waiting, return_exceptions=True), 2)
    assert isinstance(outcome, RuntimeError) and writer.cancelled()
