"""Reminders end to end: both arms walked through 24 weeks by moving the injected clock
from one due row to the next and ticking (no sleeping), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import datetime, time, timedelta

from sqlalchemy import select

from devtools.bangla_check import problems
from devtools.botapi_server import BotAPIServer, SentMessage, SimUser
from devtools.harness import STUDY_PHONE, BotHarness
from models import Alert, AlertLevel, AuditEntry, DoseAnswer, DoseLog, MessageStatus, ScheduledMessage
from scheduler.planner import MessageKind
from tests.bothelpers import admin_says, enroll, link, presses, says
from tests.schedule_helpers import dhaka, local, reminders, rows, walk

MESSAGE_KINDS = {
    MessageKind.DOSE_REMINDER.value,
    MessageKind.DOSE_FOLLOWUP.value,
    MessageKind.DOSE_REMIND_LATER.value,
    MessageKind.VISIT_REMINDER.value,
    MessageKind.CHECKIN_PROMPT.value,
    MessageKind.QUESTIONNAIRE_PROMPT.value,
}


def quiet(at: datetime) -> bool:
    wall = local(at).time()
    return wall >= time(22) or wall < time(7)


async def alerts(bot: BotHarness, kind: str) -> list[Alert]:
    assert bot.services is not None
    async with bot.services.sessions() as session:
        return list(await session.scalars(select(Alert).where(Alert.kind == kind).order_by(Alert.id)))


async def dose_logs(bot: BotHarness) -> list[DoseLog]:
    assert bot.services is not None
    async with bot.services.sessions() as session:
        return list(await session.scalars(select(DoseLog).order_by(DoseLog.dose_date, DoseLog.id)))


def check_sent_once_at_the_right_time(
    stored: list[ScheduledMessage], server: BotAPIServer, chat_id: int
) -> list[ScheduledMessage]:
    """Every SENT message row went out once (each reminder message in the chat is the one
    recorded on exactly one row), at its due time, and bot-timed ones never in quiet hours."""
    sent = [r for r in stored if r.kind in MESSAGE_KINDS and r.status is MessageStatus.SENT]
    recorded = [r.telegram_message_id for r in sent]
    assert len(set(recorded)) == len(recorded)
    in_chat = {m.message_id for m in server.messages(chat_id)}
    assert set(recorded) <= in_chat
    assert {m.message_id for m in reminders(server, chat_id)} <= set(recorded)  # no unrecorded duplicate
    for row in sent:
        assert row.sent_at == row.due_at, row.key
        assert row.telegram_message_id is not None
        if row.respects_quiet_hours:
            assert not quiet(row.sent_at), row.key
    assert not [r for r in stored if r.status in (MessageStatus.SENDING, MessageStatus.FAILED)]
    return sent


async def test_arm_b_walks_24_weeks_with_taken_presses_a_visit_a_restart_and_withdrawal(
    bot: BotHarness, server: BotAPIServer
) -> None:
    code = await enroll(server, "BSM-001 B 2026-10-25 en fri")
    user = server.user(1001, "P", language_code="en")
    await link(server, user, code, "English")

    # Weeks 0-3: each methotrexate reminder answered with Taken.
    for week in range(4):
        friday = dhaka(2026, 10, 30, 9) + timedelta(weeks=week)
        await walk(bot, friday)
        (reminder,) = [m for m in reminders(server, 1001) if "methotrexate day" in m.content][-1:]
        assert "Friday" in reminder.content and "25 mg" in reminder.content and "twice" in reminder.content
        await presses(server, user, reminder, "✅ Taken", "noted that you took")

    # The week 4 visit is recorded: its remaining reminders and window check stop.
    await walk(bot, dhaka(2026, 11, 22, 12))
    await admin_says(server, "/visit BSM-001 4 done 2026-11-22", "recorded as done")

    # A restart in the middle of the trial loses and duplicates nothing.
    await walk(bot, dhaka(2027, 1, 3, 9, 30))
    await bot.restart()

    await walk(bot, dhaka(2027, 3, 14, 12))
    withdrawn_at = bot.clock.now()
    await admin_says(server, "/withdraw BSM-001 moved away", "withdrawn")
    before = len(reminders(server, 1001))
    await walk(bot, dhaka(2027, 5, 1))
    assert len(reminders(server, 1001)) == before  # nothing after withdrawal

    stored = await rows(bot, "BSM-001")
    sent = check_sent_once_at_the_right_time(stored, server, 1001)
    assert all(r.sent_at is not None and r.sent_at <= withdrawn_at for r in sent)
    assert not [r for r in stored if r.status is MessageStatus.PLANNED]
    kinds = {r.kind for r in sent}
    assert kinds >= {"dose_reminder", "dose_followup", "visit_reminder", "checkin_prompt", "questionnaire_prompt"}
    # Weekly doses only on their days: methotrexate on Fridays, folic acid on Saturdays.
    for row in sent:
        if row.kind == "dose_reminder":
            day = local(row.sent_at).date() if row.sent_at else None
            assert day is not None and day.weekday() == (4 if row.payload["regimen"] == "methotrexate" else 5)
            assert local(row.sent_at).time() == time(9, 0) if row.sent_at else False
    # No reminder of the recorded week 4 visit after it was recorded; week 12 was never recorded.
    assert [a.details["week"] for a in await alerts(bot, "visit_missed")] == [12]
    logs = await dose_logs(bot)
    taken = [d for d in logs if d.answer is DoseAnswer.TAKEN]
    assert len(taken) == 4 and all(d.regimen == "methotrexate" for d in taken)
    assert all(d.answer in (DoseAnswer.TAKEN, DoseAnswer.NO_ANSWER) for d in logs if d.dose_date < withdrawn_at.date())
    # 20 weeks of two weekly doses, each reminded once
    assert len([r for r in sent if r.kind == "dose_reminder"]) == len(logs) == 40


async def test_arm_a_walks_24_weeks_with_an_early_settime_and_a_pause(bot: BotHarness, server: BotAPIServer) -> None:
    code = await enroll(server, "BSM-002 A 2026-10-25 bn")
    user = server.user(1002, "Q", language_code="bn")
    await link(server, user, code)

    await walk(bot, dhaka(2026, 10, 27, 12))
    # 04:30 for suhoor: inside quiet hours, but the participant's own time is honoured.
    reply = await says(server, user, "/settime ০৪:৩০", "৪:৩০")
    assert "ভোর ৪:৩০" in reply.content  # two-digit hour: the 24-hour clock, said as people say it

    await walk(bot, dhaka(2026, 12, 6, 12))
    await admin_says(server, "/pause BSM-002 2026-12-20 travelling", "paused until 2026-12-20")
    pause_start = bot.clock.now()
    await walk(bot, dhaka(2027, 5, 1))

    stored = await rows(bot, "BSM-002")
    sent = check_sent_once_at_the_right_time(stored, server, 1002)
    pause_end = dhaka(2026, 12, 20)
    assert not [r for r in sent if r.sent_at is not None and pause_start <= r.sent_at < pause_end]
    doses = [r for r in sent if r.kind == "dose_reminder"]
    after_settime = [r for r in doses if r.sent_at is not None and r.sent_at > dhaka(2026, 10, 28)]
    assert after_settime and all(local(r.sent_at).time() == time(4, 30) for r in after_settime if r.sent_at)
    # every day has its one reminder, except the 13 whole days of the pause (7-19 December)
    assert len(doses) == 168 - 13
    paused_days = {f"2026-12-{d:02d}" for d in range(7, 20)}
    assert len({r.payload["date"] for r in doses}) == 155 and not paused_days & {r.payload["date"] for r in doses}
    # the three visits were never recorded: one urgent alert each at the end of its window
    missed = await alerts(bot, "visit_missed")
    assert [a.details["week"] for a in missed] == [4, 12, 24]
    assert all(a.level is AlertLevel.URGENT for a in missed)
    assert not [r for r in stored if r.status is MessageStatus.PLANNED]
    # the texts are in Bangla
    assert any("বারিসিটিনিব" in m.content for m in reminders(server, 1002))


async def mtx_participant(bot: BotHarness, server: BotAPIServer, lang: str = "en") -> SimUser:
    code = await enroll(server, f"BSM-003 B 2026-10-25 {lang} fri")
    user = server.user(1003, "R", language_code=lang)
    await link(server, user, code, "English" if lang == "en" else "বাংলা")
    bot.clock.set(dhaka(2026, 10, 30, 8, 59))
    await bot.tick()  # the enrolment day's rows are stale by now
    bot.clock.set(dhaka(2026, 10, 30, 9))
    await bot.tick()
    return user


def last_dose_reminder(server: BotAPIServer, chat_id: int) -> SentMessage:
    return [m for m in reminders(server, chat_id) if m.buttons and (m.buttons[0][0][1] or "").startswith("dose:")][-1]


async def audit_actions(bot: BotHarness, prefix: str) -> list[str]:
    assert bot.services is not None
    async with bot.services.sessions() as session:
        actions = await session.scalars(select(AuditEntry.action).order_by(AuditEntry.id))
        return [a for a in actions if a.startswith(prefix)]


async def test_methotrexate_taken_twice_in_six_days_raises_an_urgent_alert_and_advises_at_once(
    bot: BotHarness, server: BotAPIServer
) -> None:
    user = await mtx_participant(bot, server)
    assert bot.services is not None
    async with bot.services.sessions() as session:  # a methotrexate dose confirmed 3 days ago
        pid = (await session.scalars(select(DoseLog.participant_id))).first()
        session.add(
            DoseLog(
                participant_id=pid,
                reminder_key="dose:methotrexate:2026-10-27",
                regimen="methotrexate",
                drug="methotrexate",
                dose_date=dhaka(2026, 10, 28).date(),
                planned_time=time(9),
                reminded_at=dhaka(2026, 10, 27, 9),
                answer=DoseAnswer.TAKEN,
                answered_at=dhaka(2026, 10, 27, 9, 5),
                later_count=0,
            )
        )
        await session.commit()
    reminder = last_dose_reminder(server, 1003)
    first = await user.press(reminder, "✅ Taken")
    (advice,) = await server.wait_for(1003, STUDY_PHONE, since=first)
    assert "methotrexate" in advice.content.lower()
    (alert,) = await alerts(bot, "mtx_double_dose")
    assert alert.level is AlertLevel.URGENT and "BSM-003" in alert.summary and "72 hours" in alert.summary
    # A second tap on Taken (delivered before the buttons were removed): recorded once.
    again = {k: v for k, v in first.items() if k != "update_id"}
    again["callback_query"] = {**first["callback_query"], "id": "second-tap"}
    server.push_update(again)
    answer = None
    for _ in range(100):  # the bot answers the press asynchronously
        answer = server.callback_answer("second-tap")
        if answer is not None:
            break
        await asyncio.sleep(0.05)
    assert answer is not None and "Already saved" in (answer.text or "")
    assert len(await alerts(bot, "mtx_double_dose")) == 1
    assert await audit_actions(bot, "dose.") == ["dose.taken"]


async def test_remind_me_later_comes_back_after_an_hour_and_the_follow_up_after_two(
    bot: BotHarness, server: BotAPIServer
) -> None:
    user = await mtx_participant(bot, server, "bn")
    reminder = last_dose_reminder(server, 1003)
    assert "শুক্রবার" in reminder.content and "২৫" in reminder.content
    ack = await presses(server, user, reminder, "⏰ পরে মনে করিয়ে দিন", "১০:০০")
    assert "১০:০০" in ack.content
    await walk(bot, dhaka(2026, 10, 30, 10, 0))
    again = last_dose_reminder(server, 1003)
    assert again.message_id != reminder.message_id
    await presses(server, user, again, "খাইনি", "দ্বিগুণ")  # skipped: never double up
    await walk(bot, dhaka(2026, 10, 31, 8))  # no 2-hour follow-up: the dose is answered
    stored = {r.key: r for r in await rows(bot, "BSM-003")}
    assert stored["dose:methotrexate:2026-10-30:followup"].status is MessageStatus.CANCELLED
    assert stored["dose:methotrexate:2026-10-30:no_answer"].status is MessageStatus.SKIPPED
    (log,) = [d for d in await dose_logs(bot) if d.regimen == "methotrexate"]
    assert log.answer is DoseAnswer.SKIPPED and log.later_count == 1 and log.answered_at == dhaka(2026, 10, 30, 10)
    assert await audit_actions(bot, "dose.") == ["dose.later", "dose.skipped"]


async def test_an_unanswered_dose_gets_one_follow_up_then_no_answer(bot: BotHarness, server: BotAPIServer) -> None:
    await mtx_participant(bot, server)
    await walk(bot, dhaka(2026, 10, 31, 1))
    follow = last_dose_reminder(server, 1003)
    assert "gentle reminder" in follow.content
    assert len([m for m in reminders(server, 1003) if "methotrexate day" in m.content]) == 2  # reminder + follow-up
    (log,) = [d for d in await dose_logs(bot) if d.regimen == "methotrexate"]
    assert log.answer is DoseAnswer.NO_ANSWER and log.answered_at == dhaka(2026, 10, 31, 0)


async def test_visit_buttons_and_a_new_date_request_alerts_the_coordinators(
    bot: BotHarness, server: BotAPIServer
) -> None:
    code = await enroll(server, "BSM-004 A 2026-10-25 en")
    user = server.user(1004, "S", language_code="en")
    await link(server, user, code, "English")
    await walk(bot, dhaka(2026, 11, 15, 8))  # a week before the week 4 visit (Sunday 22 November)
    (week_before,) = [m for m in reminders(server, 1004) if "in one week" in m.content]
    assert "22 November 2026" in week_before.content
    await presses(server, user, week_before, "I will come", "See you")
    await walk(bot, dhaka(2026, 11, 21, 8))
    day_before = [m for m in reminders(server, 1004) if "Tomorrow" in m.content][-1]
    await presses(server, user, day_before, "I need another date", "call you")
    (alert,) = await alerts(bot, "visit_reschedule")
    assert alert.level is AlertLevel.INFO and "week 4" in alert.summary and "BSM-004" in alert.summary
    assert await audit_actions(bot, "visit.") == ["visit.will_come", "visit.need_other_date"]


async def test_stop_asks_first_then_pauses_everything_and_tells_the_coordinators(
    bot: BotHarness, server: BotAPIServer
) -> None:
    user = await mtx_participant(bot, server)
    prompt = await says(server, user, "/stop", "stop all reminders")
    await presses(server, user, prompt, "No, keep the reminders", "continue")
    assert await alerts(bot, "participant_stop") == []
    prompt = await says(server, user, "/stop", "stop all reminders")
    done = await presses(server, user, prompt, "Yes, stop all messages", "ask the study team")
    assert STUDY_PHONE in done.content
    (alert,) = await alerts(bot, "participant_stop")
    assert alert.level is AlertLevel.INFO
    count = len(reminders(server, 1003))
    await walk(bot, dhaka(2026, 12, 31))
    assert len(reminders(server, 1003)) == count
    assert not [r for r in await rows(bot, "BSM-003") if r.status is MessageStatus.PLANNED]
    assert len(await dose_logs(bot)) == 1  # nothing recorded is deleted
    status = await admin_says(server, "/status BSM-003", "Open alerts")
    assert "paused" in status.content and "participant_stop" in status.content


async def test_schedule_and_settime_in_bangla(bot: BotHarness, server: BotAPIServer) -> None:
    code = await enroll(server, "BSM-005 B 2026-10-25 bn fri")
    user = server.user(1005, "T", language_code="bn")
    await link(server, user, code)
    shown = await says(server, user, "/schedule", "২২ নভেম্বর ২০২৬")
    assert "শুক্রবার" in shown.content and "সকাল ৯:০০" in shown.content  # the next methotrexate reminder
    assert "০৯:০০" not in shown.content and "/settime রাত ৯:৩০" in shown.content
    refused = await says(server, user, "/settime ২৫:০০", "/settime রাত ৯:৩০")
    assert "পড়তে পারিনি" in refused.content
    done = await says(server, user, "/settime রাত ৯:৩০", "রাত ৯:৩০")
    assert "হয়ে গেছে" in done.content
    shown = await says(server, user, "/schedule", "রাত ৯:৩০")
    assert "সকাল ৯:০০" not in shown.content
    assert await dose_times(bot, "BSM-005") == {time(21, 30)}
    # Everything this Bangla reader was sent (the welcome, /schedule, the refusal, the
    # confirmation, every button) follows the glossary: parts of the day, Bengali digits
    # (Latin only in the phone number and the study id), none of the replaced words.
    sent = server.messages(user.id)
    assert len(sent) >= 5
    for message in sent:
        assert STUDY_PHONE not in message.content or message.content.count(STUDY_PHONE) == 1
        for text in (message.content, *message.button_texts):
            assert not problems(text), (text, problems(text))


async def dose_times(bot: BotHarness, study_id: str) -> set[time]:
    """The local times of a participant's planned dose reminders."""
    return {local(r.due_at).time() for r in await rows(bot, study_id) if r.kind == "dose_reminder"}


