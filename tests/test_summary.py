"""The study team's pictures: /summary (one A4 page per participant) and /overview (the
trial at a glance, also every Sunday at 08:00 to the coordinator chats, once).

A participant is built through the real bot over twelve weeks with the ManualClock;
the summary's numbers are checked against the database rows directly, and the pictures
against what reaches the chat."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from bot.app import build_application
from bot.jobs import run_all
from bot.services import build_services
from charts import render_overview, render_summary
from cli.admin import run
from core.clock import ManualClock
from devtools.botapi_server import BotAPIServer, SentDocument, SimUser
from devtools.harness import ADMIN_ID, COORDINATOR_CHAT, BotHarness
from domain import summary
from models import AdverseEvent, AuditEntry, DoseAnswer, DoseLog, QuestionnaireSession, QuestionnaireStatus, TeamReport
from tests.bothelpers import admin_says, enroll, link, presses, says
from tests.schedule_helpers import dhaka, reminders, walk
from tests.test_questionnaire_flow import answer_all, is_question

A4 = 297 / 210
STUDY = "BSM-015"
USER = 1015
# Methotrexate Fridays from 30 Oct 2026 (week 0): what the participant does with each.
SKIPPED_WEEK, UNANSWERED_WEEK, PAUSED_WEEK = 2, 5, 6
# Weekly check-ins (study week -> answers) and the grades they must give.
CHECKINS = {
    1: ({"mouth_stomach_any": "yes", "nausea": "moderate"}, {"nausea": 2}),
    2: (
        {"mouth_stomach_any": "yes", "nausea": "mild", "body_any": "yes", "fatigue": "severe"},
        {"nausea": 1, "fatigue": 3},
    ),
    5: ({"rf_mtx_extra_dose": "yes", "body_any": "yes", "fatigue": "mild"}, {"fatigue": 1}),
    9: ({"mouth_stomach_any": "yes", "nausea": "severe"}, {"nausea": 3}),
    11: ({}, {}),
}
BASELINE = date(2026, 10, 25)


def png_size(content: bytes) -> tuple[int, int]:
    """Width and height from a PNG's header."""
    assert content[:8] == b"\x89PNG\r\n\x1a\n", content[:8]
    return int.from_bytes(content[16:20], "big"), int.from_bytes(content[20:24], "big")


def check_a4_png(photo: SentDocument | bytes) -> None:
    """A non-empty PNG of A4 proportions (portrait or landscape) that the phone can show."""
    content = photo.content if isinstance(photo, SentDocument) else photo
    width, height = png_size(content)
    assert len(content) > 20_000
    assert abs(max(width, height) / min(width, height) - A4) < 0.01, (width, height)
    assert min(width, height) >= 1200
    if isinstance(photo, SentDocument):
        assert (photo.width, photo.height) == (width, height)


def check_pdf(document: SentDocument | bytes) -> None:
    """A non-empty one-page PDF."""
    content = document.content if isinstance(document, SentDocument) else document
    assert content[:5] == b"%PDF-" and len(content) > 5_000
    assert b"/Count 1" in content  # one page
    assert b"/MediaBox [ 0 0 595.44 841.68 ]" in content or b"/MediaBox [ 0 0 841.68 595.44 ]" in content  # A4


async def checkin(server: BotAPIServer, user: SimUser, answers: dict[str, str]) -> None:
    """The participant does the weekly check-in with these answers (none / no elsewhere)."""
    await says(server, user, "/checkin", is_question)
    await answer_all(server, user, answers, default="no")


async def press_start(server: BotAPIServer, user: SimUser, instrument: str, answers: dict[str, str]) -> None:
    """The participant taps Start on a visit questionnaire's prompt and answers it."""
    prompt = [m for m in reminders(server, USER) if f"qstart:{instrument}" in str(m.buttons)][-1]
    data = next(d for row in prompt.buttons for _t, d in row if d and d.startswith(f"qstart:{instrument}"))
    update = await user.press(prompt, data)
    await server.wait_for(USER, is_question, since=update)
    await answer_all(server, user, answers, default="no")


