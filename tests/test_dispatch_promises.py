"""The dispatcher's promises, one test each, through the real bot (the Bot API test
server, the injected clock, the database): what the send-time re-check refuses and why,
the back-off after a failed send (first delay, doubling, cap, never shorter than
Telegram's RetryAfter), and what a sent row leaves behind for each kind.

They name no dispatcher internals (rows, statuses, reasons and messages only), so they
hold across a rewrite of the dispatcher (issue 11: mutation testing of the re-check and
the back-off)."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import delete, func, select

from core.clock import ManualClock
from devtools.botapi_server import BotAPIServer, SimUser
from devtools.harness import COORDINATOR_CHAT, BotHarness
from models import (
    Alert,
    AlertLevel,
    AuditEntry,
    ChatLink,
    ClinicVisit,
    DoseAnswer,
    DoseLog,
    MessageStatus,
    Participant,
    ParticipantStatus,
    QuestionnaireSession,
    QuestionnaireStatus,
    ScheduledMessage,
    VisitStatus,
)
from tests.bothelpers import admin_says, enroll, link, presses
from tests.schedule_helpers import dhaka, reminders, rows, walk
from tests.test_reminders import last_dose_reminder, mtx_participant

DOSE = "dose:methotrexate:2026-10-30"  # the arm B participant's Friday dose (mtx_participant)
BARI = "dose:baricitinib:2026-10-26"  # the arm A participant's Monday dose


async def arm_a(bot: BotHarness, server: BotAPIServer, study_id: str = "BSM-020", user_id: int = 1020) -> SimUser:
    """An arm A participant linked on Sunday 25 October; Monday 08:59, nothing due."""
    code = await enroll(server, f"{study_id} A 2026-10-25 en")
    user = server.user(user_id, "P", language_code="en")
    await link(server, user, code, "English")
    bot.clock.set(dhaka(2026, 10, 26, 8, 59))
    await bot.tick()  # the enrolment day's rows are stale by now
    return user


async def one_row(bot: BotHarness, study_id: str, key: str) -> ScheduledMessage:
    (row,) = await rows(bot, study_id, key=key)
    return row


async def participant_id(bot: BotHarness, study_id: str) -> int:
    assert bot.services is not None
    async with bot.services.sessions() as session:
        pid = await session.scalar(select(Participant.id).where(Participant.study_id == study_id))
        assert pid is not None
        return pid


async def session_participant(bot: BotHarness, study_id: str) -> Participant:
    assert bot.services is not None
    async with bot.services.sessions() as session:
        found = await session.scalar(select(Participant).where(Participant.study_id == study_id))
        assert found is not None
        return found


async def count(bot: BotHarness, model: type, *where: object) -> int:
    assert bot.services is not None
    async with bot.services.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)  # type: ignore[arg-type]


async def set_dose_answer(bot: BotHarness, answer: DoseAnswer | None, at: datetime | None) -> None:
    """The dose answer stored without its follow-ups being cancelled (a press racing the claim)."""
    assert bot.services is not None
    async with bot.services.sessions() as session:
        log = await session.scalar(select(DoseLog).where(DoseLog.reminder_key == DOSE))
        assert log is not None
        log.answer = answer
        log.answered_at = at
        await session.commit()


async def dose_log(bot: BotHarness) -> DoseLog | None:
    assert bot.services is not None
    async with bot.services.sessions() as session:
        found: DoseLog | None = await session.scalar(select(DoseLog).where(DoseLog.reminder_key == DOSE))
        return found


# ---------------------------------------------------------------- the re-check: who is messaged


async def test_a_paused_participants_due_row_is_cancelled_not_sent(bot: BotHarness, server: BotAPIServer) -> None:
    """A pause without an end date that the re-plan missed: the due row is not sent."""
    await arm_a(bot, server)
    assert bot.services is not None
    async with bot.services.sessions() as session:
        participant = await session.get(Participant, await participant_id(bot, "BSM-020"))
        assert participant is not None
        participant.status = ParticipantStatus.PAUSED
        await session.commit()
    before = len(reminders(server, 1020))
    bot.clock.set(dhaka(2026, 10, 26, 9))
    await bot.tick()
    assert len(reminders(server, 1020)) == before
    row = await one_row(bot, "BSM-020", BARI)
    assert row.status is MessageStatus.CANCELLED and row.last_error == "participant paused"


async def test_a_pause_whose_end_date_has_come_sends_again(bot: BotHarness, server: BotAPIServer) -> None:
    """A pause ending today: the participant is messaged again from today."""
    await arm_a(bot, server)
    assert bot.services is not None
    async with bot.services.sessions() as session:
        participant = await session.get(Participant, await participant_id(bot, "BSM-020"))
        assert participant is not None
        participant.status = ParticipantStatus.PAUSED
        participant.paused_until = dhaka(2026, 10, 26, 9).date()  # Monday, the dose day
        await session.commit()
    bot.clock.set(dhaka(2026, 10, 26, 9))
    await bot.tick()
    row = await one_row(bot, "BSM-020", BARI)
    assert row.status is MessageStatus.SENT and row.sent_at == dhaka(2026, 10, 26, 9)
    resumed = await session_participant(bot, "BSM-020")
    assert resumed.status is ParticipantStatus.ACTIVE and resumed.paused_until is None  # /status agrees
    assert await count(bot, AuditEntry, AuditEntry.action == "participant.resume_auto") == 1


async def test_a_row_whose_chat_was_unlinked_is_cancelled_not_sent(bot: BotHarness, server: BotAPIServer) -> None:
    """The chat link gone while the participant is still active (an unlink racing the
    claim): nothing is sent to a chat the bot no longer knows."""
    await arm_a(bot, server)
    assert bot.services is not None
    async with bot.services.sessions() as session:
        await session.execute(delete(ChatLink))
        await session.commit()
    before = len(server.messages(1020))
    bot.clock.set(dhaka(2026, 10, 26, 9))
    await bot.tick()
    assert len(server.messages(1020)) == before
    row = await one_row(bot, "BSM-020", BARI)
    assert row.status is MessageStatus.CANCELLED and row.last_error == "no chat linked"


async def test_a_row_of_a_kind_the_bot_cannot_say_is_skipped_not_sent(bot: BotHarness, server: BotAPIServer) -> None:
    """A row of a kind this version does not know (written by a newer planner): skipped."""
    await arm_a(bot, server)
    assert bot.services is not None
    async with bot.services.sessions() as session:
        row = await session.scalar(select(ScheduledMessage).where(ScheduledMessage.key == BARI))
        assert row is not None
        row.kind = "from_the_future"
        await session.commit()
    before = len(server.messages(1020))
    bot.clock.set(dhaka(2026, 10, 26, 9))
    await bot.tick()
    assert len(server.messages(1020)) == before
    row = await one_row(bot, "BSM-020", BARI)
    assert row.status is MessageStatus.SKIPPED and row.last_error == "unknown kind"


async def test_a_row_is_stale_at_its_stale_time_exactly(bot: BotHarness, server: BotAPIServer) -> None:
    """A reminder reached only at the instant it goes stale is skipped, not sent late."""
    await arm_a(bot, server)
    row = await one_row(bot, "BSM-020", BARI)
    before = len(reminders(server, 1020))
    bot.clock.set(row.stale_after)
    await bot.tick()
    assert len(reminders(server, 1020)) == before
    row = await one_row(bot, "BSM-020", BARI)
    assert row.status is MessageStatus.SKIPPED and row.last_error == "stale"


async def set_stale_after(bot: BotHarness, study_id: str, key: str, at: datetime) -> None:
    assert bot.services is not None
    async with bot.services.sessions() as session:
        row = await session.scalar(
            select(ScheduledMessage).where(
                ScheduledMessage.participant_id == await participant_id(bot, study_id), ScheduledMessage.key == key
            )
        )
        assert row is not None
        row.stale_after = at
        await session.commit()


@pytest.mark.parametrize(
    "stale_after, held",
    [(dhaka(2026, 11, 2, 7), False), (dhaka(2026, 11, 2, 7, 1), True)],
    ids=["stale-when-quiet-hours-end", "still-useful-after-them"],
)
async def test_a_late_invitation_at_night_waits_for_07_00_only_while_it_is_still_useful_then(
    bot: BotHarness, server: BotAPIServer, stale_after: datetime, held: bool
) -> None:
    """Sunday's 10:00 check-in invitation reached at 23:00 (quiet hours, 22:00-07:00): held
    until 07:00 when it is still useful then; skipped at once when it goes stale at 07:00."""
    await arm_a(bot, server)
    bot.clock.set(dhaka(2026, 10, 31, 20))
    await bot.tick()
    await set_stale_after(bot, "BSM-020", "checkin:1", stale_after)
    before = len(reminders(server, 1020))
    bot.clock.set(dhaka(2026, 11, 1, 23))
    await bot.tick()
    assert len(reminders(server, 1020)) == before  # not at night
    row = await one_row(bot, "BSM-020", "checkin:1")
    if held:
        assert row.status is MessageStatus.PLANNED and row.last_error == "quiet hours"
        assert row.next_attempt_at == dhaka(2026, 11, 2, 7)
    else:
        assert row.status is MessageStatus.SKIPPED and row.last_error == "stale after quiet hours"


# ---------------------------------------------------------------- the re-check: doses


@pytest.mark.parametrize("answer", [DoseAnswer.SKIPPED, DoseAnswer.NO_ANSWER])
async def test_a_dose_follow_up_is_not_sent_after_any_final_answer(
    bot: BotHarness, server: BotAPIServer, answer: DoseAnswer
) -> None:
    """Not taken or no answer recorded (Taken: tests/test_safety_paths.py): no nagging."""
    await mtx_participant(bot, server)
    await set_dose_answer(bot, answer, dhaka(2026, 10, 30, 9, 10))
    follow = await one_row(bot, "BSM-003", f"{DOSE}:followup")
    before = len(reminders(server, 1003))
    await walk(bot, follow.due_at + timedelta(minutes=1))
    assert len(reminders(server, 1003)) == before
    follow = await one_row(bot, "BSM-003", f"{DOSE}:followup")
    assert follow.status is MessageStatus.CANCELLED and follow.last_error == "dose answered"


async def test_a_dose_follow_up_is_sent_while_the_participant_only_said_later(
    bot: BotHarness, server: BotAPIServer
) -> None:
    """Later is no answer to the dose: the follow-up still comes."""
    await mtx_participant(bot, server)
    await set_dose_answer(bot, DoseAnswer.LATER, None)
    follow = await one_row(bot, "BSM-003", f"{DOSE}:followup")
    await walk(bot, follow.due_at)
    assert "gentle reminder" in last_dose_reminder(server, 1003).content
    follow = await one_row(bot, "BSM-003", f"{DOSE}:followup")
    assert follow.status is MessageStatus.SENT


async def test_a_remind_me_later_repeat_is_not_sent_after_taken(bot: BotHarness, server: BotAPIServer) -> None:
    """Remind me later, then Taken recorded without the repeat being cancelled: no repeat."""
    user = await mtx_participant(bot, server)
    await presses(server, user, last_dose_reminder(server, 1003), "⏰ Remind me later", "10:00")
    (later,) = [r for r in await rows(bot, "BSM-003") if r.kind == "dose_remind_later"]
    assert later.status is MessageStatus.PLANNED
    await set_dose_answer(bot, DoseAnswer.TAKEN, dhaka(2026, 10, 30, 9, 30))
    before = len(reminders(server, 1003))
    await walk(bot, later.due_at + timedelta(minutes=1))
    assert len(reminders(server, 1003)) == before
    later = await one_row(bot, "BSM-003", later.key)
    assert later.status is MessageStatus.CANCELLED and later.last_error == "dose answered"


async def test_a_dose_whose_reminder_left_no_log_gets_no_follow_up_and_no_no_answer(
    bot: BotHarness, server: BotAPIServer
) -> None:
    """No dose-log row (the reminder was never recorded as sent): the follow-up is
    cancelled and the "no answer" close records nothing."""
    await mtx_participant(bot, server)
    assert bot.services is not None
    async with bot.services.sessions() as session:
        await session.execute(delete(DoseLog).where(DoseLog.reminder_key == DOSE))
        await session.commit()
    before = len(reminders(server, 1003))
    await walk(bot, dhaka(2026, 10, 31, 1))
    assert len(reminders(server, 1003)) == before
    follow = await one_row(bot, "BSM-003", f"{DOSE}:followup")
    assert follow.status is MessageStatus.CANCELLED and follow.last_error == "dose answered"
    close = await one_row(bot, "BSM-003", f"{DOSE}:no_answer")
    assert close.status is MessageStatus.SKIPPED and close.last_error == "no reminder was sent"
    assert await dose_log(bot) is None
    assert await count(bot, AuditEntry, AuditEntry.action == "dose.no_answer") == 0


async def test_the_no_answer_close_keeps_an_answer_given(bot: BotHarness, server: BotAPIServer) -> None:
    """Taken before midnight: the close neither overwrites it nor audits a "no answer"."""
    await mtx_participant(bot, server)
    await set_dose_answer(bot, DoseAnswer.TAKEN, dhaka(2026, 10, 30, 9, 10))
    await walk(bot, dhaka(2026, 10, 31, 1))
    close = await one_row(bot, "BSM-003", f"{DOSE}:no_answer")
    assert close.status is MessageStatus.SKIPPED and close.last_error == "already answered"
    log = await dose_log(bot)
    assert log is not None and log.answer is DoseAnswer.TAKEN and log.answered_at == dhaka(2026, 10, 30, 9, 10)
    assert await count(bot, AuditEntry, AuditEntry.action == "dose.no_answer") == 0


async def test_the_no_answer_close_closes_a_dose_left_at_later_and_cancels_its_repeat(
    bot: BotHarness, server: BotAPIServer
) -> None:
    """Remind me later and then silence: at the close the dose is "no answer" (audited),
    and its pending repeat and follow-up go nowhere after it."""
    user = await mtx_participant(bot, server)
    await presses(server, user, last_dose_reminder(server, 1003), "⏰ Remind me later", "10:00")
    assert bot.services is not None
    async with bot.services.sessions() as session:  # the repeat and follow-up still planned at the close
        for row in await session.scalars(select(ScheduledMessage).where(ScheduledMessage.key.like(f"{DOSE}:%"))):
            if row.kind in ("dose_remind_later", "dose_followup"):
                row.next_attempt_at = row.due_at = dhaka(2026, 10, 31, 0, 30)
                row.stale_after = dhaka(2026, 10, 31, 6)
        await session.commit()
    close = await one_row(bot, "BSM-003", f"{DOSE}:no_answer")
    bot.clock.set(close.due_at)
    await bot.tick()
    close = await one_row(bot, "BSM-003", f"{DOSE}:no_answer")
    assert close.status is MessageStatus.SENT and close.sent_at == close.due_at
    log = await dose_log(bot)
    assert log is not None and log.answer is DoseAnswer.NO_ANSWER and log.answered_at == close.due_at
    assert bot.services is not None
    async with bot.services.sessions() as session:
        (entry,) = await session.scalars(select(AuditEntry).where(AuditEntry.action == "dose.no_answer"))
    assert (entry.at, entry.actor, entry.participant_id) == (close.due_at, "system", close.participant_id)
    assert entry.after == {"reminder_key": DOSE, "dose_date": "2026-10-30"}
    for row in await rows(bot, "BSM-003"):
        if row.kind in ("dose_remind_later", "dose_followup") and row.key.startswith(DOSE):
            assert row.status is MessageStatus.CANCELLED, row.key


# ---------------------------------------------------------------- the re-check: questionnaires, visits


async def completed_check_in(bot: BotHarness, study_id: str, at: datetime, instrument: str = "weekly_checkin") -> None:
    assert bot.services is not None
    async with bot.services.sessions() as session:
        session.add(
            QuestionnaireSession(
                participant_id=await participant_id(bot, study_id),
                instrument_id=instrument,
                instrument_version="1",
                status=QuestionnaireStatus.COMPLETED,
                origin="command",
                state={},
                started_at=at,
                updated_at=at,
                completed_at=at,
            )
        )
        await session.commit()


@pytest.mark.parametrize(
    "before_due, instrument, invited",
    [
        (timedelta(days=3), "weekly_checkin", False),  # exactly 3 days ago: recent enough
        (timedelta(days=3, minutes=1), "weekly_checkin", True),  # longer ago: invited as usual
        (timedelta(hours=1), "patient_global", True),  # another questionnaire does not count
    ],
    ids=["3-days", "3-days-1-minute", "other-instrument"],
)
async def test_a_check_in_invitation_is_skipped_only_after_that_check_in_in_the_last_3_days(
    bot: BotHarness, server: BotAPIServer, before_due: timedelta, instrument: str, invited: bool
) -> None:
    await arm_a(bot, server)
    due = dhaka(2026, 11, 1, 10)  # Sunday: the week 1 check-in invitation
    await completed_check_in(bot, "BSM-020", due - before_due, instrument)
    bot.clock.set(due)
    await bot.tick()
    row = await one_row(bot, "BSM-020", "checkin:1")
    sent = [m for m in reminders(server, 1020) if "qstart:weekly_checkin" in str(m.buttons)]
    if invited:
        assert row.status is MessageStatus.SENT and len(sent) == 1
    else:
        assert row.status is MessageStatus.SKIPPED and row.last_error == "already answered" and sent == []


async def set_visit(bot: BotHarness, study_id: str, week: int, status: VisitStatus) -> None:
    """The visit recorded without the re-plan (as when /visit races the claim)."""
    assert bot.services is not None
    async with bot.services.sessions() as session:
        visit = await session.scalar(
            select(ClinicVisit).where(
                ClinicVisit.participant_id == await participant_id(bot, study_id), ClinicVisit.week == week
            )
        )
        assert visit is not None
        visit.status = status
        await session.commit()


@pytest.mark.parametrize("status", [VisitStatus.DONE, VisitStatus.MISSED])
async def test_a_recorded_visit_gets_no_reminder_and_no_missed_visit_alert(
    bot: BotHarness, server: BotAPIServer, status: VisitStatus
) -> None:
    await arm_a(bot, server)
    reminder = await one_row(bot, "BSM-020", "visit:4:remind:-1")
    check = await one_row(bot, "BSM-020", "visit:4:window_check")
    await set_visit(bot, "BSM-020", 4, status)
    for row in (reminder, check):
        bot.clock.set(row.due_at)
        await bot.tick()
    assert not [m for m in reminders(server, 1020) if m.buttons and "visit:" in str(m.buttons)]
    for key in ("visit:4:remind:-1", "visit:4:window_check"):
        row = await one_row(bot, "BSM-020", key)
        assert row.status is MessageStatus.CANCELLED and row.last_error == "visit recorded", key
    assert await count(bot, Alert, Alert.kind == "visit_missed") == 0


async def test_a_visit_window_closing_unrecorded_raises_one_urgent_alert(bot: BotHarness, server: BotAPIServer) -> None:
    await arm_a(bot, server)
    check = await one_row(bot, "BSM-020", "visit:4:window_check")
    bot.clock.set(check.due_at)
    await bot.tick()
    await bot.tick()
    (alert,) = [a for a in await alerts_of(bot) if a.kind == "visit_missed"]
    assert alert.level is AlertLevel.URGENT and "BSM-020" in alert.summary and "week 4" in alert.summary
    assert alert.source == f"scheduled_message:{check.id}" and alert.details["week"] == 4  # which visit, as data
    assert alert.participant_id == check.participant_id  # on the participant's record (/status), not loose
    check = await one_row(bot, "BSM-020", "visit:4:window_check")
    assert check.status is MessageStatus.SENT and check.sent_at == check.due_at
    (paged,) = await server.wait_for(COORDINATOR_CHAT, "week 4 visit")
    assert "URGENT" in paged.content


@pytest.mark.parametrize(
    "agreed_now, sent",
    [("2026-11-24", True), ("2026-11-23", False), (None, False)],
    ids=["as-agreed", "moved-again", "withdrawn"],
)
async def test_a_new_visit_date_notice_goes_out_only_for_the_date_still_agreed(
    bot: BotHarness, server: BotAPIServer, agreed_now: str | None, sent: bool
) -> None:
    """/visit agrees 24 November for the week 4 visit; by the time its notice is due the
    date may have moved again or been withdrawn (racing the claim): the participant is
    never told a date that no longer holds."""
    await arm_a(bot, server)
    await admin_says(server, "/visit BSM-020 4 on 2026-11-24", "week 4 visit agreed for 2026-11-24")
    (notice,) = [r for r in await rows(bot, "BSM-020") if r.kind == "visit_date_notice"]
    assert bot.services is not None
    async with bot.services.sessions() as session:
        visit = await session.scalar(
            select(ClinicVisit).where(
                ClinicVisit.participant_id == await participant_id(bot, "BSM-020"), ClinicVisit.week == 4
            )
        )
        assert visit is not None
        visit.agreed_date = None if agreed_now is None else date.fromisoformat(agreed_now)
        await session.commit()
    before = len(server.messages(1020))
    bot.clock.set(max(notice.due_at, bot.clock.now()))
    await bot.tick()
    notice = await one_row(bot, "BSM-020", notice.key)
    if sent:
        assert notice.status is MessageStatus.SENT and len(server.messages(1020)) == before + 1
    else:
        assert notice.status is MessageStatus.CANCELLED and notice.last_error == "another date was agreed"
        assert len(server.messages(1020)) == before


@pytest.mark.parametrize("visit_week, invited", [(4, False), (None, True)], ids=["answered-for-week-4", "not-for-it"])
async def test_a_visit_questionnaire_invitation_is_skipped_once_that_visit_has_its_response(
    bot: BotHarness, server: BotAPIServer, visit_week: int | None, invited: bool
) -> None:
    """The week 4 HAQ-DI invitation: not sent when a completed HAQ-DI already belongs to
    the week 4 visit; sent when the completed one belongs to no visit."""
    await arm_a(bot, server)
    prompt = min(
        (
            r
            for r in await rows(bot, "BSM-020")
            if r.kind == "questionnaire_prompt"
            and r.payload.get("instrument") == "haq_di"
            and r.payload.get("week") == 4
        ),
        key=lambda r: r.due_at,
    )
    answered_at = prompt.due_at - timedelta(days=10)  # long enough ago for any 3-day rule
    assert bot.services is not None
    async with bot.services.sessions() as session:
        session.add(
            QuestionnaireSession(
                participant_id=await participant_id(bot, "BSM-020"),
                instrument_id="haq_di",
                instrument_version="1",
                status=QuestionnaireStatus.COMPLETED,
                origin="command",
                visit_week=visit_week,
                state={},
                started_at=answered_at,
                updated_at=answered_at,
                completed_at=answered_at,
            )
        )
        await session.commit()
    bot.clock.set(prompt.due_at)
    await bot.tick()
    prompt = await one_row(bot, "BSM-020", prompt.key)
    sent = [m for m in reminders(server, 1020) if "qstart:haq_di" in str(m.buttons)]
    if invited:
        assert prompt.status is MessageStatus.SENT and len(sent) == 1
    else:
        assert prompt.status is MessageStatus.SKIPPED and prompt.last_error == "already answered for this visit"
        assert sent == []


async def alerts_of(bot: BotHarness) -> list[Alert]:
    assert bot.services is not None
    async with bot.services.sessions() as session:
        return list(await session.scalars(select(Alert).order_by(Alert.id)))


# ---------------------------------------------------------------- the back-off


async def test_failed_sends_back_off_30_s_doubling_up_to_15_minutes(bot: BotHarness, server: BotAPIServer) -> None:
    """30 s after the first failure, then 1, 2, 4, 8 min, then never more than 15 min;
    never marked sent while failing; sent once when Telegram answers again."""
    await arm_a(bot, server)
    server.faults.add("sendMessage", "500", chat_id=1020, times=7, delay=0)
    before = len(reminders(server, 1020))
    now = dhaka(2026, 10, 26, 9)
    for attempt, wait in enumerate([30, 60, 120, 240, 480, 900, 900], start=1):
        bot.clock.set(now)
        await bot.tick()
        row = await one_row(bot, "BSM-020", BARI)
        assert row.status is MessageStatus.PLANNED and row.attempts == attempt, attempt
        assert row.next_attempt_at == now + timedelta(seconds=wait), attempt
        assert row.last_error == "NetworkError", attempt  # PTB's name for a 5xx
        bot.clock.set(row.next_attempt_at - timedelta(seconds=1))
        await bot.tick()  # not due yet: not tried
        assert (await one_row(bot, "BSM-020", BARI)).attempts == attempt
        now = row.next_attempt_at
    bot.clock.set(now)
    await bot.tick()
    row = await one_row(bot, "BSM-020", BARI)
    assert row.status is MessageStatus.SENT and row.attempts == 8 and row.sent_at == now
    assert len(reminders(server, 1020)) == before + 1


@pytest.mark.logs_errors("failed: KeyError")
async def test_a_row_that_fails_before_any_send_waits_the_first_delay_and_is_not_counted_as_a_try(
    bot: BotHarness, server: BotAPIServer
) -> None:
    """A row broken in the database (a visit reminder without its week: a bug, not
    Telegram) fails its re-check each time it is claimed. It is given back for 30 s each
    time, never counted as a failed send, so its back-off does not grow towards 15 min
    for a fault no retry can fix; the dose reminder due with it is sent meanwhile."""
    await arm_a(bot, server)
    now = dhaka(2026, 10, 26, 9)
    assert bot.services is not None
    async with bot.services.sessions() as session:
        broken = await session.scalar(
            select(ScheduledMessage)
            .where(ScheduledMessage.kind == "visit_reminder")
            .order_by(ScheduledMessage.due_at)
            .limit(1)
        )
        assert broken is not None and "week" in broken.payload
        broken.payload = {k: v for k, v in broken.payload.items() if k != "week"}
        broken.due_at = broken.next_attempt_at = now
        broken.stale_after = now + timedelta(hours=6)
        await session.commit()
        broken_id = broken.id
    before = len(reminders(server, 1020))
    for _ in range(2):
        bot.clock.set(now)
        await bot.tick()
        async with bot.services.sessions() as session:
            row = await session.get(ScheduledMessage, broken_id)
        assert row is not None
        assert (row.status, row.attempts, row.last_error) == (MessageStatus.PLANNED, 0, "KeyError")
        assert row.next_attempt_at == now + timedelta(seconds=30)  # the first delay, every time
        now = row.next_attempt_at
    assert (await one_row(bot, "BSM-020", BARI)).status is MessageStatus.SENT
    assert len(reminders(server, 1020)) == before + 1  # the dose reminder; the broken row sent nothing


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
async def test_a_retry_after_shorter_than_the_back_off_still_waits_the_back_off(
    server: BotAPIServer, db_url: str, clock: ManualClock
) -> None:
    """Telegram's RetryAfter is a minimum, not the wait: 5 s asked, 30 s waited (the
    longer case, 120 s asked, is tests/test_safety_paths.py)."""
    async with BotHarness(server, db_url, clock, rate_limiter=False) as bot:
        await arm_a(bot, server)
        server.faults.add("sendMessage", "429", retry_after=5, chat_id=1020, times=1)
        clock.set(dhaka(2026, 10, 26, 9))
        await bot.tick()
        assert server.faults.fired == [("sendMessage", "429")]
        row = await one_row(bot, "BSM-020", BARI)
        assert row.status is MessageStatus.PLANNED and row.last_error == "RetryAfter"
        assert row.next_attempt_at == dhaka(2026, 10, 26, 9) + timedelta(seconds=30)


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
async def test_a_retry_after_given_as_a_timedelta_is_waited_out_in_full(
    server: BotAPIServer, db_url: str, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PTB_TIMEDELTA=true (PTB's next major version by default) gives RetryAfter as a
    timedelta, not seconds: the 120 s asked are still waited, not the 30 s back-off."""
    monkeypatch.setenv("PTB_TIMEDELTA", "true")
    async with BotHarness(server, db_url, clock, rate_limiter=False) as bot:
        await arm_a(bot, server)
        server.faults.add("sendMessage", "429", retry_after=120, chat_id=1020, times=1)
        clock.set(dhaka(2026, 10, 26, 9))
        await bot.tick()
        assert server.faults.fired == [("sendMessage", "429")]
        row = await one_row(bot, "BSM-020", BARI)
        assert row.status is MessageStatus.PLANNED and row.last_error == "RetryAfter"
        assert row.next_attempt_at == dhaka(2026, 10, 26, 9) + timedelta(seconds=120)


