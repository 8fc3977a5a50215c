"""The dispatcher as a batched pipeline (issue 18): a batch is re-checked with a few
set-based statements, outcomes are group-committed, and the slots in flight follow the
round trip (DISPATCH_CONCURRENCY=0)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import event, func, select

from bot.dispatch import _Slots, auto_slots, most_slots
from core.aio import GroupCommit
from core.clock import ManualClock
from devtools.botapi_server import BotAPIServer
from devtools.harness import BotHarness
from models import DoseLog, MessageStatus, ScheduledMessage
from models.db import insert_new
from tests.bothelpers import dose_reminders_per_chat, seed_due_reminders

REMINDERS = 120


@pytest.mark.parametrize(
    ("round_trip_ms", "slots"), [(0.5, 1), (20, 1), (33, 1), (40, 3), (80, 4), (150, 6), (2000, 8)]
)
def test_auto_slots_follow_the_round_trip(round_trip_ms: float, slots: int) -> None:
    """At Telegram's free 30 a second: one slot while a round trip fits in 1/30 s; enough
    to keep up with 30 messages a second beyond that, plus one; never more than 8 (a
    quarter of a second's sending: the most a crash may repeat)."""
    assert auto_slots(round_trip_ms / 1000) == slots


def test_auto_slots_count_the_recording_in_a_slots_cycle() -> None:
    """A slot's cycle is the round trip and the outcome's transaction: one slot while the
    whole cycle fits in 1/30 s (a nearby server, a healthy database), more when the
    recording is what makes one slot too slow."""
    assert auto_slots(0.080, 0.030) == 5
    assert auto_slots(0.002, 0.010) == 1
    assert auto_slots(0.020, 0.013) == 1  # 33 ms: one slot still sends 30 a second
    assert auto_slots(0.020, 0.050) == 4  # a slow database: one slot would send 14 a second


@pytest.mark.parametrize(
    ("rate", "round_trip_ms", "record_ms", "slots"),
    [
        (1000, 0.5, 0, 1),  # one slot keeps up with 1,000 a second only when its cycle is under 1 ms
        (1000, 1, 3, 5),  # the local test server: 4 cycles' worth, plus one
        (1000, 80, 5, 64),  # Telegram over a real link: as many as the setting allows
        (100, 80, 20, 11),
        (30, 80, 20, 4),
        (1, 2000, 0, 1),
    ],
)
def test_at_a_paid_broadcast_rate_auto_slots_keep_up_with_that_rate(
    rate: int, round_trip_ms: float, record_ms: float, slots: int
) -> None:
    """TELEGRAM_SEND_RATE above the free 30: the slots fill a cycle at that rate."""
    assert auto_slots(round_trip_ms / 1000, record_ms / 1000, rate) == slots


@pytest.mark.parametrize(("rate", "most"), [(1, 1), (4, 1), (30, 8), (100, 25), (256, 64), (1000, 64)])
def test_a_crash_repeats_at_most_a_quarter_of_a_seconds_sending(rate: int, most: int) -> None:
    """However slow the link, DISPATCH_CONCURRENCY=0 opens no more slots than the rate
    sends in 0.25 s (and never more than the setting's own 64)."""
    assert most_slots(rate) == most
    assert auto_slots(10.0, 0.0, rate) == most


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
    of its group and only those; a caller cancelled while its group is written leaves the
    write, and the others of the group, alone."""
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
    assert written[-1] == [11, 12]  # 11 and 12 in one write
    writer.cancel()  # 11's caller leaves meanwhile (a shutdown): the write goes on
    gates[11].set()
    assert await asyncio.wait_for(waiting, 2) is None
    assert writer.cancelled() and written[-1] == [11, 12]


@pytest.mark.parametrize(("rate", "paid"), [(10, False), (30, False), (1000, True)])
async def test_reminders_go_as_paid_broadcasts_only_above_the_free_rate(
    server: BotAPIServer, db_url: str, clock: ManualClock, rate: int, paid: bool
) -> None:
    """TELEGRAM_SEND_RATE=1000: every reminder is sent with ``allow_paid_broadcast``, and
    the rate limiter lets 1,000 paid broadcasts a second through while ordinary messages
    keep Telegram's free 30; a reply to a participant is never a paid broadcast. At 30
    or less nothing is paid for, and the rate caps every message."""
    async with BotHarness(server, db_url, clock, overrides={"telegram_send_rate": rate}) as bot:
        chats = await seed_due_reminders(bot, server, db_url, 20)
        await bot.tick()
        assert set(dose_reminders_per_chat(server, chats).values()) == {1}
        reminders = [r for r in server.requests if r.method == "sendMessage" and r.params["chat_id"] in chats]
        assert len(reminders) == 20
        assert {bool(r.params.get("allow_paid_broadcast")) for r in reminders} == {paid}
        mark = len(list(server.requests))
        asked = await server.user(chats[0]).send("/help")
        assert await server.wait_for(chats[0], since=asked)
        replies = [r for r in list(server.requests)[mark:] if r.method == "sendMessage"]
        assert replies and not any(r.params.get("allow_paid_broadcast") for r in replies)
        assert bot.app is not None
        limiter: Any = bot.app.bot.rate_limiter  # PTB's AIORateLimiter: ordinary messages, paid broadcasts
        assert (limiter._base_limiter.max_rate, limiter._apb_limiter.max_rate) == (min(rate, 30), rate)


async def test_a_refused_paid_broadcast_goes_again_as_an_ordinary_message(
    server: BotAPIServer, db_url: str, clock: ManualClock
) -> None:
    """Telegram refuses a paid broadcast (the bot not allowed to, its Stars spent): the
    reminder is sent again at once without the flag, not marked failed and lost. A chat
    that refuses the ordinary message too is marked failed, after two tries only."""
    async with BotHarness(server, db_url, clock, overrides={"telegram_send_rate": 1000}) as bot:
        chats = await seed_due_reminders(bot, server, db_url, 3)
        refused, gone = chats[0], chats[1]
        server.faults.add("sendMessage", "error", chat_id=refused, description="Bad Request: not enough Stars")
        server.faults.add("sendMessage", "error", chat_id=gone, times=2, description="Bad Request: chat not found")
        await bot.tick()
        assert dose_reminders_per_chat(server, chats) == {refused: 1, gone: 0, chats[2]: 1}
        tries = [r for r in server.requests if r.method == "sendMessage" and r.params["chat_id"] == refused]
        assert [bool(r.params.get("allow_paid_broadcast")) for r in tries] == [True, False]
        assert len([r for r in server.requests if r.method == "sendMessage" and r.params["chat_id"] == gone]) == 2
        assert bot.services is not None
        async with bot.services.sessions() as session:
            statuses = sorted(
                await session.scalars(select(ScheduledMessage.status).where(ScheduledMessage.kind == "dose_reminder"))
            )
        assert statuses == sorted([MessageStatus.SENT, MessageStatus.SENT, MessageStatus.FAILED])


async def test_insert_new_fills_defaults_keeps_existing_rows_and_is_compiled_once(
    server: BotAPIServer, db_url: str, clock: ManualClock
) -> None:
    """The outcome's INSERT … ON CONFLICT DO NOTHING: a row already there keeps its values
    (a send repeated after a crash changes nothing), a column left out gets its default
    as a Core INSERT would give it, and the second execution is served from SQLAlchemy's
    statement cache (the dialect's on_conflict_do_nothing() is compiled on every call)."""
    async with BotHarness(server, db_url, clock) as bot:
        await seed_due_reminders(bot, server, db_url, 1)
        assert bot.services is not None
        engine = bot.services.engine
        hits: list[object] = []

        def on_execute(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
            if statement.startswith("INSERT INTO dose_log"):
                hits.append(context.cache_hit)

        event.listen(engine.sync_engine, "before_cursor_execute", on_execute)
        now = clock.now()
        first = {
            "participant_id": 1,
            "reminder_key": "dose:1",
            "regimen": "A",
            "drug": "baricitinib",
            "dose_date": now.date(),
            "planned_time": now.time().replace(microsecond=0),
            "reminded_at": now,
        }
        unique = ("participant_id", "reminder_key")
        try:
            async with bot.services.sessions() as session:
                await insert_new(session, DoseLog, [first, {**first, "reminder_key": "dose:2"}], unique)
                await session.commit()
            async with bot.services.sessions() as session:
                again = {**first, "drug": "changed"}
                await insert_new(session, DoseLog, [again, {**first, "reminder_key": "dose:3"}], unique)
                await session.commit()
        finally:
            event.remove(engine.sync_engine, "before_cursor_execute", on_execute)
        async with bot.services.sessions() as session:
            logs = {log.reminder_key: log for log in await session.scalars(select(DoseLog))}
        assert sorted(logs) == ["dose:1", "dose:2", "dose:3"]
        assert logs["dose:1"].drug == "baricitinib"
        assert {log.later_count for log in logs.values()} == {0}
        assert {log.reminded_at for log in logs.values()} == {now}
        assert hits[-1] is engine.dialect.CACHE_HIT


async def test_slots_are_served_in_turn_within_the_limit_and_a_raised_limit_lets_more_in() -> None:
    """Six chains on two slots: at most two hold a slot, they get them in the order they
    asked, and a limit raised meanwhile lets more in at the next slot given back."""
    limit = [2]
    slots = _Slots(lambda: limit[0])
    order: list[int] = []
    holding = 0
    most = 0
    release: dict[int, asyncio.Event] = {i: asyncio.Event() for i in range(6)}

    async def chain(i: int) -> None:
        nonlocal holding, most
        await slots.take()
        order.append(i)
        holding += 1
        most = max(most, holding)
        await release[i].wait()
        holding -= 1
        slots.give_back()

    tasks = [asyncio.create_task(chain(i)) for i in range(6)]
    await asyncio.sleep(0)
    assert order == [0, 1]
    release[0].set()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert order == [0, 1, 2]
    limit[0] = 4
    release[1].set()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert order == [0, 1, 2, 3, 4, 5]
    for event_ in release.values():
        event_.set()
    await asyncio.gather(*tasks)
    assert most == 4


async def test_a_chain_cancelled_while_waiting_or_just_granted_does_not_keep_a_slot() -> None:
    """A waiter cancelled before its turn is skipped; one cancelled after a slot was
    handed to it gives the slot on, so no slot is lost to a cancelled send."""
    slots = _Slots(lambda: 1)
    await slots.take()
    skipped = asyncio.create_task(slots.take())
    granted = asyncio.create_task(slots.take())
    last = asyncio.create_task(slots.take())
    await asyncio.sleep(0)
    skipped.cancel()
    await asyncio.sleep(0)
    slots.give_back()  # to `granted`, which is cancelled before it runs
    granted.cancel()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert skipped.cancelled() and granted.cancelled()
    assert last.done() and not last.cancelled()
