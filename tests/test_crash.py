"""SIGKILL at random points: the real bot as a process, killed and restarted
many times while people use it. Nothing Telegram delivered may be lost, and
nothing may be applied twice."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from devtools.botapi_server import BotAPIServer, SentMessage
from devtools.harness import ADMIN_ID, ESCALATION_CHAT
from devtools.process import BotProcess, WebhookProcess, free_port, test_clock, webhook_env
from models import AuditEntry, Participant, ProcessedUpdate
from models.db import create_engine, create_session_factory
from tests.bothelpers import eventually, settled
from tests.conftest import Figures

KILLS = 10


@pytest.fixture
async def bot_process(server: BotAPIServer, db_url: str, tmp_path: Path) -> AsyncIterator[BotProcess]:
    env = {"HEARTBEAT_SECONDS": "3600"}
    process = BotProcess(server, db_url, tmp_path / "bot.log", extra_env=env, clock=test_clock())
    await process.start()
    try:
        yield process
    finally:
        await process.kill()


async def counts(url: str) -> dict[str, int]:
    engine = create_engine(url)
    try:
        async with create_session_factory(engine)() as session:

            async def n(model: type, *where: object) -> int:
                return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)

            return {
                "participants": await n(Participant),
                "enroll": await n(AuditEntry, AuditEntry.action == "participant.enroll"),
                "codes": await n(AuditEntry, AuditEntry.action == "enrollment_code.issue"),
                "updates": await n(ProcessedUpdate),
            }
    finally:
        await engine.dispose()


@pytest.mark.parametrize("mode", ["long polling", "webhook"])
async def test_random_kills_during_admin_commands_lose_and_duplicate_nothing(
    server: BotAPIServer, db_url: str, tmp_path: Path, figures: Figures, mode: str
) -> None:
    """The admin enrolls people while the bot is SIGKILLed after each command. Long
    polling confirms an update only after its commit; the webhook answers Telegram only
    after its commit (bot.runner), so Telegram delivers it again (the test server retries
    for about two minutes here). Either way every /enroll is applied exactly once."""
    env = {"HEARTBEAT_SECONDS": "3600"}
    bot: BotProcess
    if mode == "webhook":
        # Telegram keeps retrying a failed webhook delivery for much longer than this
        # test runs; ~20 s of retries was shorter than ten restarts take on a loaded machine.
        server.webhook_retry_delays = (0.2, 0.5, 1.0, 2.0, 3.0, *(5.0,) * 24)
        bot = WebhookProcess(
            server, db_url, tmp_path / "bot.log", extra_env={**env, **webhook_env(free_port())}, clock=test_clock()
        )
    else:
        bot = BotProcess(server, db_url, tmp_path / "bot.log", extra_env=env, clock=test_clock())
    chaos = random.Random(20261122)
    admin = server.user(ADMIN_ID, "Admin", language_code="en", label="admin")
    await bot.start()
    try:
        for i in range(KILLS):
            await admin.send(f"/enroll BSM-{200 + i} A 2026-10-25 en")
            await asyncio.sleep(chaos.uniform(0.0, 0.25))  # choose the kill point, not waiting for a result
            await bot.kill()
            await bot.start()
        # Updates are handled in order: once this is answered, every /enroll before it was handled.
        last = await admin.send("/participants")
        (listing,) = await server.wait_for(ADMIN_ID, "participant(s)", since=last, timeout=60)
        assert f"{KILLS} participant(s)" in listing.content
        assert await counts(db_url) == {"participants": KILLS, "enroll": KILLS, "codes": KILLS, "updates": KILLS + 1}
        assert bot.starts == KILLS + 1
        figures.add(f"SIGKILLs of the bot process survived (admin commands, {mode})", KILLS)
    finally:
        await bot.kill()


async def test_random_kills_during_a_checkin_lose_and_duplicate_no_answer(
    server: BotAPIServer, bot_process: BotProcess, db_url: str, figures: Figures
) -> None:
    """A participant answers the weekly check-in while the bot is SIGKILLed at
    random points; after each restart they reopen it with /checkin, as a person
    would. Every item ends with exactly one stored answer and one audit row."""
    from models import QuestionnaireAnswer, QuestionnaireSession, QuestionnaireStatus
    from tests.bothelpers import enroll, link
    from tests.test_questionnaire_flow import is_question, q_item

    chaos = random.Random(7)
    code = await enroll(server, "BSM-250 A 2026-10-25 en")
    user = server.user(2500, "Participant", language_code="en")
    await link(server, user, code, "English")
    kills = 0
    update = await user.send("/checkin")
    for _ in range(80):
        found = await server.wait_for(
            user.id, lambda m: is_question(m) or "answered all the questions" in m.content, since=update, timeout=30
        )
        question = found[-1]
        if not is_question(question):
            break
        values = [d.split(":", 3)[3] for row in question.buttons for _t, d in row if d and d.startswith("q:")]
        value = "no" if "no" in values else "none" if "none" in values else "__skip__"
        item = q_item(question)
        update = await user.press(question, f"q:{question.buttons[0][0][1].split(':')[1]}:{item}:{value}")
        if chaos.random() < 0.25:  # now and then, kill the bot while it handles the press
            await asyncio.sleep(chaos.uniform(0.0, 0.2))
            await bot_process.kill()
            await bot_process.start()
            kills += 1
            update = await user.send("/checkin")  # reopen: the bot shows the question it is at
    else:
        raise AssertionError("the check-in never finished")

    engine = create_engine(db_url)
    try:
        async with create_session_factory(engine)() as session:
            sessions = list(await session.scalars(select(QuestionnaireSession)))
            # A kill right after the last answer was committed (before the thank-you went
            # out) makes the reopening /checkin start a new check-in: correct, and counted.
            assert QuestionnaireStatus.COMPLETED in {s.status for s in sessions}
            answers = list(await session.scalars(select(QuestionnaireAnswer)))
            per_item: dict[tuple[int, str], int] = {}
            for answer in answers:
                key = (answer.session_id, answer.item_id)
                per_item[key] = per_item.get(key, 0) + 1
            assert per_item and max(per_item.values()) == 1, per_item  # nothing applied twice
            audited = await session.scalar(
                select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "questionnaire.answer")
            )
            assert audited == len(answers)  # the audit matches the data
    finally:
        await engine.dispose()
    assert kills >= 3
    figures.add("SIGKILLs of the bot process survived (during a check-in)", kills)


# --- Kills during a dispatch and during an escalation -------------------------------
#
# Here the bot runs on the test's clock (devtools.process.test_clock: TEST_START, at real
# speed, so the hour of the run does not matter) with a 1-second heartbeat and 2-second leases
# (REMINDER_LEASE_SECONDS, ALERT_LEASE_SECONDS), so the rows a killed process had
# claimed are taken over by the restarted one within seconds instead of minutes. The
# rate limiter is on (30 messages/s), so a batch takes seconds to send and the kills
# land in the middle of it. Each kill may cost one duplicate: the message Telegram
# had accepted when the process died, before its "sent" was stored.

DISPATCH_PARTICIPANTS = 200
ESCALATIONS = 40
LEASE_ENV = {"HEARTBEAT_SECONDS": "1", "REMINDER_LEASE_SECONDS": "2", "ALERT_LEASE_SECONDS": "2"}


async def _kill_loop(
    bot: BotProcess,
    chaos: random.Random,
    received: Callable[[], dict[Any, int]],
    done: Callable[[], Awaitable[bool]],
    most: int,
    what: str,
) -> tuple[int, int]:
    """Start ``bot``, SIGKILL and restart it at random points while it sends, until
    ``done()`` or ``most`` kills, then wait for ``done()``. ``received`` counts what each
    recipient got. Asserts that nothing was lost and that no more was sent twice than
    there were kills (the one in flight each); returns (kills, duplicates)."""
    await bot.start()
    await eventually(lambda: _some(received, 3), 30, f"the first {what}")
    kills = 0
    while kills < most and not await done():
        await asyncio.sleep(chaos.uniform(0.3, 1.5))  # some sends go out between kills
        await bot.kill()
        kills += 1
        await bot.start()
    await eventually(done, 60, f"every {what} sent after the last restart")
    counts = await settled(received)
    assert min(counts.values()) == 1, f"a {what} was lost"
    duplicates = sum(counts.values()) - len(counts)
    assert duplicates <= kills, f"{duplicates} duplicates for {kills} kills"
    return kills, duplicates


async def test_random_kills_during_a_dispatch_lose_no_reminder(
    server: BotAPIServer, db_url: str, tmp_path: Path, figures: Figures
) -> None:
    """200 dose reminders due now; the bot is SIGKILLed again and again while it sends
    them. Every participant gets their reminder; no more duplicates than kills; every
    row ends SENT; each reminder opened exactly one dose-log row and one follow-up."""
    from bench.seed import CHAT_BASE, same_minute_profiles, seed
    from domain.content import load_content
    from domain.doses import planned_from_row
    from models import DoseLog, MessageStatus, ScheduledMessage
    from scheduler.calendar import to_local
    from scheduler.planner import MessageKind, make_dose_followup

    protocol = load_content().protocol
    clock = test_clock()
    now = clock.now().replace(second=0, microsecond=0)
    local = to_local(now, protocol.tz)
    profiles = same_minute_profiles(local.date(), local.time())
    only = frozenset({MessageKind.DOSE_REMINDER.value})  # what else is due now depends on the time of day
    await seed(db_url, DISPATCH_PARTICIPANTS, profiles, protocol, now, keep="due", kinds=only)
    chats = [CHAT_BASE + i for i in range(DISPATCH_PARTICIPANTS)]
    for chat in chats:
        server.user(chat, "P", language_code="en")

    def received() -> dict[int, int]:
        return {chat: sum(1 for m in server.messages(chat) if _has_button(m, "dose:")) for chat in chats}

    engine = create_engine(db_url)
    sessions = create_session_factory(engine)

    async def rows(kind: str) -> list[ScheduledMessage]:
        async with sessions() as session:
            return list(await session.scalars(select(ScheduledMessage).where(ScheduledMessage.kind == kind)))

    async def all_sent() -> bool:
        reminders = await rows(MessageKind.DOSE_REMINDER.value)
        return all(received().values()) and all(r.status is MessageStatus.SENT for r in reminders)

    bot = BotProcess(server, db_url, tmp_path / "bot.log", extra_env=LEASE_ENV, clock=clock)
    try:
        kills, duplicates = await _kill_loop(bot, random.Random(20261122), received, all_sent, 8, "reminder")
        reminders = await rows(MessageKind.DOSE_REMINDER.value)
        assert len(reminders) == DISPATCH_PARTICIPANTS
        assert all(r.telegram_message_id is not None and r.claim_token is None for r in reminders)
        async with sessions() as session:
            logs = list(await session.scalars(select(DoseLog)))
        assert sorted(log.participant_id for log in logs) == sorted(r.participant_id for r in reminders)
        followups = await rows(MessageKind.DOSE_FOLLOWUP.value)
        wanted = [  # one follow-up per reminder, where the planner gives one at that hour (none into the night)
            r.participant_id
            for r in reminders
            if r.sent_at is not None and make_dose_followup(planned_from_row(r), r.sent_at, protocol) is not None
        ]
        assert sorted(f.participant_id for f in followups) == sorted(wanted)
        assert kills >= 3, "the sends finished before the kills: raise DISPATCH_PARTICIPANTS"
        figures.add("SIGKILLs of the bot process survived (during a dispatch)", kills)
        figures.add("reminders sent twice after those kills (the one in flight)", duplicates)
    finally:
        await bot.kill()
        await engine.dispose()


async def test_random_kills_during_escalations_escalate_each_alert_once(
    server: BotAPIServer, db_url: str, tmp_path: Path, figures: Figures
) -> None:
    """40 URGENT alerts nobody acknowledged for 31 minutes; the bot is SIGKILLed again
    and again while it escalates them. Each alert is escalated once (one mark, one audit
    row, one delivery row) and reaches the escalation chat; no more duplicates than kills."""
    from domain.alerts import raise_alert
    from models import Alert, AlertDelivery, AlertLevel, DeliveryStatus

    engine = create_engine(db_url)
    sessions = create_session_factory(engine)
    clock = test_clock()
    aware = clock.now() - timedelta(minutes=31)
    async with sessions() as session:
        for i in range(ESCALATIONS):
            await raise_alert(
                session,
                participant=None,
                kind="test_escalation",
                level=AlertLevel.URGENT,
                summary=f"test alert {i:03d}",
                reasons=["raised by the kill-loop test"],
                now=aware,
                coordinator_chats=[],  # only the escalations are sent in this test
            )
        await session.commit()

    def escalated() -> dict[str, int]:
        texts = [m.content for m in server.messages(ESCALATION_CHAT)]
        return {f"test alert {i:03d}": sum(1 for t in texts if f"test alert {i:03d}" in t) for i in range(ESCALATIONS)}

    async def all_escalated() -> bool:
        async with sessions() as session:
            pending = await session.scalar(
                select(func.count()).select_from(AlertDelivery).where(AlertDelivery.status != DeliveryStatus.SENT)
            )
        return all(escalated().values()) and pending == 0

    bot = BotProcess(server, db_url, tmp_path / "bot.log", extra_env=LEASE_ENV, clock=clock)
    try:
        kills, duplicates = await _kill_loop(bot, random.Random(31), escalated, all_escalated, 6, "escalation")
        async with sessions() as session:
            alerts = list(await session.scalars(select(Alert)))
            assert len(alerts) == ESCALATIONS and all(a.escalated_at is not None for a in alerts)
            deliveries = list(await session.scalars(select(AlertDelivery)))
            assert sorted(d.alert_id for d in deliveries) == sorted(a.id for a in alerts)  # one each
            assert {d.purpose for d in deliveries} == {"escalation"}
            audited = await session.scalar(
                select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "alert.escalate")
            )
            assert audited == ESCALATIONS  # the audit matches the data
        assert kills >= 2, "the escalations finished before the kills: raise ESCALATIONS"
        figures.add("SIGKILLs of the bot process survived (during an escalation)", kills)
        figures.add("escalations sent twice after those kills (the one in flight)", duplicates)
    finally:
        await bot.kill()
        await engine.dispose()


def _has_button(message: SentMessage, prefix: str) -> bool:
    return any(data and data.startswith(prefix) for row in message.buttons for _, data in row)


async def _some(counts: Callable[[], dict[Any, int]], at_least: int) -> bool:
    return sum(1 for n in counts().values() if n) >= at_least