async def twelve_weeks(bot: BotHarness, server: BotAPIServer) -> SimUser:
    """BSM-015 (arm B, methotrexate on Fridays) from baseline to the week-12 visit day."""
    code = await enroll(server, f"{STUDY} B {BASELINE.isoformat()} en fri")
    user = server.user(USER, "P", language_code="en")
    await link(server, user, code, "English")
    for week in range(12):
        friday = dhaka(2026, 10, 30, 9) + timedelta(weeks=week)
        sunday = friday + timedelta(days=2, hours=2)  # 11:00, after the 10:00 check-in prompt
        if week == PAUSED_WEEK:
            await walk(bot, friday - timedelta(days=4))
            await admin_says(server, f"/pause {STUDY} 2026-12-13 travelling", "paused")
        await walk(bot, friday)
        if week not in (UNANSWERED_WEEK, PAUSED_WEEK):
            reminder = [m for m in reminders(server, USER) if "methotrexate day" in m.content][-1]
            button = "Skipped" if week == SKIPPED_WEEK else "✅ Taken"
            data = next(d for row in reminder.buttons for t, d in row if d and (button in t or t.endswith(button)))
            update = await user.press(reminder, data)
            await server.wait_for(USER, since=update)
        await walk(bot, sunday)
        if week + 1 in CHECKINS:
            await checkin(server, user, CHECKINS[week + 1][0])
        if week + 1 == 4:  # the week-4 visit day: visit questionnaires, then the visit is recorded
            await press_start(server, user, "patient_global", {"pga": "6"})
            await press_start(server, user, "haq_di", {})
            await admin_says(server, f"/visit {STUDY} 4 done 2026-11-22", "recorded as done")
        if week + 1 == 8:  # a serious report: admitted to hospital; the coordinator acknowledges
            await says(server, user, "/report", is_question)
            await answer_all(
                server,
                user,
                {
                    "ae_what": "fever_infection",
                    "ae_start": "yesterday",
                    "ae_severity": "self_care",
                    "ser_hospital": "yes",
                },
            )
            assert bot.services is not None
            async with bot.services.sessions() as session:
                event = await session.scalar(select(AdverseEvent))
                assert event is not None
            await admin_says(server, f"/ack {event.alert_id} admitted to BSMMU", "acknowledged")
    await walk(bot, dhaka(2027, 1, 17, 11))  # the week-12 visit day (a Sunday)
    return user


