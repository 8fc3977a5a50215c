"""The dispatcher under trouble: Telegram errors, a blocked participant, downtime, a
crash between claim and send, and two bot processes on one PostgreSQL database."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import create_async_engine

from bot.app import build_application
from bot.dispatch import claim, deliver_batch
from bot.jobs import run_all
from bot.services import build_services
from core.clock import ManualClock
from devtools.botapi_server import BotAPIServer, SimUser
from devtools.harness import BotHarness
from models import (
    Alert,
    AlertLevel,
    MessageStatus,
    ParticipantReach,
    QuestionnaireSession,
    QuestionnaireStatus,
    ScheduledMessage,
)
from scheduler import outbox
from tests.bothelpers import admin_says, dose_reminders_per_chat, enroll, eventually, link, seed_due_reminders
from tests.conftest import Figures
from tests.schedule_helpers import dhaka, reminders, rows


async def arm_a(server: BotAPIServer, study_id: str, user_id: int) -> SimUser:
    code = await enroll(server, f"{study_id} A 2026-10-25 en")
    user = server.user(user_id, "P", language_code="en")
    await link(server, user, code, "English")
    return user


def dose_reminders(server: BotAPIServer, chat_id: int, day: str | None = None) -> list[str]:
    return [
        data
        for m in reminders(server, chat_id)
        for row in m.buttons
        for _, data in row
        if data and data.startswith("dose:") and data.endswith(":taken")
    ]


@pytest.mark.parametrize("fault", ["500", "502", "timeout", "close", "429"])
async def test_telegram_errors_during_dispatch_end_in_exactly_one_message(
    bot: BotHarness, server: BotAPIServer, fault: str, figures: Figures
) -> None:
    await arm_a(server, "BSM-010", 1010)
    bot.clock.set(dhaka(2026, 10, 26, 8, 59))
    await bot.tick()  # the enrolment day's rows are stale by now
    bot.clock.set(dhaka(2026, 10, 26, 9))
    before = len(dose_reminders(server, 1010))
    server.faults.add("sendMessage", fault, chat_id=1010, delay=0.2, retry_after=1)
    await bot.tick()
    if fault != "429":  # AIORateLimiter waits out one RetryAfter itself and sends
        assert len(dose_reminders(server, 1010)) == before
        (row,) = [r for r in await rows(bot, "BSM-010") if r.key == "dose:baricitinib:2026-10-26"]
        assert row.status is MessageStatus.PLANNED and row.attempts == 1 and row.last_error
        assert row.next_attempt_at > bot.clock.now()  # back-off, not a hot loop
        await bot.tick()  # not yet due again: nothing
        assert len(dose_reminders(server, 1010)) == before
        bot.clock.advance(timedelta(seconds=30))
        await bot.tick()
    assert len(dose_reminders(server, 1010)) == before + 1
    (row,) = [r for r in await rows(bot, "BSM-010") if r.key == "dose:baricitinib:2026-10-26"]
    assert row.status is MessageStatus.SENT and row.telegram_message_id is not None
    bot.clock.advance(timedelta(minutes=5))
    await bot.tick()
    assert len(dose_reminders(server, 1010)) == before + 1  # never twice
    figures.add("Bot API faults injected into reminder dispatch (500, 502, timeout, closed, 429)")


async def test_a_blocked_participant_is_unreachable_and_the_coordinators_are_told_once(
    bot: BotHarness, server: BotAPIServer
) -> None:
    user = await arm_a(server, "BSM-011", 1011)
    user.block_bot(notify=False)
    for day in (26, 27):
        bot.clock.set(dhaka(2026, 10, day, 9))
        await bot.tick()
    assert bot.services is not None
    async with bot.services.sessions() as session:
        notices = list(await session.scalars(select(Alert).where(Alert.kind == "unreachable")))
        reach = await session.scalar(select(ParticipantReach))
    assert len(notices) == 1 and notices[0].level is AlertLevel.INFO
    assert "BSM-011" in notices[0].summary
    assert reach is not None and reach.unreachable_since == dhaka(2026, 10, 26, 9)
    failed = [r for r in await rows(bot, "BSM-011") if r.status is MessageStatus.FAILED]
    assert {r.key for r in failed} == {"dose:baricitinib:2026-10-26", "dose:baricitinib:2026-10-27"}
    status = await admin_says(server, "/status BSM-011", "Open alerts")
    assert "Unreachable on Telegram since 2026-10-26 09:00" in status.content

    user.unblock_bot(notify=False)
    bot.clock.set(dhaka(2026, 10, 28, 9))
    await bot.tick()
    assert len(dose_reminders(server, 1011)) == 1
    async with bot.services.sessions() as session:
        reach = await session.scalar(select(ParticipantReach))
    assert reach is not None and reach.unreachable_since is None


async def test_reminders_due_during_downtime_are_sent_while_useful_and_skipped_when_stale(
    bot: BotHarness, server: BotAPIServer
) -> None:
    await arm_a(server, "BSM-012", 1012)
    bot.clock.set(dhaka(2026, 10, 26, 10, 30))  # the bot was down 09:00-10:30
    await bot.tick()
    (late,) = [r for r in await rows(bot, "BSM-012") if r.key == "dose:baricitinib:2026-10-26"]
    assert late.status is MessageStatus.SENT and late.sent_at == dhaka(2026, 10, 26, 10, 30)
    assert len(dose_reminders(server, 1012)) == 1

    bot.clock.set(dhaka(2026, 10, 27, 12, 30))  # down again, now 3.5 h past the 09:00 reminder
    await bot.tick()
    (stale,) = [r for r in await rows(bot, "BSM-012") if r.key == "dose:baricitinib:2026-10-27"]
    assert stale.status is MessageStatus.SKIPPED and stale.last_error == "stale"
    assert len(dose_reminders(server, 1012)) == 1  # no late dose reminder
    # ... and never a day late: the next morning brings only that day's reminder
    bot.clock.set(dhaka(2026, 10, 28, 9))
    await bot.tick()
    assert len(dose_reminders(server, 1012)) == 2
    (today,) = [r for r in await rows(bot, "BSM-012") if r.key == "dose:baricitinib:2026-10-28"]
    assert today.status is MessageStatus.SENT and "baricitinib" in reminders(server, 1012)[-1].content


async def test_a_crash_between_claim_and_send_loses_nothing_and_sends_once(
    bot: BotHarness, server: BotAPIServer
) -> None:
    await arm_a(server, "BSM-013", 1013)
    bot.clock.set(dhaka(2026, 10, 26, 9))
    await bot.tick()
    base = len(dose_reminders(server, 1013))
    bot.clock.set(dhaka(2026, 10, 27, 9))
    assert bot.app is not None
    claimed = await claim(bot.app, bot.clock.now(), "crashed0process0")  # claimed, then the process died
    assert claimed
    await bot.restart()
    await bot.tick()  # the claim's lease still holds: nobody sends it yet
    assert len(dose_reminders(server, 1013)) == base
    bot.clock.advance(timedelta(minutes=6))  # lease expired: picked up again, sent once
    await bot.tick()
    await bot.tick()
    assert len(dose_reminders(server, 1013)) == base + 1
    (row,) = [r for r in await rows(bot, "BSM-013") if r.key == "dose:baricitinib:2026-10-27"]
    assert row.status is MessageStatus.SENT


async def test_a_row_taken_over_between_claim_and_re_check_holds_back_none_of_its_batch(
    bot: BotHarness, server: BotAPIServer
) -> None:
    """Two dose reminders claimed in one batch; the first passes to another process before
    the re-check (its lease ran out): it is left to that process, and the second is still
    sent now, not held until its own lease runs out."""
    await arm_a(server, "BSM-013", 1013)
    await arm_a(server, "BSM-014", 1014)
    bot.clock.set(dhaka(2026, 10, 26, 8, 59))
    await bot.tick()  # the enrolment day's rows are stale by now
    now = dhaka(2026, 10, 26, 9)
    assert bot.app is not None and bot.services is not None
    claimed = await claim(bot.app, now, "this0process0000")
    first, second = (row_id for row_id, _participant in claimed)
    async with bot.services.sessions() as session:
        taken = await session.get(ScheduledMessage, first)
        assert taken is not None
        taken.claim_token = "other0process000"
        await session.commit()
    await deliver_batch(bot.app, [first, second], "this0process0000", now)
    stored = {r.id: r for r in await rows(bot)}
    assert stored[second].status is MessageStatus.SENT
    assert stored[first].status is MessageStatus.SENDING and stored[first].claim_token == "other0process000"
    assert len(dose_reminders(server, 1013)) + len(dose_reminders(server, 1014)) == 1


async def test_sends_recorded_together_keep_each_its_own_message_id(bot: BotHarness, server: BotAPIServer) -> None:
    """Outcomes grouped into one write are recorded in one UPDATE with a CASE on the row
    id: each row keeps the id of the message Telegram gave its own send, never another's."""
    await arm_a(server, "BSM-015", 1015)
    await arm_a(server, "BSM-016", 1016)
    bot.clock.set(dhaka(2026, 10, 26, 8, 59))
    await bot.tick()  # the enrolment day's rows are stale by now
    now = dhaka(2026, 10, 26, 9)
    assert bot.app is not None and bot.services is not None
    first, second = (row_id for row_id, _participant in await claim(bot.app, now, "this0process0000"))
    async with bot.services.sessions() as session:
        marked = await outbox.mark_sent(
            outbox.REMINDERS, session, [(first, 501), (second, 502)], "this0process0000", now
        )
        await session.commit()
    assert marked == {first, second}
    stored = {r.id: r for r in await rows(bot)}
    assert (stored[first].telegram_message_id, stored[second].telegram_message_id) == (501, 502)
    assert stored[first].status is stored[second].status is MessageStatus.SENT


