"""Visits that move (`/visit STUDY_ID WEEK on DATE`), on SQLite and PostgreSQL, through the
real bot over HTTP: the agreed date is stored and audited, the old date's reminders and
window check are cancelled and new ones planned at the new date, the participant is told
in their language; a date outside the window waits for the admin's confirm button and is
then a protocol deviation; past dates, weeks that are no visit and recorded visits are
refused; the same from the shell."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select

from bot import callbacks
from bot.i18n import format_date
from cli.admin import run
from devtools.bangla_check import problems
from devtools.botapi_server import BotAPIServer, SentMessage, SimUser
from devtools.harness import ADMIN_ID, BotHarness
from models import Alert, AuditEntry, ClinicVisit, MessageStatus, Participant
from tests.bothelpers import admin_says, enroll, link, says
from tests.schedule_helpers import dhaka, local, reminders, rows, walk


async def visit_row(bot: BotHarness, study_id: str, week: int) -> ClinicVisit:
    assert bot.services is not None
    async with bot.services.sessions() as session:
        found = await session.scalar(
            select(ClinicVisit)
            .join(Participant, Participant.id == ClinicVisit.participant_id)
            .where(Participant.study_id == study_id, ClinicVisit.week == week)
        )
        assert found is not None
        return found


async def audit_of(bot: BotHarness, prefix: str) -> list[AuditEntry]:
    assert bot.services is not None
    async with bot.services.sessions() as session:
        entries = await session.scalars(select(AuditEntry).order_by(AuditEntry.id))
        return [a for a in entries if a.action.startswith(prefix)]


async def statuses(bot: BotHarness, study_id: str, prefix: str) -> dict[str, MessageStatus]:
    return {r.key: r.status for r in await rows(bot, study_id) if r.key.startswith(prefix)}


async def linked(server: BotAPIServer, study_id: str, user_id: int, lang: str) -> SimUser:
    code = await enroll(server, f"{study_id} A 2026-10-25 {lang}")
    user = server.user(user_id, "P", language_code=lang)
    await link(server, user, code, "বাংলা" if lang == "bn" else "English")
    return user


def notices(server: BotAPIServer, chat_id: int, marker: str) -> list[SentMessage]:
    return [m for m in server.messages(chat_id) if marker in m.content]


async def admin_presses(server: BotAPIServer, message: SentMessage, button: str, expect: str) -> SentMessage:
    admin = server.user(ADMIN_ID, "Admin", language_code="en", label="admin")
    update = await admin.press(message, button)
    (reply,) = await server.wait_for(ADMIN_ID, expect, since=update)
    return reply


async def test_a_date_inside_the_window_moves_the_reminders_and_the_participant_is_told_in_bangla(
    bot: BotHarness, server: BotAPIServer
) -> None:
    user = await linked(server, "BSM-011", 1011, "bn")
    await walk(bot, dhaka(2026, 11, 15, 9))  # the week-before reminder of Sunday 22 November went out
    (week_before,) = [m for m in reminders(server, 1011) if m.content.startswith("এক সপ্তাহ পরে")]
    update = await user.press(week_before, callbacks.visit(4, "other"))
    await server.wait_for(1011, since=update)
    assert [a.kind for a in await alerts_of(bot)] == ["visit_reschedule"]

    # Typed as people type it: Bengali digits, day first.
    reply = await admin_says(server, "/visit BSM-011 4 on ২৪/১১/২০২৬", "BSM-011")
    assert "week 4 visit agreed for 2026-11-24 (target 2026-11-22, window 2026-11-19 to 2026-11-25)" in reply.content
    assert "deviation" not in reply.content

    visit = await visit_row(bot, "BSM-011", 4)
    assert (visit.agreed_date, visit.deviation, visit.agreed_by) == (date(2026, 11, 24), False, "admin:900")
    assert visit.agreed_at == bot.clock.now() and visit.visit_date == date(2026, 11, 22)  # the plan is kept
    (entry,) = await audit_of(bot, "visit.agree_date")
    assert entry.actor == "admin:900" and entry.after is not None and entry.after["agreed_date"] == "2026-11-24"
    assert await audit_of(bot, "visit.deviation") == []

    # The old date's reminders and window check are cancelled; the sent one stays history.
    stored = await statuses(bot, "BSM-011", "visit:4:")
    assert stored["visit:4:remind:-7"] is MessageStatus.SENT
    for old in ("visit:4:remind:-1", "visit:4:remind:0", "visit:4:window_check"):
        assert stored[old] is MessageStatus.CANCELLED, old
    planned = {r.key: local(r.due_at) for r in await rows(bot, "BSM-011", status=MessageStatus.PLANNED)}
    assert planned["visit:4:remind:-7:2026-11-24"] == local(dhaka(2026, 11, 17, 8))
    assert planned["visit:4:remind:-1:2026-11-24"].date() == date(2026, 11, 23)
    assert planned["visit:4:remind:0:2026-11-24"].date() == date(2026, 11, 24)
    assert planned["visit:4:window_check:2026-11-24"].date() == date(2026, 11, 26)

    # Told at the next heartbeat, in Bangla, with the day and date as people say them.
    await bot.tick()
    said = format_date(date(2026, 11, 24), "long", "bn")
    assert said.startswith("মঙ্গলবার") and "২৪" in said
    (notice,) = notices(server, 1011, "নতুন দিনে ঠিক হয়েছে")
    assert said in notice.content and "৪ সপ্তাহের চেকআপ" in notice.content
    assert not problems(notice.content), problems(notice.content)
    await bot.tick()
    assert len(notices(server, 1011, "নতুন দিনে ঠিক হয়েছে")) == 1  # once

    schedule = await says(server, user, "/schedule", said)
    assert "(গবেষণা দলের সাথে ঠিক করা তারিখ)" in schedule.content
    status = await admin_says(server, "/status BSM-011", "Open alerts")
    assert "Agreed date: 2026-11-24 (target 2026-11-22, window 2026-11-19 to 2026-11-25)" in status.content

    # The reminders come for the new date, none for the old one.
    before = len(reminders(server, 1011))
    await walk(bot, dhaka(2026, 11, 24, 9))
    new = reminders(server, 1011)[before:]
    visit_texts = [m.content for m in new if any(d and d.startswith("visit:") for r in m.buttons for _t, d in r)]
    assert len(visit_texts) == 3 and all(said in t for t in visit_texts)
    assert not any(format_date(date(2026, 11, 22), "long", "bn") in t for t in visit_texts)
    await walk(bot, dhaka(2026, 11, 26, 12))
    assert [a.kind for a in await alerts_of(bot)] == ["visit_reschedule", "visit_missed"]  # after the agreed date


async def alerts_of(bot: BotHarness) -> list[Alert]:
    assert bot.services is not None
    async with bot.services.sessions() as session:
        return list(await session.scalars(select(Alert).where(Alert.kind.like("visit_%")).order_by(Alert.id)))


async def test_a_date_outside_the_window_asks_to_confirm_then_records_a_deviation(
    bot: BotHarness, server: BotAPIServer
) -> None:
    await linked(server, "BSM-012", 1012, "en")
    await walk(bot, dhaka(2026, 11, 15, 9))

    question = await admin_says(server, "/visit BSM-012 4 on 2026-11-29", "outside")
    assert "2026-11-29 is outside the week 4 visit window (target 2026-11-22, window 2026-11-19 to 2026-11-25)" in (
        question.content
    )
    assert [t for row in question.buttons for t, _d in row] == ["Confirm: record a deviation", "Cancel"]
    assert (await visit_row(bot, "BSM-012", 4)).agreed_date is None  # nothing until confirmed
    await admin_presses(server, question, "Cancel", "nothing changed")
    assert (await visit_row(bot, "BSM-012", 4)).agreed_date is None and await audit_of(bot, "visit.agree") == []

    question = await admin_says(server, "/visit BSM-012 4 on 2026-11-29", "outside")
    done = await admin_presses(server, question, "Confirm: record a deviation", "agreed for")
    assert "Outside the window: recorded as a protocol deviation." in done.content
    visit = await visit_row(bot, "BSM-012", 4)
    assert (visit.agreed_date, visit.deviation) == (date(2026, 11, 29), True)
    (deviation,) = await audit_of(bot, "visit.deviation")
    assert deviation.actor == "admin:900" and deviation.after is not None and deviation.after["deviation"] is True
    status = await admin_says(server, "/status BSM-012", "Open alerts")
    assert "Agreed date: 2026-11-29" in status.content and "protocol deviation" in status.content

    # The end-of-window check follows the agreed date: no "missed" alert while it is still to come.
    stored = await statuses(bot, "BSM-012", "visit:4:window_check")
    assert stored == {
        "visit:4:window_check": MessageStatus.CANCELLED,
        "visit:4:window_check:2026-11-29": MessageStatus.PLANNED,
    }
    await bot.tick()
    (notice,) = notices(server, 1012, "as agreed with the study team")
    assert "Your Week 4 visit is now on Sunday, 29 November 2026" in notice.content
    await walk(bot, dhaka(2026, 11, 29, 12))
    assert [a.kind for a in await alerts_of(bot)] == []
    await walk(bot, dhaka(2026, 11, 30, 12))
    assert [a.kind for a in await alerts_of(bot)] == ["visit_missed"]


async def test_past_dates_weeks_that_are_no_visit_and_recorded_visits_are_refused(
    bot: BotHarness, server: BotAPIServer
) -> None:
    user = await linked(server, "BSM-013", 1013, "en")
    bot.clock.set(dhaka(2026, 11, 15, 9))
    refusals = {
        "/visit BSM-013 4 on 2026-11-10": "2026-11-10 is in the past",
        "/visit BSM-013 5 on 2026-12-01": "no visit at week 5",
        "/visit BSM-013 0 on 2026-12-01": "no visit at week 0",
        "/visit BSM-013 4 on 2026-13-01": "is not a date",
        "/visit BSM-013 4 on": "usage: /visit",
        "/visit BSM-404 4 on 2026-11-20": "BSM-404",
    }
    for command, why in refusals.items():
        reply = await admin_says(server, command, "Not done")
        assert why in reply.content, (command, reply.content)
    await admin_says(server, "/visit BSM-013 4 done 2026-11-15", "recorded as done")
    reply = await admin_says(server, "/visit BSM-013 4 on 2026-11-20", "Not done")
    assert "already recorded as done on 2026-11-15" in reply.content
    await says(server, user, "/visit BSM-013 12 on 2027-01-17", "only for the study team")
    # Paused: the date is stored and the reminders move, but no message goes; the admin is told so.
    await admin_says(server, "/pause BSM-013", "paused")
    reply = await admin_says(server, "/visit BSM-013 12 on 2027-01-18", "agreed for")
    assert "paused and gets no message: please tell them by phone" in reply.content
    await bot.tick()
    assert notices(server, 1013, "as agreed with the study team") == []
    await admin_says(server, "/visit BSM-013 12 on 2027-01-19", "agreed for")
    assert [a.after["agreed_date"] for a in await audit_of(bot, "visit.agree_date") if a.after] == [
        "2027-01-18",
        "2027-01-19",
    ]  # none of the refused ones


async def test_the_same_from_the_shell(
    bot: BotHarness, server: BotAPIServer, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)
    await linked(server, "BSM-014", 1014, "en")
    bot.clock.set(dhaka(2026, 11, 15, 9))
    code, text = await run(["visit", "BSM-014", "12", "on", "2027-02-01"], bot.clock)
    assert code == 1 and "--confirm-deviation" in text and "outside the week 12 visit window" in text
    assert (await visit_row(bot, "BSM-014", 12)).agreed_date is None
    code, text = await run(["visit", "BSM-014", "12", "on", "2027-02-01", "--confirm-deviation"], bot.clock)
    assert code == 0 and "recorded as a protocol deviation" in text
    code, text = await run(["visit", "BSM-014", "4", "on", "2026-11-24"], bot.clock)
    assert code == 0 and "week 4 visit agreed for 2026-11-24" in text
    assert (await run(["visit", "BSM-014", "4", "on", "2026-11-01"], bot.clock))[0] == 1  # past
    entries = await audit_of(bot, "visit.")
    assert [a.action for a in entries] == ["visit.agree_date", "visit.deviation", "visit.agree_date"]
    assert all(a.actor.startswith("cli:") for a in entries)
    # The running bot sends what the shell queued, at its next heartbeat.
    await bot.tick()
    told = notices(server, 1014, "as agreed with the study team")
    assert sorted("Week 12" in m.content for m in told) == [False, True] and len(told) == 2


def test_agreed_date_arguments_and_buttons_are_parsed_strictly() -> None:
    from domain.parsing import ParseError
    from domain.visits import is_agreed_date, parse_agreed_date_args

    request = parse_agreed_date_args(["bsm-001", "৪", "ON", "২০২৬-১১-২৪"])
    assert (request.study_id, request.week, request.on) == ("BSM-001", 4, date(2026, 11, 24))
    assert parse_agreed_date_args(["BSM-001", "w12", "on", "24.01.2027"]).on == date(2027, 1, 24)
    assert is_agreed_date(["BSM-001", "4", "on", "x"]) and not is_agreed_date(["BSM-001", "4", "done"])
    for bad in (["BSM-001", "4", "on"], ["BSM-001", "four", "on", "2026-11-24"], ["BSM-001", "4", "on", "24 Nov"]):
        with pytest.raises(ParseError):
            parse_agreed_date_args(bad)
    data = callbacks.visit_date("BSM-001", 12, "2027-01-31", True)
    assert len(data.encode()) <= 64
    pressed = callbacks.parse_visit_date(data)
    assert pressed is not None and (pressed.study_id, pressed.week, pressed.on, pressed.confirmed) == (
        "BSM-001",
        12,
        "2027-01-31",
        True,
    )
    assert callbacks.parse_visit_date("vdate:BSM-001:12:20271399:yes") is None
    assert callbacks.parse_visit_date("vdate:BSM-001:x:20270131:yes") is None
