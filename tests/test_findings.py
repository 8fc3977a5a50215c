"""Findings meet time, end to end on SQLite and PostgreSQL with the real bot and the
ManualClock: each week's check-in is new, abandoned questionnaires are closed and
their findings raised, same-day alerts follow clinic hours, new findings are new
messages or new alerts, and a mis-tapped No can be corrected."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from devtools.botapi_server import BotAPIServer, SentMessage, SimUser
from devtools.harness import COORDINATOR_CHAT, ESCALATION_CHAT, BotHarness
from domain import questionnaire_sessions
from export.datasets import Scope
from export.followup import adverse_events
from models import (
    AdverseEvent,
    Alert,
    AlertLevel,
    AuditEntry,
    Participant,
    QuestionnaireAnswer,
    QuestionnaireSession,
    QuestionnaireStatus,
)
from tests.bothelpers import admin_says, says
from tests.test_questionnaire_flow import (
    answer_all,
    button_for,
    callback_text,
    count,
    is_question,
    latest_question,
    linked,
    press_value,
    push_press,
    q_item,
    rows,
)

DHAKA_OFFSET = timedelta(hours=6)


def dhaka(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """A Dhaka wall-clock time as an aware UTC datetime."""
    return datetime(year, month, day, hour, minute, tzinfo=UTC) - DHAKA_OFFSET


async def answer_until(
    server: BotAPIServer, user: SimUser, answers: Mapping[str, str], stop: str, default: str = "no"
) -> SentMessage:
    """Answer questions (by item id, else `default`/"none") until item `stop` is asked; returns it."""
    message = latest_question(server, user)
    for _ in range(60):
        item = q_item(message)
        assert item is not None, message.content
        if item == stop:
            return message
        values = [data.split(":", 3)[3] for row in message.buttons for _t, data in row if data]
        value = answers.get(item) or (default if default in values else ("none" if "none" in values else values[0]))
        message = await press_value(server, user, message, value)
    raise AssertionError(f"{stop} was never asked")


async def test_week_one_checkin_abandoned_expires_once_and_week_two_asks_the_red_flags_again(
    bot: BotHarness, server: BotAPIServer
) -> None:
    user = await linked(server, "BSM-101", "A", 1101, "en")  # baseline Sunday 25 Oct 2026
    bot.clock.set(dhaka(2026, 11, 1, 10))  # study week 1, Sunday 10:00
    first = await says(server, user, "/checkin", is_question)
    assert q_item(first).startswith("rf_")  # type: ignore[union-attr]
    # every red flag answered (no), a severe symptom, then the participant stops answering
    await answer_until(server, user, {"mouth_stomach_any": "yes", "nausea": "severe"}, "vomiting")
    assert await count(bot, Alert) == 0  # same-day findings wait for the whole picture
    [week1] = await rows(bot, QuestionnaireSession)
    assert week1.expires_at == dhaka(2026, 11, 8)  # the end of study week 1

    bot.clock.set(dhaka(2026, 11, 7, 23, 59))
    await bot.tick()
    [week1] = await rows(bot, QuestionnaireSession)
    assert week1.status is QuestionnaireStatus.IN_PROGRESS
    bot.clock.set(dhaka(2026, 11, 8, 0, 0))  # the week is over
    await bot.tick()
    await bot.tick()
    [week1] = await rows(bot, QuestionnaireSession)
    assert week1.status is QuestionnaireStatus.EXPIRED and week1.closed_at == bot.clock.now()
    assert await count(bot, AuditEntry, AuditEntry.action == "questionnaire.expired") == 1
    [alert] = await rows(bot, Alert)  # its same-day finding, raised as if it had been finished
    assert alert.level is AlertLevel.SAME_DAY and "grade:nausea" in alert.details["keys"]
    assert "(not finished)" in alert.summary
    answers = await rows(bot, QuestionnaireAnswer, QuestionnaireAnswer.session_id == week1.id)
    assert any(a.item_id == "nausea" for a in answers)  # answers kept
    assert server.messages(COORDINATOR_CHAT) == []  # Sunday 00:00: waits for clinic hours

    bot.clock.set(dhaka(2026, 11, 8, 10))
    week2 = await says(server, user, "/checkin", is_question)
    assert q_item(week2) == q_item(first) and "Question 1 of" in week2.content  # from question 1
    assert "continue" not in week2.content
    sessions = await rows(bot, QuestionnaireSession)
    assert sorted(s.status.value for s in sessions) == ["expired", "in_progress"]
    await bot.tick()
    (paged,) = await server.wait_for(COORDINATOR_CHAT, "SAME-DAY REVIEW")
    assert "BSM-101" in paged.content


async def test_a_checkin_stored_before_expiry_times_existed_is_still_closed_by_the_tick(
    bot: BotHarness, server: BotAPIServer
) -> None:
    """A check-in open when migration 0008 ran has no expiry time; the tick gives it
    the end of its study week and closes it then, without waiting for the participant."""
    from sqlalchemy import update

    user = await linked(server, "BSM-114", "A", 1114, "en")
    bot.clock.set(dhaka(2026, 11, 1, 10))  # study week 1
    await says(server, user, "/checkin", is_question)
    await answer_until(server, user, {"mouth_stomach_any": "yes", "nausea": "severe"}, "vomiting")
    assert bot.services is not None
    async with bot.services.sessions() as db:  # as a row from before 0008
        await db.execute(update(QuestionnaireSession).values(expires_at=None))
        await db.commit()
    await bot.tick()
    [legacy] = await rows(bot, QuestionnaireSession)
    assert legacy.status is QuestionnaireStatus.IN_PROGRESS and legacy.expires_at == dhaka(2026, 11, 8)
    bot.clock.set(dhaka(2026, 11, 8, 0, 0))
    await bot.tick()
    [legacy] = await rows(bot, QuestionnaireSession)
    assert legacy.status is QuestionnaireStatus.EXPIRED
    [alert] = await rows(bot, Alert)
    assert alert.level is AlertLevel.SAME_DAY and "grade:nausea" in alert.details["keys"]


async def test_a_checkin_of_last_week_is_expired_when_the_participant_comes_back_before_the_tick(
    bot: BotHarness, server: BotAPIServer
) -> None:
    user = await linked(server, "BSM-102", "B", 1102, "en")
    first = await says(server, user, "/checkin", is_question)
    await press_value(server, user, first, "no")
    bot.clock.set(dhaka(2026, 11, 1, 9))  # a new study week, no tick ran yet
    again = await says(server, user, "/checkin", is_question)
    assert q_item(again) == "rf_mtx_extra_dose" and "continue" not in again.content
    statuses = sorted(s.status.value for s in await rows(bot, QuestionnaireSession))
    assert statuses == ["expired", "in_progress"]


async def test_a_checkin_put_aside_by_a_report_is_not_resumed_after_its_week_ended(
    bot: BotHarness, server: BotAPIServer
) -> None:
    user = await linked(server, "BSM-113", "A", 1113, "en")
    bot.clock.set(dhaka(2026, 10, 31, 23, 0))  # Saturday 23:00: the last hour of study week 0
    first = await says(server, user, "/checkin", is_question)
    await press_value(server, user, first, "no")
    await says(server, user, "/report", is_question)  # the check-in is put aside
    bot.clock.set(dhaka(2026, 11, 1, 0, 30))  # week 1 began; the tick has not run yet
    update = await user.send("/cancel")
    await server.wait_for(user.id, "Stopped", since=update)
    statuses = sorted(s.status.value for s in await rows(bot, QuestionnaireSession))
    assert statuses == ["cancelled", "expired"]  # not resumed where it stopped
    again = await says(server, user, "/checkin", is_question)
    assert q_item(again) == q_item(first) and "continue" not in again.content


async def test_an_idle_report_with_hospitalisation_is_closed_and_gives_an_incomplete_adverse_event(
    bot: BotHarness, server: BotAPIServer
) -> None:
    user = await linked(server, "BSM-103", "A", 1103, "en")
    await says(server, user, "/report", is_question)
    asked = await answer_until(
        server,
        user,
        {"ae_what": "fever_infection", "ae_start": "yesterday", "ae_severity": "self_care", "ser_hospital": "yes"},
        "ae_more",  # red flags and seriousness come first in /report, then the onset and how bad
    )
    assert asked is not None
    (urgent,) = await server.wait_for(COORDINATOR_CHAT, "URGENT")
    assert await count(bot, AdverseEvent) == 0  # not yet: the report is open

    bot.clock.advance(timedelta(hours=1, minutes=59))
    await bot.tick()
    assert await count(bot, AdverseEvent) == 0
    bot.clock.advance(timedelta(minutes=1))  # two hours without an answer
    await bot.tick()
    [report] = await rows(bot, QuestionnaireSession)
    assert report.status is QuestionnaireStatus.EXPIRED
    [event] = await rows(bot, AdverseEvent)
    assert event.serious and event.hospitalisation and not event.complete and event.grade == 3
    first, later = await rows(bot, Alert)
    assert first.escalated_at is not None  # nobody acknowledged it within 30 minutes
    # the grade found at the close is a new finding after an escalation: a new alert with its own clock
    assert later.details["follows"] == first.id and later.details["new_keys"] == ["grade:reported_problem"]
    assert later.level is AlertLevel.URGENT and later.escalated_at is None and event.alert_id == first.id
    (new_msg,) = await server.wait_for(COORDINATOR_CHAT, f"after alert #{first.id}")
    assert "NEW FINDINGS" not in urgent.content and "BSM-103" in new_msg.content
    assert bot.services is not None
    async with bot.services.sessions() as db:
        scope = Scope(bot.services.settings.tz, None, bot.services.protocol, dict(bot.services.instruments))
        dataset = await adverse_events(db, scope)
    [row] = dataset.rows
    assert row["complete"] is False and row["sae_hospitalisation"] is True
    assert "complete" in {v.name for v in dataset.variables}


async def test_same_day_at_0801_on_a_clinic_day_is_paged_at_once_and_escalates_at_2000(
    bot: BotHarness, server: BotAPIServer
) -> None:
    user = await linked(server, "BSM-104", "A", 1104, "en")
    bot.clock.set(dhaka(2026, 10, 26, 8, 1))  # Monday 08:01
    await says(server, user, "/report", is_question)
    await answer_until(
        server, user, {"ae_what": "fever_infection", "ae_start": "today", "ae_severity": "self_care"}, "ae_more"
    )
    await user.send("/cancel")  # grade 3, no red flag: a same-day finding
    (paged,) = await server.wait_for(COORDINATOR_CHAT, "SAME-DAY REVIEW")
    assert "BSM-104" in paged.content
    [alert] = await rows(bot, Alert)
    assert alert.escalate_at == dhaka(2026, 10, 26, 20)
    bot.clock.set(dhaka(2026, 10, 26, 19, 59))
    await bot.tick()
    assert server.messages(ESCALATION_CHAT) == []
    bot.clock.set(dhaka(2026, 10, 26, 20))
    await bot.tick()
    (escalated,) = await server.wait_for(ESCALATION_CHAT, "ESCALATED")
    assert "end of clinic hours" in escalated.content


async def test_same_day_at_2100_on_thursday_arrives_at_0800_on_sunday(bot: BotHarness, server: BotAPIServer) -> None:
    user = await linked(server, "BSM-105", "A", 1105, "en")
    bot.clock.set(dhaka(2026, 10, 29, 21))  # Thursday 21:00; Friday and Saturday are no clinic days
    await says(server, user, "/report", is_question)
    await answer_until(
        server, user, {"ae_what": "fever_infection", "ae_start": "today", "ae_severity": "self_care"}, "ae_more"
    )
    await user.send("/cancel")
    for moment in (dhaka(2026, 10, 29, 21, 1), dhaka(2026, 10, 30, 8), dhaka(2026, 11, 1, 7, 59)):
        bot.clock.set(moment)
        await bot.tick()
        assert [m for m in server.messages(COORDINATOR_CHAT) if "SAME-DAY" in m.content] == []
    bot.clock.set(dhaka(2026, 11, 1, 8))
    await bot.tick()
    (paged,) = await server.wait_for(COORDINATOR_CHAT, "SAME-DAY REVIEW")
    assert "BSM-105" in paged.content
    [alert] = [a for a in await rows(bot, Alert) if a.level is AlertLevel.SAME_DAY]
    assert alert.escalate_at == dhaka(2026, 11, 1, 20)


async def test_a_red_flag_after_an_acknowledged_alert_is_a_new_alert_with_its_own_escalation(
    bot: BotHarness, server: BotAPIServer
) -> None:
    user = await linked(server, "BSM-106", "B", 1106, "en")
    first = await says(server, user, "/checkin", is_question)
    second = await press_value(server, user, first, "yes")  # methotrexate on more than one day
    (alert_msg,) = await server.wait_for(COORDINATOR_CHAT, "URGENT")
    [first_alert] = await rows(bot, Alert)
    await admin_says(server, f"/ack {first_alert.id}", "acknowledged")
    [first_alert] = await rows(bot, Alert)
    assert first_alert.details["acknowledged_keys"] == ["flag:mtx_extra_dose"]
    bot.clock.advance(timedelta(minutes=10))
    await press_value(server, user, second, "yes")  # a new red flag after the acknowledgement
    new_msgs = await server.wait_for(COORDINATOR_CHAT, lambda m: "after alert #" in m.content)
    assert "URGENT" in new_msgs[0].content and new_msgs[0].button_texts == ["✅ Acknowledge"]
    alerts = await rows(bot, Alert)
    assert len(alerts) == 2 and alerts[1].details["follows"] == first_alert.id
    assert alerts[1].details["new_keys"] == ["flag:mtx_pneumonitis"]
    bot.clock.advance(timedelta(minutes=31))  # its own clock
    await bot.tick()
    (escalated,) = await server.wait_for(ESCALATION_CHAT, "ESCALATED")
    assert f"Alert #{alerts[1].id}" in escalated.content
    assert "Acknowledged" not in escalated.content and alert_msg.buttons == []


async def test_grade_3_and_own_words_after_an_acknowledged_urgent_alert_raise_a_new_alert(
    bot: BotHarness, server: BotAPIServer
) -> None:
    user = await linked(server, "BSM-111", "B", 1111, "en")
    first = await says(server, user, "/checkin", is_question)
    await press_value(server, user, first, "yes")
    await server.wait_for(COORDINATOR_CHAT, "URGENT")
    [urgent] = await rows(bot, Alert)
    await admin_says(server, f"/ack {urgent.id} phoned", "acknowledged")
    entry = (await rows(bot, AuditEntry, AuditEntry.action == "alert.acknowledge"))[0]
    assert entry.after["covered"] == ["flag:mtx_extra_dose"]  # what the coordinator was shown
    await answer_until(server, user, {"mouth_stomach_any": "yes", "nausea": "severe"}, "anything_else")
    update = await user.send("my feet are swollen")
    await server.wait_for(user.id, lambda m: "Thank you" in m.content, since=update)
    (later,) = await server.wait_for(COORDINATOR_CHAT, f"after alert #{urgent.id}")
    assert "Nausea" in later.content and "my feet are swollen" in later.content
    alerts = await rows(bot, Alert)
    assert len(alerts) == 2 and alerts[1].level is AlertLevel.URGENT and alerts[1].acknowledged_at is None
    new_keys = alerts[1].details["new_keys"]
    assert "grade:nausea" in new_keys and any(k.startswith("text:anything_else:") for k in new_keys)


async def test_a_late_yes_on_a_finished_report_adds_the_criterion_to_its_adverse_event(
    bot: BotHarness, server: BotAPIServer
) -> None:
    user = await linked(server, "BSM-112", "A", 1112, "en")
    await says(server, user, "/report", is_question)
    hospital = await answer_until(
        server, user, {"ae_what": "fever_infection", "ae_start": "today", "ae_severity": "mild"}, "ser_hospital"
    )
    await press_value(server, user, hospital, "no")
    closing = await answer_all(server, user, {"ae_start": "today", "ae_severity": "mild"})
    assert "report is saved" in closing.content
    [event] = await rows(bot, AdverseEvent)
    assert not event.serious and event.complete and await count(bot, Alert) == 0
    bot.clock.advance(timedelta(hours=5))
    update = await user.press(hospital, button_for(hospital, "yes"))  # "I was admitted, I tapped No"
    await server.wait_for(user.id, "changed to Yes", since=update)
    (paged,) = await server.wait_for(COORDINATOR_CHAT, "URGENT")
    assert "SERIOUS" in paged.content
    [event] = await rows(bot, AdverseEvent)
    assert event.serious and event.hospitalisation and event.complete
    assert await count(bot, AuditEntry, AuditEntry.action == "adverse_event.criteria_added") == 1


async def test_a_late_yes_is_a_correction_and_a_later_no_withdraws_nothing(
    bot: BotHarness, server: BotAPIServer
) -> None:
    user = await linked(server, "BSM-107", "B", 1107, "en")
    first = await says(server, user, "/checkin", is_question)
    await press_value(server, user, first, "no")  # the stiff finger
    assert first.button_texts == ["Yes", "✓ No"]  # the answered red flag keeps its buttons
    [session] = await rows(bot, QuestionnaireSession)
    bot.clock.advance(timedelta(minutes=3))
    update = await user.press(first, button_for(first, "yes"))
    advice, confirm = await server.wait_for(
        user.id, lambda m: "⚠️" in m.content or "changed to Yes" in m.content, 2, since=update
    )
    assert "Do not take any more methotrexate" in advice.content and "study team has been told" in confirm.content
    assert first.button_texts == ["✓ Yes", "No"]
    (paged,) = await server.wait_for(COORDINATOR_CHAT, "URGENT")
    assert "methotrexate on more than one day" in paged.content
    stored = await rows(bot, QuestionnaireAnswer, QuestionnaireAnswer.item_id == "rf_mtx_extra_dose")
    assert [a.value for a in stored] == [False, True] and stored[1].answered_at == bot.clock.now()
    assert await count(bot, AuditEntry, AuditEntry.action == "questionnaire.correction") == 1

    # a later No: recorded, the alert stands, the coordinators see both answers
    update = await user.press(first, button_for(first, "no"))
    await server.wait_for(user.id, "changed to No", since=update)
    (changed,) = await server.wait_for(COORDINATOR_CHAT, "Changed their answer from YES to NO")
    urgent = [a for a in await rows(bot, Alert) if a.level is AlertLevel.URGENT]
    assert len(urgent) == 1 and urgent[0].acknowledged_at is None and f"#{urgent[0].id}" in changed.content
    stored = await rows(bot, QuestionnaireAnswer, QuestionnaireAnswer.item_id == "rf_mtx_extra_dose")
    assert [a.value for a in stored] == [False, True, False]
    [session] = await rows(bot, QuestionnaireSession)
    assert session.status is QuestionnaireStatus.IN_PROGRESS


async def test_a_red_flag_answered_by_typing_keeps_its_buttons_too(bot: BotHarness, server: BotAPIServer) -> None:
    user = await linked(server, "BSM-110", "B", 1110, "en")
    first = await says(server, user, "/checkin", is_question)
    await says(server, user, "no", is_question)
    marked = await server.wait_for(user.id, lambda m: m.message_id == first.message_id and "✓ No" in m.button_texts)
    assert marked[0].button_texts == ["Yes", "✓ No"]
    update = await user.press(first, button_for(first, "yes"))
    await server.wait_for(user.id, "changed to Yes", since=update)
    await server.wait_for(COORDINATOR_CHAT, "URGENT")


async def test_a_late_yes_counts_for_24_hours_after_the_session_closed(bot: BotHarness, server: BotAPIServer) -> None:
    user = await linked(server, "BSM-108", "B", 1108, "en")
    first = await says(server, user, "/checkin", is_question)
    second = await press_value(server, user, first, "no")
    await user.send("/cancel")
    await server.wait_for(user.id, "Stopped")
    bot.clock.advance(timedelta(hours=23, minutes=59))
    update = await user.press(first, button_for(first, "yes"))
    await server.wait_for(user.id, "changed to Yes", since=update)
    await server.wait_for(COORDINATOR_CHAT, "URGENT")
    bot.clock.advance(timedelta(hours=1))  # more than 24 hours after /cancel
    stale = push_press(server, user, first, button_for(first, "no"))
    assert "Nothing was changed" in await callback_text(server, stale)
    stored = await rows(bot, QuestionnaireAnswer, QuestionnaireAnswer.item_id == "rf_mtx_extra_dose")
    assert [a.value for a in stored] == [False, True]
    assert second.buttons == []  # the unanswered question's buttons went with /cancel
    assert len([a for a in await rows(bot, Alert) if a.level is AlertLevel.URGENT]) == 1


async def test_two_processes_expire_a_session_exactly_once(bot: BotHarness, server: BotAPIServer) -> None:
    user = await linked(server, "BSM-109", "A", 1109, "en")
    await says(server, user, "/report", is_question)
    await answer_until(
        server, user, {"ae_what": "fever_infection", "ae_start": "today", "ser_hospital": "yes"}, "ser_life"
    )
    assert bot.services is not None
    services = bot.services
    from bot.handlers.questionnaire import env_of

    env = env_of(services)
    now = bot.clock.now() + timedelta(hours=3)

    async def one_process() -> bool:
        async with services.sessions() as db:
            [session] = list(await db.scalars(select(QuestionnaireSession)))
            participant = await db.get(Participant, session.participant_id)
            assert participant is not None
            done = await questionnaire_sessions.expire(db, participant, session, now=now, env=env)
            await db.commit()
            return done

    results = await asyncio.gather(one_process(), one_process())
    assert sorted(results) == [False, True]
    assert await count(bot, AuditEntry, AuditEntry.action == "questionnaire.expired") == 1
    assert await count(bot, AdverseEvent) == 1


async def test_two_taken_presses_at_once_in_two_processes_still_raise_the_double_dose_alert(
    bot: BotHarness, server: BotAPIServer, db_url: str
) -> None:
    """PostgreSQL: two processes, two reminders, both "Taken" at the same moment."""
    import pytest

    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite has one writer at a time; the race is PostgreSQL's")
    from datetime import time

    from domain.doses import answer_dose
    from models import DoseAnswer, DoseLog, ScheduledMessage
    from models.db import create_engine, create_session_factory
    from tests.test_reminders import mtx_participant

    await mtx_participant(bot, server)
    assert bot.services is not None
    async with bot.services.sessions() as db:
        log = (await db.scalars(select(DoseLog).where(DoseLog.regimen == "methotrexate"))).first()
        assert log is not None
        reminder = await db.scalar(select(ScheduledMessage).where(ScheduledMessage.key == log.reminder_key))
        assert reminder is not None
        pid = reminder.participant_id
        other = ScheduledMessage(
            participant_id=pid,
            key="dose:methotrexate:2026-10-23",
            kind="dose_reminder",
            due_at=reminder.due_at - timedelta(days=7),
            stale_after=reminder.stale_after,
            respects_quiet_hours=False,
            payload=dict(reminder.payload),
            status=reminder.status,
            next_attempt_at=reminder.next_attempt_at,
            created_at=reminder.created_at,
            updated_at=reminder.updated_at,
        )
        db.add(other)
        db.add(
            DoseLog(
                participant_id=pid,
                reminder_key=other.key,
                regimen="methotrexate",
                drug="methotrexate",
                dose_date=dhaka(2026, 10, 23).date(),
                planned_time=time(9),
                reminded_at=dhaka(2026, 10, 23, 9),
                later_count=0,
            )
        )
        await db.commit()
        ids = [reminder.id, other.id]
    now = bot.clock.now()
    protocol = bot.services.protocol

    async def one_process(reminder_id: int) -> None:
        engine = create_engine(db_url)  # its own engine and connections: another process
        try:
            async with create_session_factory(engine)() as db:
                participant = await db.get(Participant, pid)
                assert participant is not None
                await answer_dose(
                    db, participant, reminder_id, DoseAnswer.TAKEN, now=now, protocol=protocol, coordinator_chats=[]
                )
                await db.commit()
        finally:
            await engine.dispose()

    await asyncio.gather(*(one_process(i) for i in ids))
    alerts = [a for a in await rows(bot, Alert) if a.kind == "mtx_double_dose"]
    assert len(alerts) == 1 and alerts[0].level is AlertLevel.URGENT


# ---------------------------------------------------------------- pure parts


def test_same_day_window_follows_clinic_days_hours_and_holidays() -> None:
    from datetime import date, time
    from zoneinfo import ZoneInfo

    from scheduler.calendar import ClinicCalendar, same_day_window

    tz = ZoneInfo("Asia/Dhaka")
    clinic = ClinicCalendar(frozenset({6, 0, 1, 2, 3}), frozenset({date(2026, 12, 16)}))  # Sun-Thu; Victory Day

    def window(at: datetime) -> tuple[datetime, datetime]:
        return same_day_window(at, tz, clinic, time(8), time(20))

    monday_0801 = dhaka(2026, 10, 26, 8, 1)
    assert window(monday_0801) == (monday_0801, dhaka(2026, 10, 26, 20))
    assert window(dhaka(2026, 10, 26, 8)) == (dhaka(2026, 10, 26, 8), dhaka(2026, 10, 26, 20))  # opening: in
    assert window(dhaka(2026, 10, 26, 7, 59)) == (dhaka(2026, 10, 26, 8), dhaka(2026, 10, 26, 20))
    assert window(dhaka(2026, 10, 26, 20)) == (dhaka(2026, 10, 27, 8), dhaka(2026, 10, 27, 20))  # closing: out
    assert window(dhaka(2026, 10, 26, 21)) == (dhaka(2026, 10, 27, 8), dhaka(2026, 10, 27, 20))
    assert window(dhaka(2026, 10, 29, 21)) == (dhaka(2026, 11, 1, 8), dhaka(2026, 11, 1, 20))  # Thu night -> Sun
    assert window(dhaka(2026, 10, 31, 12)) == (dhaka(2026, 11, 1, 8), dhaka(2026, 11, 1, 20))  # Saturday noon
    assert window(dhaka(2026, 12, 16, 10)) == (dhaka(2026, 12, 17, 8), dhaka(2026, 12, 17, 20))  # a holiday


def test_clinic_hours_and_report_idle_close_are_checked_and_default() -> None:
    import pytest

    from scheduler.protocol import ProtocolError, protocol_from_mapping
    from tests.test_protocol import base

    data = base()
    data.pop("clinic_hours", None)
    data.pop("report_idle_close", None)
    default = protocol_from_mapping(data, "inline")
    assert (default.clinic_hours.start.hour, default.clinic_hours.end.hour) == (8, 20)
    assert default.report_idle_close == timedelta(hours=2)
    bad = base()
    bad["clinic_hours"] = {"start": "20:00", "end": "08:00"}
    with pytest.raises(ProtocolError, match="clinic_hours"):
        protocol_from_mapping(bad, "inline")


def test_finding_keys_add_grades_worsening_and_own_words_only_when_final() -> None:
    from domain.content import load_content
    from domain.findings import finding_keys
    from domain.questionnaires.loader import load_instruments
    from domain.triage import triage

    instruments = load_instruments(Path(__file__).resolve().parent.parent / "content" / "instruments")
    checkin = instruments["weekly_checkin"]
    answers = {"rf_mtx_extra_dose": True, "mouth_stomach_any": True, "nausea": "severe", "anything_else": "dizzy"}
    result = triage(checkin, answers, "B", table=load_content().triage)
    partial = finding_keys(checkin, answers, result, final=False)
    assert partial == {"flag:mtx_extra_dose"}
    final = finding_keys(checkin, answers, result, final=True)
    assert {"flag:mtx_extra_dose", "grade:nausea"} <= final
    assert any(key.startswith("text:anything_else:") for key in final) and "dizzy" not in str(final)