async def test_two_bot_processes_on_one_postgres_send_each_row_exactly_once(
    bot: BotHarness, server: BotAPIServer, db_url: str
) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("several processes share the work on PostgreSQL (SKIP LOCKED); SQLite has one writer")
    chats = list(range(1020, 1030))
    for i, chat in enumerate(chats):
        await arm_a(server, f"BSM-{20 + i:03d}", chat)
    services = build_services(bot.settings(), bot.clock)
    second = build_application(services)
    await second.initialize()
    try:
        assert bot.app is not None
        for day in range(26, 31):
            for hour in (9, 11):  # the reminders, then the unanswered ones' follow-ups
                bot.clock.set(dhaka(2026, 10, day, hour))
                beats = await asyncio.gather(run_all(bot.app), run_all(second), run_all(bot.app), run_all(second))
                assert beats == [{}, {}, {}, {}]  # no tick failed (a crash would also send nothing)
    finally:
        await second.shutdown()
        await services.engine.dispose()
    for chat in chats:
        got = reminders(server, chat)
        assert len(got) == 10, chat  # 5 days × (reminder + follow-up), none twice
        assert len({m.content + str(m.buttons) for m in got}) == 10
    stored = await rows(bot)
    sent = [r for r in stored if r.status is MessageStatus.SENT and r.kind in ("dose_reminder", "dose_followup")]
    assert len(sent) == 100 and len({(r.participant_id, r.telegram_message_id) for r in sent}) == 100