async def test_a_bad_request_fails_the_row_with_telegrams_reason_and_is_not_retried(
    bot: BotHarness, server: BotAPIServer
) -> None:
    """A 400 (chat not found, a bad button) is permanent for that message: the row is
    FAILED with Telegram's reason (its first 150 characters), never tried again."""
    await arm_a(bot, server)
    reason = "the message cannot be delivered to this chat, " * 5  # 230 characters
    server.faults.add("sendMessage", "error", code=400, description=f"Bad Request: {reason}", chat_id=1020)
    before = len(reminders(server, 1020))
    bot.clock.set(dhaka(2026, 10, 26, 9))
    await bot.tick()
    row = await one_row(bot, "BSM-020", BARI)
    assert row.status is MessageStatus.FAILED and row.attempts == 1
    assert row.last_error == "BadRequest: " + reason.capitalize()[:150]  # PTB capitalises Telegram's text
    bot.clock.set(dhaka(2026, 10, 26, 10))
    await bot.tick()
    assert (await one_row(bot, "BSM-020", BARI)).attempts == 1
    assert len(reminders(server, 1020)) == before


async def test_a_row_refused_because_the_bot_is_blocked_fails_with_why_and_is_not_retried(
    bot: BotHarness, server: BotAPIServer
) -> None:
    user = await arm_a(bot, server)
    user.block_bot(notify=False)
    bot.clock.set(dhaka(2026, 10, 26, 9))
    await bot.tick()
    row = await one_row(bot, "BSM-020", BARI)
    assert row.status is MessageStatus.FAILED and row.attempts == 1
    assert row.last_error == "Forbidden: the participant blocked the bot"
    bot.clock.set(dhaka(2026, 10, 26, 10))
    await bot.tick()
    assert (await one_row(bot, "BSM-020", BARI)).attempts == 1