async def test_a_bare_time_is_asked_back_with_two_buttons_and_the_button_sets_it(
    bot: BotHarness, server: BotAPIServer
) -> None:
    code = await enroll(server, "BSM-006 A 2026-10-25 bn")
    user = server.user(1006, "U", language_code="bn")
    await link(server, user, code)
    # "৯:৩০" alone: morning or night? Asked, never guessed; nothing changes until a button.
    asked = await says(server, user, "/settime ৯:৩০", "কোন সময়টি")
    assert asked.button_texts == ["সকাল ৯:৩০", "রাত ৯:৩০"]
    assert await dose_times(bot, "BSM-006") == {time(9, 0)}
    done = await presses(server, user, asked, "রাত ৯:৩০", "হয়ে গেছে")
    assert "রাত ৯:৩০" in done.content
    assert await dose_times(bot, "BSM-006") == {time(21, 30)}
    # The other ways people write it, each stored as the time they mean.
    for typed, meant in (("৯:৩০ রাতে", time(21, 30)), ("সকাল ৮টা", time(8, 0)), ("২১:৩০", time(21, 30))):
        await says(server, user, f"/settime {typed}", "হয়ে গেছে")
        assert await dose_times(bot, "BSM-006") == {meant}, typed
    assert bot.services is not None
    async with bot.services.sessions() as session:
        entries = list(
            await session.scalars(select(AuditEntry).where(AuditEntry.action == "participant.set_reminder_time"))
        )
    assert len(entries) == 4  # the button and the three typed times; the question itself changes nothing


async def test_settime_in_english_says_and_reads_am_and_pm(bot: BotHarness, server: BotAPIServer) -> None:
    code = await enroll(server, "BSM-007 A 2026-10-25 en")
    user = server.user(1007, "V", language_code="en")
    await link(server, user, code, "English")
    shown = await says(server, user, "/schedule", "medicine reminders")
    assert "9:00 am" in shown.content
    asked = await says(server, user, "/settime 9:30", "Which time")
    assert asked.button_texts == ["9:30 am", "9:30 pm"]
    done = await presses(server, user, asked, "9:30 am", "Done")
    assert "9:30 am" in done.content and await dose_times(bot, "BSM-007") == {time(9, 30)}
    done = await says(server, user, "/settime 9:30 pm", "Done")
    assert "9:30 pm" in done.content and await dose_times(bot, "BSM-007") == {time(21, 30)}