async def test_a_claim_taken_over_while_a_failed_send_is_in_flight_is_left_to_its_new_holder(
    bot: BotHarness, server: BotAPIServer, db_url: str
) -> None:
    """PostgreSQL: a send held past its lease while another process's claim takes the row
    over (that transaction still open when this process records the failure). Recording
    the failure waits for that claim (the outcome locks the row, FOR UPDATE), then sees
    the row is no longer this claim's and leaves it alone. Without the lock it would read
    the row as still its own and overwrite the new claim with a retry, so the message
    could go twice."""
    if not db_url.startswith("postgresql"):
        pytest.skip("a row lock between processes: SQLite has one writer")
    await arm_a(server, "BSM-016", 1016)
    bot.clock.set(dhaka(2026, 10, 26, 8, 59))
    await bot.tick()  # the enrolment day's rows are stale by now
    bot.clock.set(dhaka(2026, 10, 26, 9))
    released = asyncio.Event()
    server.faults.add("sendMessage", "timeout", chat_id=1016, delay=30, until=released)
    tick = asyncio.create_task(bot.tick(may_fail=True))
    other = create_async_engine(db_url)
    try:

        async def in_flight() -> bool:
            return any(r.method == "sendMessage" and r.fault == "timeout" for r in server.requests)

        await eventually(in_flight, 10, "the reminder's send held by the server")
        (row,) = [r for r in await rows(bot, "BSM-016") if r.key == "dose:baricitinib:2026-10-26"]
        assert row.status is MessageStatus.SENDING and row.claim_token is not None
        async with other.connect() as takeover:
            await takeover.execute(
                update(ScheduledMessage)
                .where(ScheduledMessage.id == row.id)
                .values(claim_token="other-process", claimed_until=bot.clock.now() + timedelta(minutes=5))
            )
            released.set()  # the send fails (the connection dropped) while the takeover is open

            async def waiting_for_the_row() -> bool:
                async with other.connect() as watch:
                    waiting = await watch.scalar(
                        text(
                            "SELECT count(*) FROM pg_stat_activity"
                            " WHERE wait_event_type = 'Lock' AND datname = current_database()"
                        )
                    )
                return bool(waiting)

            await eventually(waiting_for_the_row, 10, "the failure's record waiting for the other claim")
            await takeover.commit()
        failures = await asyncio.wait_for(tick, 10)
        assert failures == {}
    finally:
        await other.dispose()
    (row,) = [r for r in await rows(bot, "BSM-016") if r.key == "dose:baricitinib:2026-10-26"]
    assert (row.status, row.claim_token, row.attempts) == (MessageStatus.SENDING, "other-process", 0)
    assert row.next_attempt_at == dhaka(2026, 10, 26, 9)  # no back-off written over the new claim