# ---------------------------------------------------------------- what a send leaves behind


async def test_a_sent_dose_reminder_opens_its_dose_log_and_plans_one_follow_up(
    bot: BotHarness, server: BotAPIServer
) -> None:
    await mtx_participant(bot, server)
    log = await dose_log(bot)
    assert log is not None
    assert (log.regimen, log.drug, log.dose_date) == ("methotrexate", "methotrexate", dhaka(2026, 10, 30, 9).date())
    assert log.planned_time.strftime("%H:%M") == "09:00" and log.reminded_at == dhaka(2026, 10, 30, 9)
    assert log.answer is None and log.later_count == 0
    follow = await one_row(bot, "BSM-003", f"{DOSE}:followup")
    assert follow.kind == "dose_followup" and follow.status is MessageStatus.PLANNED
    assert follow.due_at > dhaka(2026, 10, 30, 9)


async def test_a_dose_reminder_sent_again_keeps_its_first_dose_log(bot: BotHarness, server: BotAPIServer) -> None:
    """A re-send (the lease ran out after Telegram accepted it): one dose log, the first."""
    await arm_a(bot, server)
    pid = await participant_id(bot, "BSM-020")
    first = dhaka(2026, 10, 26, 8, 58)
    assert bot.services is not None
    async with bot.services.sessions() as session:
        session.add(
            DoseLog(
                participant_id=pid,
                reminder_key=BARI,
                regimen="baricitinib",
                drug="baricitinib",
                dose_date=first.date(),
                planned_time=dhaka(2026, 10, 26, 9).time(),
                reminded_at=first,
                later_count=0,
            )
        )
        await session.commit()
    bot.clock.set(dhaka(2026, 10, 26, 9))
    await bot.tick()
    assert (await one_row(bot, "BSM-020", BARI)).status is MessageStatus.SENT
    async with bot.services.sessions() as session:
        logs = list(await session.scalars(select(DoseLog).where(DoseLog.reminder_key == BARI)))
    assert [log.reminded_at for log in logs] == [first]


async def test_a_sent_invitation_opens_no_dose_log_and_plans_nothing(bot: BotHarness, server: BotAPIServer) -> None:
    await arm_a(bot, server)
    bot.clock.set(dhaka(2026, 10, 31, 20))
    await bot.tick()  # the week's dose reminders went out (no more rows due before Sunday)
    logs = await count(bot, DoseLog)
    planned = len(await rows(bot, "BSM-020"))
    bot.clock.set(dhaka(2026, 11, 1, 10))  # the week 1 check-in invitation, and Sunday's dose
    await bot.tick()
    assert (await one_row(bot, "BSM-020", "checkin:1")).status is MessageStatus.SENT
    assert await count(bot, DoseLog) == logs + 1  # Sunday's dose only
    assert len(await rows(bot, "BSM-020")) == planned + 1  # Sunday's dose follow-up only
