"""SIGKILL at random points: the real bot as a process, killed and restarted
many times while people use it. Nothing Telegram delivered may be lost, and
nothing may be applied twice."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from devtools.botapi_server import BotAPIServer
from devtools.harness import ADMIN_ID
from devtools.process import BotProcess
from models import AuditEntry, Participant, ProcessedUpdate
from models.db import create_engine, create_session_factory
from tests.conftest import Figures

KILLS = 10


@pytest.fixture
async def bot_process(server: BotAPIServer, db_url: str, tmp_path: Path) -> AsyncIterator[BotProcess]:
    process = BotProcess(server, db_url, tmp_path / "bot.log", extra_env={"HEARTBEAT_SECONDS": "3600"})
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


async def test_random_kills_during_admin_commands_lose_and_duplicate_nothing(
    server: BotAPIServer, bot_process: BotProcess, db_url: str, figures: Figures
) -> None:
    chaos = random.Random(20261122)
    admin = server.user(ADMIN_ID, "Admin", language_code="en", label="admin")
    sent = []
    for i in range(KILLS):
        sent.append(await admin.send(f"/enroll BSM-{200 + i} A 2026-10-25 en"))
        await asyncio.sleep(chaos.uniform(0.0, 0.25))  # choose the kill point, not waiting for a result
        await bot_process.kill()
        await bot_process.start()
    # Updates are handled in order: once this is answered, every /enroll before it was handled.
    last = await admin.send("/participants")
    (listing,) = await server.wait_for(ADMIN_ID, "participant(s)", since=last, timeout=30)
    assert f"{KILLS} participant(s)" in listing.content
    assert await counts(db_url) == {"participants": KILLS, "enroll": KILLS, "codes": KILLS, "updates": KILLS + 1}
    assert bot_process.starts == KILLS + 1
    figures.add("SIGKILLs of the bot process survived (admin commands)", KILLS)


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