async def test_a_check_in_answered_just_before_its_invitation_is_not_invited_again(
    bot: BotHarness, server: BotAPIServer
) -> None:
    await arm_a(server, "BSM-014", 1014)
    bot.clock.set(dhaka(2026, 10, 31, 20))
    await bot.tick()
    assert bot.services is not None
    async with bot.services.sessions() as session:  # /checkin done on Saturday evening
        pid = (await rows(bot, "BSM-014"))[0].participant_id
        session.add(
            QuestionnaireSession(
                participant_id=pid,
                instrument_id="weekly_checkin",
                instrument_version="1",
                status=QuestionnaireStatus.COMPLETED,
                origin="command",
                state={},
                started_at=bot.clock.now(),
                updated_at=bot.clock.now(),
                completed_at=bot.clock.now(),
            )
        )
        await session.commit()
    bot.clock.set(dhaka(2026, 11, 1, 10))  # Sunday 10:00: the week 1 check-in invitation is due
    await bot.tick()
    (row,) = [r for r in await rows(bot, "BSM-014") if r.key == "checkin:1"]
    assert row.status is MessageStatus.SKIPPED and row.last_error == "already answered"
    assert not [m for m in reminders(server, 1014) if "qstart:" in str(m.buttons)]
    bot.clock.set(dhaka(2026, 11, 8, 10))  # the next week's is sent as usual
    await bot.tick()
    assert len([m for m in reminders(server, 1014) if "qstart:weekly_checkin" in str(m.buttons)]) == 1


async def test_a_late_bot_timed_message_waits_for_quiet_hours_to_end(bot: BotHarness, server: BotAPIServer) -> None:
    await arm_a(server, "BSM-015", 1015)
    bot.clock.set(dhaka(2026, 10, 31, 20))
    await bot.tick()
    before = len(reminders(server, 1015))
    bot.clock.set(dhaka(2026, 11, 1, 23))  # back at 23:00: Sunday's 10:00 check-in invitation is late
    await bot.tick()
    assert len(reminders(server, 1015)) == before  # not at night
    (row,) = [r for r in await rows(bot, "BSM-015") if r.key == "checkin:1"]
    assert row.status is MessageStatus.PLANNED and row.next_attempt_at == dhaka(2026, 11, 2, 7)
    bot.clock.set(dhaka(2026, 11, 2, 7))
    await bot.tick()
    (row,) = [r for r in await rows(bot, "BSM-015") if r.key == "checkin:1"]
    assert row.status is MessageStatus.SENT and row.sent_at == dhaka(2026, 11, 2, 7)
    assert "qstart:weekly_checkin" in str(reminders(server, 1015)[-1].buttons)


@pytest.mark.parametrize("concurrency", [1, 8])
async def test_every_due_reminder_goes_once_at_any_dispatch_concurrency(
    server: BotAPIServer, db_url: str, clock: ManualClock, concurrency: int
) -> None:
    """DISPATCH_CONCURRENCY only changes how many go at once: 120 reminders due, each
    sent once, each row SENT with its message id, each opening one dose-log row."""
    from sqlalchemy import func

    from models import DoseLog, ScheduledMessage

    async with BotHarness(server, db_url, clock, overrides={"dispatch_concurrency": concurrency}) as bot:
        chats = await seed_due_reminders(bot, server, db_url, 120)
        await bot.tick()
        assert set(dose_reminders_per_chat(server, chats).values()) == {1}
        assert bot.services is not None
        reminder = ScheduledMessage.kind == "dose_reminder"
        async with bot.services.sessions() as session:
            statuses = set(await session.scalars(select(ScheduledMessage.status).where(reminder)))
            unsent = await session.scalar(
                select(func.count())
                .select_from(ScheduledMessage)
                .where(reminder, ScheduledMessage.telegram_message_id.is_(None))
            )
            logs = await session.scalar(select(func.count()).select_from(DoseLog))
        assert statuses == {MessageStatus.SENT} and unsent == 0 and logs == 120