async def test_twelve_weeks_summary_matches_the_database_and_reaches_the_chat(
    bot: BotHarness, server: BotAPIServer, tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)
    await twelve_weeks(bot, server)
    photos, documents = len(server.photos(ADMIN_ID)), len(server.documents(ADMIN_ID))
    caption = await admin_says(server, f"/summary {STUDY}", lambda m: m.document is not None)
    await server.wait_for(ADMIN_ID, lambda m: m.document is not None and m.document.filename.endswith(".pdf"))
    assert caption.content.startswith(f"Visit summary · {STUDY} · arm B · 17 Jan 2027")
    (photo,) = server.photos(ADMIN_ID)[photos:]
    (pdf,) = server.documents(ADMIN_ID)[documents:]
    check_a4_png(photo)
    assert photo.height > photo.width  # portrait
    check_pdf(pdf)
    assert pdf.filename == f"summary-{STUDY}-20270117.pdf"

    services = bot.services
    assert services is not None
    async with services.sessions() as session:
        record = await summary.load_record(session, STUDY, services.protocol)
        logs = list(await session.scalars(select(DoseLog)))
        events = list(await session.scalars(select(AdverseEvent)))
        checkins = list(
            await session.scalars(
                select(QuestionnaireSession).where(
                    QuestionnaireSession.instrument_id == "weekly_checkin",
                    QuestionnaireSession.status == QuestionnaireStatus.COMPLETED,
                )
            )
        )
        audited = list(await session.scalars(select(AuditEntry).where(AuditEntry.action == "summary.view")))
        now = bot.clock.now()
        overview = await summary.load_overview(session, services.protocol, now)
        whole = summary.overview_rows(await summary.load_all(session, services.protocol), now, services.protocol.tz)
    page = summary.build_summary(record, services.protocol, services.instruments, bot.clock.now())
    assert len(audited) == 1 and audited[0].participant_id == record.participant.id
    # The overview's set-based read gives what the whole record gives.
    assert overview == whole
    (line,) = overview
    assert line.last_checkin == date(2027, 1, 10) and line.next_visit is not None and line.next_visit.week == 12
    assert sum(reminded for _, _, reminded in line.weeks) > 0

    # Header: this visit is week 12, adherence runs from the week-4 visit.
    assert page.header.visit is not None and page.header.visit.week == 12
    assert page.period == (date(2026, 11, 22), date(2027, 1, 17))

    # Adherence equals the dose log, day by day.
    start, end = page.period
    for strip in page.adherence:
        mine = {d.dose_date: d.answer for d in logs if d.regimen == strip.regimen and start <= d.dose_date <= end}
        marks = dict(strip.days)
        for day, answer in mine.items():
            expected = {
                DoseAnswer.TAKEN: summary.DoseMark.TAKEN,
                DoseAnswer.SKIPPED: summary.DoseMark.SKIPPED,
                DoseAnswer.NO_ANSWER: summary.DoseMark.NO_ANSWER,
            }[answer]
            assert marks[day] is expected, (strip.regimen, day)
        assert strip.reminded == len(mine)
        assert strip.taken == sum(1 for a in mine.values() if a is DoseAnswer.TAKEN)
        assert {d for d, m in strip.days if m is summary.DoseMark.NOT_REMINDED} == {
            d for d in marks if d not in mine and d < end
        }
    mtx = next(s for s in page.adherence if s.regimen == "methotrexate")
    fridays = {date(2026, 10, 30) + timedelta(weeks=w): w for w in range(12)}
    assert [fridays[d] for d, m in mtx.days if m is summary.DoseMark.NOT_REMINDED] == [PAUSED_WEEK]
    assert [fridays[d] for d, m in mtx.days if m is summary.DoseMark.NO_ANSWER] == [UNANSWERED_WEEK]
    assert (mtx.taken, mtx.reminded) == (6, 7) and round(mtx.percent or 0) == 86
    # The skipped dose was before the week-4 visit: in the log, not on this page.
    assert any(d.answer is DoseAnswer.SKIPPED for d in logs) and not mtx.count(summary.DoseMark.SKIPPED)

    # The heat map's cells equal the check-in grades stored with each check-in, and what was answered.
    heat = page.heatmap
    assert heat.weeks == sorted(CHECKINS)
    for session_row in checkins:
        week = (session_row.started_at.astimezone(services.protocol.tz).date() - BASELINE).days // 7
        for code, grade in session_row.triage["result"]["grades"].items():  # type: ignore[index]
            assert heat.cells[(code, week)] == grade
    for week, (_answers, grades) in CHECKINS.items():
        for code, grade in grades.items():
            assert heat.cells[(code, week)] == grade
        assert all(g == 0 for (c, w), g in heat.cells.items() if w == week and c not in grades)
    # Worst first: both reached grade 3; nausea's weeks add up to more (2+1+3 against 3+1).
    assert [code for code, _ in heat.symptoms] == ["nausea", "fatigue"]
    assert heat.red_flags == {5: ["mtx_extra_dose"]}

    # The AE table equals the adverse-event rows (and the alerts around them).
    aes = [row for row in page.events if row.ref.startswith("AE ")]
    assert len(aes) == len(events) == 1
    (event,) = events
    (row,) = aes
    assert row.ref == f"AE {event.id}" and row.kind == "SAE" and row.grade == event.grade == 3
    assert row.criteria == ["hospitalisation"] and row.acknowledged.startswith("admin ")
    assert row.day == event.onset_date
    alert_rows = [r for r in page.events if r.ref.startswith("alert #")]
    assert {r.kind for r in alert_rows} >= {"URGENT"}  # the red flag
    # The same-day alerts of the grade-3 weeks carry that grade (from the alert rows' triage).
    assert sorted(r.grade for r in alert_rows if r.kind == "same-day") == [3, 3]
    assert row.what == "Fever or infection"
    assert all("P" not in r.acknowledged.split() for r in page.events)  # roles, never names

    # Visit questionnaire scores at the week-4 visit.
    scores = {s.instrument: s.points for s in page.scores}
    assert scores["patient_global"] == [(4, 6.0)] and scores["haq_di"] == [(4, 0.0)]

    # The shell gives the same page.
    code, text = await run(["summary", STUDY, "--out", str(tmp_path / "s.pdf")], bot.clock)
    assert code == 0 and "s.pdf" in text
    check_pdf((tmp_path / "s.pdf").read_bytes())
    check_a4_png((tmp_path / "s.png").read_bytes())


