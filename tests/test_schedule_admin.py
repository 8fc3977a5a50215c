"""/pause, /resume, /status and /visit from Telegram and from the shell: audited,
validated before anything changes, and /status's adherence matches the dose log."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from cli.admin import run
from devtools.botapi_server import BotAPIServer
from devtools.harness import BotHarness
from models import AuditEntry, DoseAnswer, DoseLog, Participant, ParticipantStatus
from tests.bothelpers import admin_says, enroll, link, presses, says
from tests.schedule_helpers import dhaka, reminders, rows, walk


async def participant(bot: BotHarness, study_id: str) -> Participant:
    assert bot.services is not None
    async with bot.services.sessions() as session:
        found = await session.scalar(select(Participant).where(Participant.study_id == study_id))
        assert found is not None
        return found


async def test_status_adherence_matches_the_dose_log(bot: BotHarness, server: BotAPIServer) -> None:
    code = await enroll(server, "BSM-001 B 2026-10-25 en fri")
    user = server.user(1001, "P", language_code="en")
    await link(server, user, code, "English")
    for week in range(4):  # methotrexate answered Taken; folic acid never answered
        await walk(bot, dhaka(2026, 10, 30, 9) + timedelta(weeks=week))
        reminder = [m for m in reminders(server, 1001) if "methotrexate day" in m.content][-1]
        await presses(server, user, reminder, "✅ Taken", "noted that you took")
    await walk(bot, dhaka(2026, 11, 22, 12))

    assert bot.services is not None
    async with bot.services.sessions() as session:
        logs = list(await session.scalars(select(DoseLog)))
    window = [d for d in logs if d.dose_date >= dhaka(2026, 10, 26, 6).date()]
    taken = [d for d in window if d.answer is DoseAnswer.TAKEN]
    assert (len(window), len(taken)) == (8, 4)
    assert {d.answer for d in window} == {DoseAnswer.TAKEN, DoseAnswer.NO_ANSWER}
    status = await admin_says(server, "/status BSM-001", "Adherence")
    assert f"Adherence (last 4 weeks): 50% ({len(taken)} taken of {len(window)} reminders)" in status.content
    assert "arm B · active" in status.content
    assert "Next visit: week 4 on 2026-11-22 (window 2026-11-19 to 2026-11-25)" in status.content
    assert "Open alerts: 0" in status.content and "Last check-in: —" in status.content


async def test_pause_resume_and_visit_from_telegram(bot: BotHarness, server: BotAPIServer) -> None:
    code = await enroll(server, "BSM-002 A 2026-10-25 en")
    await link(server, server.user(1002, "Q", language_code="en"), code, "English")

    refused = await admin_says(server, "/pause BSM-002 2026-10-20 past", "Not done")
    assert "after today" in refused.content
    reply = await admin_says(server, "/pause BSM-002 2026-11-01 travelling to Sylhet", "paused")
    assert "until 2026-11-01" in reply.content
    status = await admin_says(server, "/status BSM-002", "Open alerts")
    assert "Paused until: 2026-11-01 (travelling to Sylhet)" in status.content
    await walk(bot, dhaka(2026, 10, 31, 23))
    assert reminders(server, 1002) == []  # nothing during the pause
    await walk(bot, dhaka(2026, 11, 1, 9, 0))
    assert len(reminders(server, 1002)) == 1  # the pause ended by itself
    assert (await participant(bot, "BSM-002")).status == ParticipantStatus.ACTIVE

    await admin_says(server, "/pause BSM-002", "until /resume")
    bot.clock.set(dhaka(2026, 11, 2, 9))
    await bot.tick()
    assert len(reminders(server, 1002)) == 1
    await admin_says(server, "/resume BSM-002", "restarted")
    assert (await admin_says(server, "/resume BSM-002", "Not done")).content.endswith("(status active)")
    bot.clock.set(dhaka(2026, 11, 3, 9))
    await bot.tick()
    assert len(reminders(server, 1002)) == 2

    assert "no visit at week 5" in (await admin_says(server, "/visit BSM-002 5 done", "Not done")).content
    assert "in the future" in (await admin_says(server, "/visit BSM-002 4 done 2026-12-30", "Not done")).content
    await admin_says(server, "/visit BSM-002 4 done 2026-11-03", "recorded as done on 2026-11-03")
    status = await admin_says(server, "/status BSM-002", "Open alerts")
    assert "Next visit: week 12" in status.content
    visit_rows = [r for r in await rows(bot, "BSM-002") if r.key.startswith("visit:4:")]
    assert visit_rows and all(r.status.value == "cancelled" for r in visit_rows)

    assert bot.services is not None
    async with bot.services.sessions() as session:
        audit = [
            (a.action, a.actor)
            for a in await session.scalars(select(AuditEntry).order_by(AuditEntry.id))
            if a.action.startswith(("participant.pause", "participant.resume", "visit."))
        ]
    assert audit == [
        ("participant.pause", "admin:900"),
        ("participant.resume_auto", "system"),
        ("participant.pause", "admin:900"),
        ("participant.resume", "admin:900"),
        ("visit.record", "admin:900"),
    ]


async def test_participants_cannot_use_the_admin_commands(bot: BotHarness, server: BotAPIServer) -> None:
    code = await enroll(server, "BSM-003 A 2026-10-25 en")
    user = server.user(1003, "R", language_code="en")
    await link(server, user, code, "English")
    for command in ("/pause BSM-003", "/resume BSM-003", "/status BSM-003", "/visit BSM-003 4 done"):
        await says(server, user, command, "only for the study team")
    assert (await participant(bot, "BSM-003")).status == ParticipantStatus.ACTIVE


async def test_the_same_from_the_shell(
    bot: BotHarness, server: BotAPIServer, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)
    code = await enroll(server, "BSM-004 B 2026-10-25 bn fri")
    await link(server, server.user(1004, "S", language_code="bn"), code)
    clock = bot.clock
    result = await run(["pause", "BSM-004", "2026-11-15", "family", "wedding"], clock)
    assert result == (
        0,
        "BSM-004: reminders paused until 2026-11-15 (they restart by themselves that day). "
        "Reason: family wedding. Nothing recorded is deleted.",
    )
    code_, text = await run(["status", "BSM-004"], clock)
    assert code_ == 0 and "Paused until: 2026-11-15 (family wedding)" in text
    assert (await run(["resume", "BSM-004"], clock))[0] == 0
    assert (await run(["visit", "BSM-004", "4", "missed"], clock))[1].endswith("window check are stopped.")
    assert (await run(["visit", "BSM-004", "9", "done"], clock))[0] == 1
    assert bot.services is not None
    async with bot.services.sessions() as session:
        actors = {
            a.actor
            for a in await session.scalars(select(AuditEntry))
            if a.action in ("participant.pause", "visit.record")
        }
    assert all(actor.startswith("cli:") for actor in actors) and actors


def test_pause_and_visit_arguments_are_parsed_strictly() -> None:
    from datetime import date

    from domain.parsing import ParseError
    from domain.participant_state import parse_pause_args
    from domain.visits import parse_visit_args
    from models import VisitStatus

    assert parse_pause_args(["bsm-001"]).until is None
    request = parse_pause_args(["BSM-001", "২০২৬-১২-০১", "family", "wedding"])
    assert (request.until, request.reason) == (date(2026, 12, 1), "family wedding")
    assert parse_pause_args(["BSM-001", "travelling"]).reason == "travelling"
    visit = parse_visit_args(["BSM-001", "৪", "done", "22/11/2026"])
    assert (visit.week, visit.outcome, visit.on) == (4, VisitStatus.DONE, date(2026, 11, 22))
    for bad in (
        ["BSM-001"],
        ["BSM-001", "x", "done"],
        ["BSM-001", "4", "maybe"],
        ["BSM-001", "4", "missed", "2026-11-22"],
    ):
        with pytest.raises(ParseError):
            parse_visit_args(bad)
    with pytest.raises(ParseError):
        parse_pause_args([])