async def test_a_claim_returns_its_rows_in_the_order_they_fell_due(
    bot: BotHarness, server: BotAPIServer, db_url: str
) -> None:
    """The dispatcher sends a claim's rows in the order they fell due (after an outage, a
    participant's reminder that fell due first goes first), and of rows due at the same
    instant the one written first: not in the order they were written, nor by whom they
    are for."""
    await seed_due_reminders(bot, server, db_url, 6)
    assert bot.services is not None
    now = bot.clock.now()
    async with bot.services.sessions() as session:
        rows = (await session.execute(select(ScheduledMessage.id, ScheduledMessage.participant_id))).all()
        ids = sorted(row_id for row_id, _pid in rows)
        last_participant = max(pid for _id, pid in rows)
        waited = dict(zip(ids, (3, 3, 1, 5, 4, 2), strict=True))  # seconds overdue
        for row_id, seconds in waited.items():
            await session.execute(
                update(ScheduledMessage)
                .where(ScheduledMessage.id == row_id)
                .values(next_attempt_at=now - timedelta(seconds=seconds))
            )
        await session.execute(  # the first of the two due together is for the last participant
            update(ScheduledMessage)
            .where(ScheduledMessage.id == ids[0])
            .values(participant_id=last_participant, key=ScheduledMessage.key + ":moved")
        )
        await session.commit()
    claimed = await outbox.claim(outbox.REMINDERS, bot.services.sessions, now, "a", timedelta(minutes=5))
    assert [row_id for row_id, _pid in claimed] == [ids[3], ids[4], ids[0], ids[1], ids[5], ids[2]]
    assert claimed[2] == (ids[0], last_participant)


async def test_of_more_rows_due_at_the_same_instant_than_a_batch_the_first_written_are_claimed_first(
    bot: BotHarness, server: BotAPIServer, db_url: str
) -> None:
    """First written, first sent: when more rows fell due at the same instant than one
    claim takes (a busy reminder minute), the claim takes those written first, whatever
    order the database happens to hold them in (here: the last written moved last)."""
    await seed_due_reminders(bot, server, db_url, outbox.BATCH + 10)
    assert bot.services is not None
    now = bot.clock.now()
    async with bot.services.sessions() as session:
        ids = list(await session.scalars(select(ScheduledMessage.id).order_by(ScheduledMessage.id)))
        for row_id in reversed(ids):  # each row written anew, the first written last
            await session.execute(
                update(ScheduledMessage).where(ScheduledMessage.id == row_id).values(next_attempt_at=now)
            )
            await session.commit()
    claimed = await outbox.claim(outbox.REMINDERS, bot.services.sessions, now, "a", timedelta(minutes=5))
    assert [row_id for row_id, _pid in claimed] == ids[: outbox.BATCH]


async def test_a_claim_takes_one_batch_orphans_first_then_the_longest_waiting(
    bot: BotHarness, server: BotAPIServer, db_url: str
) -> None:
    """One claim holds at most a batch (what a crash can repeat is bounded by it): first
    the rows whose claim's lease ran out (a process died holding them), then the due rows
    that have waited longest, whatever order they were written in."""
    await seed_due_reminders(bot, server, db_url, outbox.BATCH + 30)
    assert bot.services is not None
    now = bot.clock.now()
    async with bot.services.sessions() as session:
        ids = list(await session.scalars(select(ScheduledMessage.id).order_by(ScheduledMessage.id)))
        assert len(ids) == outbox.BATCH + 30
        for age, row_id in enumerate(ids):  # the last written has waited longest
            await session.execute(
                update(ScheduledMessage)
                .where(ScheduledMessage.id == row_id)
                .values(next_attempt_at=now - timedelta(seconds=age + 1))
            )
        orphans = ids[:5]  # the earliest written, claimed by a process that died
        await session.execute(
            update(ScheduledMessage)
            .where(ScheduledMessage.id.in_(orphans))
            .values(status=MessageStatus.SENDING, claim_token="dead", claimed_until=now - timedelta(seconds=1))
        )
        await session.commit()
    lease = timedelta(minutes=5)
    first = [row_id for row_id, _pid in await outbox.claim(outbox.REMINDERS, bot.services.sessions, now, "a", lease)]
    assert len(first) == outbox.BATCH
    longest_waiting = list(reversed(ids))[: outbox.BATCH - len(orphans)]
    assert set(first) == set(orphans) | set(longest_waiting)
    second = [row_id for row_id, _pid in await outbox.claim(outbox.REMINDERS, bot.services.sessions, now, "b", lease)]
    assert sorted(second) == sorted(set(ids) - set(first))  # the rest, once