async def test_overview_lists_every_participant_and_reaches_the_chat(
    bot: BotHarness, server: BotAPIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = await enroll(server, "BSM-020 A 2026-10-25 en")
    user = server.user(1020, "P", language_code="en")
    await link(server, user, code, "English")
    await enroll(server, "BSM-021 B 2026-10-25 en fri")  # not linked
    for day, answer in ((25, "✅ Taken"), (26, None), (27, "✅ Taken")):
        await walk(bot, dhaka(2026, 10, day, 9, 5))
        if answer:
            await presses(server, user, reminders(server, 1020)[-1], answer, "noted")
    await walk(bot, dhaka(2026, 10, 28, 12))
    await admin_says(server, "/overview", lambda m: m.document is not None and m.document.kind == "photo")
    await server.wait_for(ADMIN_ID, lambda m: m.document is not None and m.document.filename.endswith(".pdf"))
    (photo,) = server.photos(ADMIN_ID)
    check_a4_png(photo)
    assert photo.width > photo.height  # landscape
    check_pdf(server.documents(ADMIN_ID)[-1])

    assert bot.services is not None
    monkeypatch.setattr(summary, "OVERVIEW_CHUNK", 1)  # a chunk per participant
    async with bot.services.sessions() as session:
        records = await summary.load_all(session, bot.services.protocol)
        logs = list(await session.scalars(select(DoseLog)))
        held = len(session.identity_map)
        lines = await summary.load_overview(session, bot.services.protocol, bot.clock.now())
        assert len(session.identity_map) == held  # the chunks let go, what the session held kept
    rows = summary.overview_rows(records, bot.clock.now(), bot.services.protocol.tz)
    assert lines == rows
    assert [r.study_id for r in rows] == ["BSM-020", "BSM-021"]
    first, second = rows
    assert sum(r for _, _, r in first.weeks) == len(logs) == 4
    assert sum(t for _, t, _ in first.weeks) == sum(1 for d in logs if d.answer is DoseAnswer.TAKEN) == 2
    assert first.adherence == 50.0 and first.weeks[-1] == (0, 2, 4)
    assert first.next_visit is not None and first.next_visit.week == 4 and first.days_to_visit == 25
    assert second.status == "invited" and second.adherence is None and second.next_visit is None


async def test_bad_input_unknown_id_no_data_yet_and_strangers(bot: BotHarness, server: BotAPIServer) -> None:
    reply = await admin_says(server, "/summary BSM-999", "Not done")
    assert "no participant with study id BSM-999" in reply.content
    reply = await admin_says(server, "/summary", "Not done")
    assert "usage: /summary STUDY_ID" in reply.content

    await enroll(server, "BSM-030 A 2026-10-25 en")
    caption = await admin_says(server, "/summary BSM-030", lambda m: m.document is not None)
    assert caption.content.endswith("no data yet")
    (photo,) = server.photos(ADMIN_ID)
    check_a4_png(photo)
    assert bot.services is not None
    async with bot.services.sessions() as session:
        record = await summary.load_record(session, "BSM-030", bot.services.protocol)
    page = summary.build_summary(record, bot.services.protocol, bot.services.instruments, bot.clock.now())
    assert page.empty and page.notes == ["Enrolled, not linked to Telegram yet: the bot has sent nothing."]

    stranger = server.user(4242, "S", language_code="en")
    for command in ("/summary BSM-030", "/overview"):
        update = await stranger.send(command)
        (refusal,) = await server.wait_for(4242, since=update)
        assert "only for the study team" in refusal.content
    assert server.photos(4242) == [] and server.documents(4242) == []
    async with bot.services.sessions() as session:
        refused = list(await session.scalars(select(AuditEntry).where(AuditEntry.action == "admin.refuse")))
    assert [r.detail for r in refused] == ["/summary", "/overview"]
    assert all(r.actor.startswith("telegram:h:") for r in refused)  # strangers only as keyed hashes

    # An admin in a group that is not the coordinator chat: no pictures there.
    admin = server.user(ADMIN_ID, "Admin", language_code="en", label="admin")
    server.group(-5555, title="Friends")
    update = await admin.send("/overview", chat=-5555)
    (reply,) = await server.wait_for(-5555, since=update)
    assert "only in your private chat with the bot or in the coordinator chat" in reply.content
    assert server.photos(-5555) == []
    # … and in the coordinator chat: yes.
    update = await admin.send("/summary BSM-030", chat=COORDINATOR_CHAT)
    await server.wait_for(COORDINATOR_CHAT, lambda m: m.document is not None, since=update)
    assert len(server.photos(COORDINATOR_CHAT)) == 1


SUNDAY_ON = {"weekly_overview": True}


async def test_sunday_overview_is_sent_once_by_two_processes(
    server: BotAPIServer, db_url: str, clock: ManualClock
) -> None:
    async with BotHarness(server, db_url, clock, overrides=SUNDAY_ON) as bot:
        await sunday_twice(server, db_url, bot)


async def sunday_twice(server: BotAPIServer, db_url: str, bot: BotHarness) -> None:
    """Three Sundays, two processes ticking together: one picture each Sunday."""
    code = await enroll(server, "BSM-040 A 2026-10-25 en")
    await link(server, server.user(1040, "P", language_code="en"), code, "English")
    await walk(bot, dhaka(2026, 10, 25, 7, 59))  # the harness starts on Sunday 25 October, 09:00
    await walk(bot, dhaka(2026, 10, 31, 23))
    assert [p.caption for p in server.photos(COORDINATOR_CHAT)] == [
        "Sunday overview · NCT06936215 · 1 participant(s) · 2026-10-25"
    ]
    services = build_services(bot.settings(), bot.clock)
    second = build_application(services)  # a second process on the same database
    await second.initialize()
    assert bot.app is not None
    both = (bot.app, second)
    try:
        bot.clock.set(dhaka(2026, 11, 1, 7, 59))  # Sunday, before 08:00: nothing
        await asyncio.gather(*(run_all(app) for app in both))
        assert len(server.photos(COORDINATOR_CHAT)) == 1
        bot.clock.set(dhaka(2026, 11, 1, 8, 0))
        await asyncio.gather(*(run_all(app) for app in both), *(run_all(app) for app in both))
        bot.clock.set(dhaka(2026, 11, 1, 20, 0))
        await asyncio.gather(*(run_all(app) for app in both))
        assert len(server.photos(COORDINATOR_CHAT)) == 2
        photo = server.photos(COORDINATOR_CHAT)[-1]
        check_a4_png(photo)
        assert photo.caption == "Sunday overview · NCT06936215 · 1 participant(s) · 2026-11-01"
        bot.clock.set(dhaka(2026, 11, 2, 8, 0))  # Monday: nothing more
        await asyncio.gather(*(run_all(app) for app in both))
        bot.clock.set(dhaka(2026, 11, 8, 8, 1))  # the next Sunday: the next one
        await asyncio.gather(*(run_all(app) for app in both))
        assert len(server.photos(COORDINATOR_CHAT)) == 3
    finally:
        await second.shutdown()
        await services.engine.dispose()
    async with bot.services.sessions() as session:  # type: ignore[union-attr]
        reports = list(await session.scalars(select(TeamReport).order_by(TeamReport.period)))
        sent = list(await session.scalars(select(AuditEntry).where(AuditEntry.action == "overview.send")))
    assert [(r.period, r.chats_sent, r.sent_at is not None) for r in reports] == [
        ("2026-10-25", 1, True),
        ("2026-11-01", 1, True),
        ("2026-11-08", 1, True),
    ]
    assert len(sent) == 3


async def test_a_failed_sunday_send_is_taken_up_again_after_the_lease(
    server: BotAPIServer, db_url: str, clock: ManualClock
) -> None:
    async with BotHarness(server, db_url, clock, overrides=SUNDAY_ON) as bot:
        await enroll(server, "BSM-041 A 2026-10-25 en")
        bot.clock.set(dhaka(2026, 11, 1, 8, 0))
        server.faults.add("sendPhoto", "500")
        await bot.tick()
        assert server.photos(COORDINATOR_CHAT) == []
        bot.clock.advance(timedelta(minutes=1))
        await bot.tick()  # still leased: not yet
        assert server.photos(COORDINATOR_CHAT) == []
        bot.clock.advance(timedelta(minutes=5))
        await bot.tick()
        assert len(server.photos(COORDINATOR_CHAT)) == 1


async def test_weekly_overview_false_sends_no_sunday_picture(bot: BotHarness, server: BotAPIServer) -> None:
    assert bot.services is not None and not bot.services.settings.weekly_overview  # the harness's default
    await enroll(server, "BSM-042 A 2026-10-25 en")
    bot.clock.set(dhaka(2026, 11, 1, 8, 0))
    await bot.tick()
    assert server.photos(COORDINATOR_CHAT) == []


# --------------------------------------------------------------------------- pure parts


def test_event_text_never_quotes_free_text() -> None:
    from models import AdverseEvent

    flags = dict.fromkeys(
        ["results_in_death", "life_threatening", "disability", "congenital_anomaly", "important_medical_event"], False
    )
    staff = AdverseEvent(source="staff", category="staff", term="Rahima's son phoned", hospitalisation=True, **flags)
    other = AdverseEvent(
        source="participant", category="other", term="my name is Rahima", hospitalisation=False, **flags
    )
    listed = AdverseEvent(source="participant", category="pain", term="Pain", hospitalisation=False, **flags)
    assert summary.event_what(staff) == "serious event recorded by the study team"
    assert "Rahima" not in summary.event_what(other)
    assert summary.event_what(listed) == "Pain"


def test_staff_roles_never_names() -> None:
    assert summary.staff_role("Dr Nasreen (coordinator:5100)") == "coordinator"
    assert summary.staff_role("Admin (admin:900)") == "admin"
    assert summary.staff_role("cli:rahim") == "cli"
    assert summary.staff_role(None) == "?"


def test_pages_are_a4_even_when_nothing_is_recorded() -> None:
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    tz = ZoneInfo("Asia/Dhaka")
    now = datetime(2026, 11, 1, 2, tzinfo=UTC)
    overview = render_overview([], "NCT06936215", now, tz)
    check_a4_png(overview.png)
    check_pdf(overview.pdf)
    assert (overview.width, overview.height) == png_size(overview.png)
    head = summary.Header("BSM-1", "A", "Arm A", [], date(2026, 10, 25), 1, None, None, "invited", [])
    heat = summary.HeatMap([], [], {}, {}, 0)
    empty = summary.Summary(head, now, (date(2026, 10, 25), date(2026, 11, 1)), [], heat, [], [], empty=True)
    page = render_summary(empty, tz)
    check_a4_png(page.png)
    check_pdf(page.pdf)


def _record(arm: str = "B", **kw: object) -> summary.ParticipantRecord:
    """A participant's record built by hand (no database): the pure functions' input."""
    from domain.content import load_content
    from models import Language, Participant, ParticipantStatus

    protocol = load_content().protocol
    person = Participant(
        id=1,
        study_id="BSM-1",
        arm=arm,
        baseline_date=BASELINE,
        language=Language.EN,
        status=kw.pop("status", ParticipantStatus.ACTIVE),
        own_weekday=4 if arm == "B" else None,
        paused_until=None,
        pause_reason=None,
        withdrawn_at=None,
    )
    visits = [summary._visit_info(protocol, person, v.week, None) for v in protocol.visits]
    fields: dict[str, object] = {
        "participant": person,
        "visits": visits,
        "doses": [],
        "dose_weekdays": {"methotrexate": 4, "folic_acid": 5} if arm == "B" else {},
        "checkins": [],
        "adverse_events": [],
        "alerts": [],
        "scores": [],
        "unreachable_since": None,
    }
    fields.update(kw)
    return summary.ParticipantRecord(**fields)  # type: ignore[arg-type]


def _dose(regimen: str, day: date, answer: DoseAnswer | None) -> DoseLog:
    from datetime import UTC, datetime, time

    return DoseLog(
        regimen=regimen,
        drug=regimen,
        dose_date=day,
        planned_time=time(9),
        reminded_at=datetime(day.year, day.month, day.day, 3, tzinfo=UTC),
        answer=answer,
    )


def test_adherence_marks_each_planned_dose_day_from_the_log() -> None:
    from domain.content import load_content

    protocol = load_content().protocol
    fridays = [date(2026, 10, 30) + timedelta(weeks=w) for w in range(4)]
    doses = [
        _dose("methotrexate", fridays[0], DoseAnswer.TAKEN),
        _dose("methotrexate", fridays[1], DoseAnswer.SKIPPED),
        # fridays[2]: never reminded (paused)
        _dose("methotrexate", fridays[3], DoseAnswer.LATER),  # today, not answered yet
    ]
    record = _record(doses=doses)
    mtx, folic = summary.adherence_strips(record, protocol, BASELINE, fridays[3], fridays[3])
    assert [m for _, m in mtx.days] == [
        summary.DoseMark.TAKEN,
        summary.DoseMark.SKIPPED,
        summary.DoseMark.NOT_REMINDED,
        summary.DoseMark.PENDING,
    ]
    assert (mtx.taken, mtx.reminded) == (1, 3) and round(mtx.percent or 0) == 33
    assert [d.weekday() for d, _ in folic.days] == [5, 5, 5] and folic.percent is None
    # A day later the LATER answer of a past day counts as no answer.
    mtx, _ = summary.adherence_strips(record, protocol, BASELINE, fridays[3], fridays[3] + timedelta(days=1))
    assert mtx.days[-1][1] is summary.DoseMark.NO_ANSWER


def test_heat_map_rows_worst_first_quiet_ones_counted_and_red_flags_by_week() -> None:
    from datetime import UTC, datetime

    def row(week: int, grades: dict[str, int], flags: tuple[str, ...] = (), status: str = "completed"):
        at = datetime(2026, 10, 25, 4, tzinfo=UTC) + timedelta(weeks=week)
        return summary.CheckinRow(at, week, grades, flags, status)

    record = _record(
        checkins=[
            row(1, {"nausea": 1, "rash": 0, "cough": 2}),
            row(1, {"nausea": 2, "rash": 0, "cough": 2}),  # the later of a week wins
            row(2, {"nausea": 0, "rash": 0, "cough": 3}),
            row(3, {}, ("mtx_lung",), "cancelled"),  # a cancelled one: its red flag only
        ]
    )
    heat = summary.symptom_heatmap(record, {"nausea": "Nausea", "cough": "Cough", "rash": "Rash"})
    assert heat.weeks == [1, 2]
    assert heat.symptoms == [("cough", "Cough"), ("nausea", "Nausea")]
    assert heat.cells[("nausea", 1)] == 2 and heat.cells[("cough", 2)] == 3
    assert heat.quiet == 1 and heat.red_flags == {3: ["mtx_lung"]}
    assert summary.symptom_heatmap(record, {}, max_rows=1).symptoms == [("cough", "cough")]


def test_this_visit_is_the_one_whose_window_holds_today_and_adherence_runs_from_the_last_attended() -> None:
    record = _record()
    week4 = next(v for v in record.visits if v.week == 4)
    assert summary.this_visit(record.visits, week4.window_start) == week4
    assert summary.this_visit(record.visits, BASELINE + timedelta(days=1)) == week4  # the next one
    assert summary.last_visit(record.visits, week4.day).week == 0  # type: ignore[union-attr]
    attended = summary.VisitInfo(
        4, week4.name, week4.target, week4.day, week4.window_start, week4.window_end, "done", week4.day
    )
    visits = [attended if v.week == 4 else v for v in record.visits]
    assert summary.last_visit(visits, week4.day + timedelta(days=1)) == attended


def test_overview_blocks_are_the_last_four_weeks_of_the_dose_log() -> None:
    today = date(2026, 11, 22)
    doses = [_dose("baricitinib", today - timedelta(days=n), DoseAnswer.TAKEN if n % 2 else None) for n in range(30)]
    row = summary.overview_row(_record("A", doses=doses), today)
    assert [b for b, _, _ in row.weeks] == [3, 2, 1, 0]
    assert sum(r for _, _, r in row.weeks) == 28  # days 0..27; days 28 and 29 fall outside
    assert row.weeks[-1] == (0, 3, 7)  # today .. 6 days back: odd days taken
    assert row.next_visit is not None and row.next_visit.week == 4 and row.days_to_visit == 0


async def test_the_test_server_takes_photos_as_telegram_does(server: BotAPIServer) -> None:
    """sendPhoto on the local server: the size read from the picture, refusals as Telegram's."""
    from telegram import Bot
    from telegram.error import BadRequest

    from devtools.harness import TOKEN

    def png(width: int, height: int) -> bytes:
        import io

        from matplotlib.figure import Figure

        fig = Figure(figsize=(width / 100, height / 100))
        out = io.BytesIO()
        fig.savefig(out, format="png", dpi=100)
        return out.getvalue()

    server.user(1001)
    async with Bot(TOKEN, base_url=server.base_url) as bot:
        message = await bot.send_photo(1001, png(300, 200), caption="a picture", filename="p.png")
        assert message.photo[-1].width == 300 and message.photo[-1].height == 200
        assert message.caption == "a picture"
        with pytest.raises(BadRequest, match=r"(?i)photo_invalid_dimensions"):
            await bot.send_photo(1001, png(2100, 100))  # sides more than 20 to 1
        with pytest.raises(BadRequest, match=r"(?i)image_process_failed"):
            await bot.send_photo(1001, b"not a picture")
    (photo,) = server.photos(1001)
    assert (photo.width, photo.height, photo.kind, photo.mime_type) == (300, 200, "photo", "image/png")


def test_a_score_is_charted_at_the_visit_its_response_belongs_to() -> None:
    from datetime import UTC, datetime

    finished = datetime(2027, 1, 10, 3, tzinfo=UTC)  # inside the week-12 window (baseline 25 October)
    late_week4 = summary.ScoreRow("haq_di", finished, 1.5, visit_week=4)
    older_row = summary.ScoreRow("patient_global", finished, 7.0)  # no visit stored: the nearest visit
    series = {s.instrument: s.points for s in summary.score_series(_record(scores=[late_week4, older_row]), UTC)}
    assert series["haq_di"] == [(4, 1.5)] and series["patient_global"] == [(12, 7.0)]


def _line(study_id: str, open_alerts: int = 0, unreachable: bool = False, taken: int = 7) -> summary.OverviewRow:
    weeks = [(back, taken if back == 0 else 0, 7 if back == 0 else 0) for back in range(3, -1, -1)]
    return summary.OverviewRow(study_id, "A", "active", weeks, open_alerts, None, None, None, unreachable, False)


def test_an_overview_page_lists_everyone_by_study_id_while_they_fit() -> None:
    rows = [_line(f"BSM-{i:03d}", open_alerts=i % 3) for i in range(summary.OVERVIEW_LINES)]
    assert summary.overview_page(rows) == (rows, 0)


def test_a_trial_larger_than_a_page_shows_those_needing_attention_most() -> None:
    """Open alerts first (most first), then unreachable, then the lowest adherence; the
    rest are counted, not drawn (a page of 100,000 lines helps nobody)."""
    calm = [_line(f"BSM-{i:03d}") for i in range(100)]
    worst = [
        _line("BSM-900", open_alerts=1),
        _line("BSM-901", open_alerts=3),
        _line("BSM-902", unreachable=True),
        _line("BSM-903", taken=2),
        _line("BSM-904", taken=5),
    ]
    shown, left_out = summary.overview_page(calm + worst, limit=7)
    assert [r.study_id for r in shown] == ["BSM-901", "BSM-900", "BSM-902", "BSM-903", "BSM-904", "BSM-000", "BSM-001"]
    assert left_out == 98
    page = render_overview(calm + worst, "NCT06936215", datetime(2026, 11, 1, 2, tzinfo=UTC), ZoneInfo("Asia/Dhaka"))
    check_a4_png(page.png)
