"""One test per safety promise that a mutation spot-check (issue 11) found unguarded:
each fails when the promise breaks in the way named in its docstring (the exact change
that re-applies each mutant is listed in tests/mutation/README.md)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from core.clock import ManualClock
from devtools.botapi_server import BotAPIServer
from devtools.harness import DEFAULT_START, TOKEN, BotHarness
from domain.audit import stranger_actor
from domain.questionnaires import Instrument
from domain.secrets import AUDIT_STRANGERS
from domain.triage import Level, TriageTableError, double_dose, load_triage_table, triage
from models import (
    AlertLevel,
    AuditEntry,
    ChatLink,
    DoseAnswer,
    DoseLog,
    EnrollmentCode,
    Language,
    MessageStatus,
    Participant,
    ParticipantStatus,
    ProcessedUpdate,
)
from tests.bothelpers import admin_says, enroll, link, says
from tests.schedule_helpers import dhaka, reminders, rows, walk
from tests.test_questionnaire_flow import answer_all, is_question, linked
from tests.test_reminders import alerts, last_dose_reminder, mtx_participant
from tests.test_triage import ENGLISH, ROOT, check, run
from tests.test_triage import instruments as instruments


async def _participant(bot: BotHarness, study_id: str) -> Participant:
    assert bot.services is not None
    async with bot.services.sessions() as session:
        found = await session.scalar(select(Participant).where(Participant.study_id == study_id))
        assert found is not None
        return found


def _taken_dose(participant_id: int, day: int) -> DoseLog:
    """A methotrexate dose confirmed at 09:05 Dhaka on ``day`` October 2026."""
    return DoseLog(
        participant_id=participant_id,
        reminder_key=f"dose:methotrexate:earlier-{day}",
        regimen="methotrexate",
        drug="methotrexate",
        dose_date=dhaka(2026, 10, day).date(),
        planned_time=time(9),
        reminded_at=dhaka(2026, 10, day, 9),
        answer=DoseAnswer.TAKEN,
        answered_at=dhaka(2026, 10, day, 9, 5),
        later_count=0,
    )


# ---------------------------------------------------------------- the double-dose rule


async def test_a_third_methotrexate_dose_is_compared_with_the_latest_earlier_one(
    bot: BotHarness, server: BotAPIServer
) -> None:
    """Mutant: the previous dose is the earliest (`func.min`), not the latest."""
    user = await mtx_participant(bot, server)
    pid = (await _participant(bot, "BSM-003")).id
    assert bot.services is not None
    async with bot.services.sessions() as session:
        # 7 days before (not a double dose on its own), then 3 days before this one.
        session.add_all([_taken_dose(pid, 23), _taken_dose(pid, 27)])
        await session.commit()
    first = await user.press(last_dose_reminder(server, 1003), "✅ Taken")
    await server.wait_for(1003, "methotrexate", since=first)
    (alert,) = await alerts(bot, "mtx_double_dose")
    assert alert.level is AlertLevel.URGENT and "72 hours" in alert.summary
    assert alert.details["previous_taken_at"] == dhaka(2026, 10, 27, 9, 5).isoformat()


# ---------------------------------------------------------------- the dispatcher's re-check


async def test_a_withdrawn_participants_still_planned_row_is_not_sent(bot: BotHarness, server: BotAPIServer) -> None:
    """Mutant: the send-time re-check of the participant's status removed. The rows stay
    PLANNED here as if the re-plan at withdrawal had not happened (a crash, a race)."""
    await mtx_participant(bot, server)
    before = len(reminders(server, 1003))
    assert bot.services is not None
    async with bot.services.sessions() as session:
        participant = await session.scalar(select(Participant).where(Participant.study_id == "BSM-003"))
        assert participant is not None
        participant.status = ParticipantStatus.WITHDRAWN
        await session.commit()
    planned = [r.id for r in await rows(bot, "BSM-003", status=MessageStatus.PLANNED)]
    assert planned
    await walk(bot, dhaka(2026, 11, 8))
    assert len(reminders(server, 1003)) == before
    due = [r for r in await rows(bot, "BSM-003") if r.id in planned and r.due_at <= dhaka(2026, 11, 8)]
    assert due and all(r.status is MessageStatus.CANCELLED for r in due)
    assert {r.last_error for r in due} == {"participant withdrawn"}


async def test_a_dose_follow_up_is_not_sent_after_taken(bot: BotHarness, server: BotAPIServer) -> None:
    """Mutant: the follow-up's re-check ignores "Taken". The dose is recorded as taken
    without the follow-up being cancelled (as when the press and the claim race)."""
    await mtx_participant(bot, server)
    assert bot.services is not None
    async with bot.services.sessions() as session:
        log = await session.scalar(select(DoseLog).where(DoseLog.regimen == "methotrexate"))
        assert log is not None
        log.answer = DoseAnswer.TAKEN
        log.answered_at = dhaka(2026, 10, 30, 9, 10)
        await session.commit()
    (follow,) = await rows(bot, "BSM-003", key="dose:methotrexate:2026-10-30:followup")
    assert follow.status is MessageStatus.PLANNED
    before = len(reminders(server, 1003))
    await walk(bot, follow.due_at + timedelta(minutes=1))
    assert len(reminders(server, 1003)) == before
    assert not any("gentle reminder" in m.content for m in server.messages(1003))
    (follow,) = await rows(bot, "BSM-003", key="dose:methotrexate:2026-10-30:followup")
    assert follow.status is MessageStatus.CANCELLED and follow.last_error == "dose answered"


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
async def test_a_retry_after_from_telegram_is_waited_out_in_full(
    server: BotAPIServer, db_url: str, clock: ManualClock
) -> None:
    """Mutant: the RetryAfter minimum dropped from the back-off (the row would be tried
    after 30 s instead of the 120 s Telegram asked). Without the rate limiter, which
    otherwise absorbs the 429 itself, the dispatcher's own handling is what runs."""
    async with BotHarness(server, db_url, clock, rate_limiter=False) as bot:
        code = await enroll(server, "BSM-003 B 2026-10-25 en fri")
        user = server.user(1003, "R", language_code="en")
        await link(server, user, code, "English")
        clock.set(dhaka(2026, 10, 30, 8, 59))
        await bot.tick()  # the enrolment day's rows are stale by now
        server.faults.add("sendMessage", "429", retry_after=120, chat_id=1003, times=1)
        clock.set(dhaka(2026, 10, 30, 9))
        await bot.tick()
        assert server.faults.fired == [("sendMessage", "429")]
        (row,) = await rows(bot, "BSM-003", key="dose:methotrexate:2026-10-30")
        assert row.status is MessageStatus.PLANNED and row.last_error == "RetryAfter"
        assert row.next_attempt_at == dhaka(2026, 10, 30, 9) + timedelta(seconds=120)
        clock.set(dhaka(2026, 10, 30, 9) + timedelta(seconds=119))
        await bot.tick()
        assert reminders(server, 1003) == []
        clock.set(dhaka(2026, 10, 30, 9, 2))
        await bot.tick()
        assert len(reminders(server, 1003)) == 1


# ---------------------------------------------------------------- enrollment codes


async def test_a_code_is_accepted_at_13_days_23_hours(bot: BotHarness, server: BotAPIServer) -> None:
    """Mutant: the lifetime in days read as hours (codes would expire after 14 hours)."""
    code = await enroll(server, "BSM-005 A 2026-10-25")
    bot.clock.advance(timedelta(days=13, hours=23))
    await link(server, server.user(1006), code, "English")
    assert (await _participant(bot, "BSM-005")).status == ParticipantStatus.ACTIVE


async def test_a_code_is_refused_at_exactly_14_days(bot: BotHarness, server: BotAPIServer) -> None:
    """Mutant: `expires_at <= now` read as `<` (a code would still work at its expiry)."""
    code = await enroll(server, "BSM-005 A 2026-10-25")
    bot.clock.advance(timedelta(days=14))
    await says(server, server.user(1006), f"/start {code}", "too old")
    assert (await _participant(bot, "BSM-005")).status == ParticipantStatus.INVITED
    assert bot.services is not None
    async with bot.services.sessions() as session:
        assert (await session.scalars(select(ChatLink))).all() == []


async def test_a_code_from_the_shell_lives_14_days(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutant: the shell's (`python -m cli`) code lifetime in days read as hours."""
    from cli.admin import run
    from models import EnrollmentCode
    from models.db import create_engine, create_session_factory

    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)  # codes are stored keyed with it (issue 17)
    monkeypatch.setenv("TELEGRAM_API_URL", "http://127.0.0.1:9/bot")  # no Bot API: the link shows a placeholder
    code, _ = await run(["enroll", "BSM-001", "A", "2026-10-25", "en"], ManualClock(DEFAULT_START))
    assert code == 0
    engine = create_engine(db_url)
    try:
        async with create_session_factory(engine)() as session:
            (row,) = (await session.scalars(select(EnrollmentCode))).all()
    finally:
        await engine.dispose()
    assert row.expires_at == DEFAULT_START + timedelta(days=14)


async def _refusals(bot: BotHarness) -> list[tuple[str, int | None, str | None]]:
    """(actor, participant id, detail) of every refused code, in order."""
    assert bot.services is not None
    async with bot.services.sessions() as session:
        rows = await session.execute(
            select(AuditEntry.actor, AuditEntry.participant_id, AuditEntry.detail)
            .where(AuditEntry.action == "enrollment_code.refuse")
            .order_by(AuditEntry.id)
        )
        return [(actor, pid, detail) for actor, pid, detail in rows.all()]


async def test_each_refused_code_is_audited_with_who_why_and_whose(bot: BotHarness, server: BotAPIServer) -> None:
    """The audit of a refusal names the Telegram user who tried, the reason, and the
    participant the code belongs to (none for an unknown code)."""
    code = await enroll(server, "BSM-031 A 2026-10-25")
    await link(server, server.user(3101), code)
    pid = (await _participant(bot, "BSM-031")).id
    await says(server, server.user(3102), f"/start {code}", "already been used")
    await says(server, server.user(3103), "/start ZZZZZZZZZZZZ", "not right")
    old = await enroll(server, "BSM-032 A 2026-10-25")
    bot.clock.advance(timedelta(days=15))
    await says(server, server.user(3104), f"/start {old}", "too old")
    other = (await _participant(bot, "BSM-032")).id
    assert bot.services is not None
    key = bot.services.secret_key(AUDIT_STRANGERS)  # strangers are audited as keyed hashes (issue 17)
    assert await _refusals(bot) == [
        (stranger_actor(3102, key), pid, "used"),
        (stranger_actor(3103, key), None, "unknown"),
        (stranger_actor(3104, key), other, "expired"),
    ]
    assert len({stranger_actor(u, key) for u in (3102, 3103, 3104)}) == 3


async def test_the_attempt_limit_counts_this_chats_refusals_of_the_last_hour_only(
    bot: BotHarness, server: BotAPIServer
) -> None:
    """Five refusals in the hour stop the chat, up to the same instant an hour later;
    another chat's refusals, and the same chat's other audited acts, do not count."""
    code = await enroll(server, "BSM-033 A 2026-10-25")
    guesser = server.user(3301)
    for attempt in range(5):
        await says(server, guesser, f"/start WRONGCODE{attempt:03d}", "not right")
    bot.clock.advance(timedelta(hours=1))  # the first refusal is exactly an hour old: still counts
    await says(server, guesser, f"/start {code}", "Too many wrong codes")
    stranger = server.user(3302)
    for _ in range(5):  # audited as telegram:3302 too, but not code refusals
        await says(server, stranger, "/participants", None)
    await link(server, stranger, code)  # another chat, and its other acts: not limited


async def test_a_new_code_revokes_only_this_participants_unused_codes(bot: BotHarness, server: BotAPIServer) -> None:
    """Reissuing revokes the participant's unused code once, at that time; another
    participant's code and a used code are left as they are."""
    first = await enroll(server, "BSM-034 A 2026-10-25")
    other = await enroll(server, "BSM-035 A 2026-10-25")
    await admin_says(server, "/enroll BSM-034 A 2026-10-25", "One-time code")
    revoked_at = bot.clock.now()
    bot.clock.advance(timedelta(minutes=5))
    third = await admin_says(server, "/enroll BSM-034 A 2026-10-25", "One-time code")
    await link(server, server.user(3501), other)  # BSM-035's code still works
    new = third.content.split("start=")[1].split()[0]
    await link(server, server.user(3401), new)
    await admin_says(server, "/withdraw BSM-034 moved away", "withdrawn")
    assert bot.services is not None
    async with bot.services.sessions() as session:
        pid = (await _participant(bot, "BSM-034")).id
        codes = list(
            await session.scalars(
                select(EnrollmentCode).where(EnrollmentCode.participant_id == pid).order_by(EnrollmentCode.id)
            )
        )
    assert [c.revoked_at for c in codes] == [revoked_at, revoked_at + timedelta(minutes=5), None]
    assert codes[2].used_at is not None  # used, not revoked, after the withdrawal
    await says(server, server.user(3402), f"/start {first}", "can no longer be used")


# ---------------------------------------------------------------- triage


@pytest.mark.parametrize("arm, flag", [("A", "bari_infection"), ("B", "mtx_infection")])
@pytest.mark.parametrize("typed", ["38.0", "38", "38 c", "100.4 F", "100.4"])
def test_38_0_c_exactly_is_a_red_flag_in_both_arms_and_both_units(
    instruments: dict[str, Instrument],
    arm: str,
    flag: str,
    typed: str,
) -> None:
    """Mutant: an arm's fever threshold `greater_or_equal: 38.0` read as `greater_than`.
    The flag must come from the measured temperature (the coordinator reads "measured
    38 °C or more"), not only from the triage table's fallback for a fever without a
    temperature, which would hide the mutant."""
    fever = {"fever": "yes", "fever_measured": "yes", "fever_temp": typed}
    result = check(instruments["weekly_checkin"], arm, ENGLISH, fever)
    assert [(hit.code, hit.item_id) for hit in result.red_flags] == [(flag, "fever_temp")]
    assert "Measured temperature 38 °C or more" in result.red_flags[0].reason.get("en")
    assert result.level is Level.URGENT


@pytest.mark.parametrize("arm", ["A", "B"])
@pytest.mark.parametrize("typed", ["37.9", "100.2 F"])
def test_just_under_38_c_is_no_red_flag(
    instruments: dict[str, Instrument],
    arm: str,
    typed: str,
) -> None:
    """The other side of the threshold: the red flag is the temperature, not the fever answer."""
    fever = {"fever": "yes", "fever_measured": "yes", "fever_temp": typed}
    result = check(instruments["weekly_checkin"], arm, ENGLISH, fever)
    assert result.red_flags == ()


async def test_a_rise_of_two_grades_across_two_check_ins_alerts_the_same_day(
    bot: BotHarness, server: BotAPIServer
) -> None:
    """Mutant: last week's grades never looked up ("two grades worse" would never fire)."""
    user = await linked(server, "BSM-002", "A", 1002, "en")
    await says(server, user, "/checkin", is_question)
    await answer_all(server, user, {})  # all well: nausea grade 0
    bot.clock.advance(timedelta(days=7))
    await says(server, user, "/checkin", is_question)
    await answer_all(server, user, {"mouth_stomach_any": "yes", "nausea": "moderate"})
    (alert,) = await alerts(bot, "same_day_review")
    assert alert.level is AlertLevel.SAME_DAY
    assert alert.details["keys"] == ["worse:nausea"]


# ---------------------------------------------------------------- the unit of work


async def _a_language_change_that_fails(bot: BotHarness, server: BotAPIServer, monkeypatch: pytest.MonkeyPatch) -> int:
    """A handler that changes the language and audits it, then raises; returns the
    failed update's id once the apology arrived."""
    code = await enroll(server, "BSM-020 A 2026-10-25 en")
    user = server.user(2001)
    await link(server, user, code, "English")

    from bot.handlers import participant as handlers

    real = handlers.participants.set_language

    async def writes_then_fails(session: object, *args: object, **kwargs: object) -> None:
        await real(session, *args, **kwargs)  # type: ignore[arg-type]
        await session.flush()  # type: ignore[attr-defined]
        raise RuntimeError("boom after writing")

    monkeypatch.setattr(handlers.participants, "set_language", writes_then_fails)
    prompt = await says(server, user, "/language", "Which language")
    update = await user.press(prompt, "বাংলা")
    (apology,) = await server.wait_for(2001, "Sorry, something went wrong", since=update)
    assert apology.content == (
        "Sorry, something went wrong on our side. Please try again in a minute. Your earlier answers are safe."
    )
    return update.update_id


@pytest.mark.logs_errors("error while handling update")
async def test_a_handler_that_writes_and_then_fails_commits_nothing(
    bot: BotHarness, server: BotAPIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mutant: the rollback after a failed handler deleted (a half-applied update would be
    committed). The handler here changes the language and audits it, then raises."""
    update_id = await _a_language_change_that_fails(bot, server, monkeypatch)
    assert (await _participant(bot, "BSM-020")).language is Language.EN
    assert bot.services is not None
    async with bot.services.sessions() as session:
        actions = list(await session.scalars(select(AuditEntry.action)))
        processed = await session.get(ProcessedUpdate, update_id)
    assert actions.count("participant.set_language") == 1  # the choice at linking only
    assert processed is not None and processed.outcome == "error"  # recorded, so a re-delivery is not re-run


@pytest.mark.logs_errors("error while handling update")
async def test_a_failed_handler_is_logged_with_its_update_and_where_it_failed_not_the_error_text(
    bot: BotHarness, server: BotAPIServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The error log lets a maintainer find the failing line (the traceback's frames)
    and the update, and never carries the exception's text (it may quote an answer)."""
    caplog.set_level(logging.ERROR, logger="bot.app")
    update_id = await _a_language_change_that_fails(bot, server, monkeypatch)
    (record,) = [r for r in caplog.records if r.name == "bot.app" and "while handling update" in r.getMessage()]
    message = record.getMessage()
    assert message.startswith(f"error while handling update {update_id}: RuntimeError\n")
    assert "in writes_then_fails" in message and 'raise RuntimeError("boom after writing")' in message
    assert "boom after writing" not in message.splitlines()[0]
    assert all(line.startswith("  ") for line in message.splitlines()[1:])  # the frames, as Python prints them


@pytest.mark.logs_errors("error while handling update")
async def test_a_handler_hit_by_a_database_outage_is_run_again_and_applied_once(
    bot: BotHarness, server: BotAPIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transient database error (locked, restarted) is not the handler's fault: the
    update is rolled back and run again, and the participant gets the real reply, not
    an apology (and not a half-applied change committed without its reply)."""
    from sqlalchemy.exc import OperationalError

    from bot.handlers import participant as handlers

    code = await enroll(server, "BSM-020 A 2026-10-25 en")
    user = server.user(2001)
    await link(server, user, code, "English")
    real = handlers.participants.set_language
    calls: list[int] = []

    async def database_away_once(session: object, *args: object, **kwargs: object) -> None:
        await real(session, *args, **kwargs)  # type: ignore[arg-type]
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("UPDATE participants", {}, Exception("database is locked"))

    monkeypatch.setattr(handlers.participants, "set_language", database_away_once)
    prompt = await says(server, user, "/language", "Which language")
    update = await user.press(prompt, "বাংলা")
    (done,) = await server.wait_for(2001, "এখন থেকে আমি আপনাকে বাংলা ভাষায় লিখব", since=update)
    assert len(calls) == 2 and "Sorry" not in done.content
    assert not [m for m in server.messages(2001) if "Sorry" in m.content]
    assert (await _participant(bot, "BSM-020")).language is Language.BN
    assert bot.services is not None
    async with bot.services.sessions() as session:
        actions = list(await session.scalars(select(AuditEntry.action)))
        processed = await session.get(ProcessedUpdate, update.update_id)
    assert actions.count("participant.set_language") == 2  # at linking, and this one once
    assert processed is not None and processed.outcome == "ok" and processed.processed_at == bot.clock.now()


# ---------------------------------------------------------------- triage: what `make mutate` found


def test_the_stored_triage_result_keeps_every_field_under_its_name(
    instruments: dict[str, Instrument],
) -> None:
    """The stored result is read back by name (last week's grades, the alert's details):
    each key and each language of each text is where the readers look for it."""
    weekly = instruments["weekly_checkin"]
    typed = {"rf_mtx_infection": "yes", "mouth_stomach_any": "yes", "nausea": "moderate"}
    result = check(weekly, "B", ENGLISH, typed, {"nausea": 0})
    assert result.symptom_details["nausea"].grade == 2
    stored = result.to_dict()
    (flag,) = result.red_flags
    assert stored == {
        "level": "URGENT",
        "grade": 2,
        "grades": dict(result.grades),
        "red_flags": [
            {
                "code": "mtx_infection",
                "item_id": "rf_mtx_infection",
                "reason": {"en": flag.reason.get("en"), "bn": flag.reason.get("bn")},
                "advice": "stop_mtx_call",
            }
        ],
        "seriousness": [],
        "worsened": [{"symptom": "nausea", "previous": 0, "current": 2}],
        "advice": ["stop_mtx_call"],
        "reasons": [{"en": r.get("en"), "bn": r.get("bn")} for r in result.reasons],
    }
    assert stored["grades"]["nausea"] == 2 and flag.reason.get("en") != flag.reason.get("bn")
    assert "Nausea worse than last week: grade 0 to 2" in [r["en"] for r in stored["reasons"]]

    report = check(instruments["ae_report"], "A", ENGLISH, {"ser_life": "yes"})
    (hit,) = report.seriousness
    assert report.to_dict()["seriousness"] == [
        {"criterion": 2, "name": {"en": hit.name.get("en"), "bn": hit.name.get("bn")}, "item_id": "ser_life"}
    ]
    assert hit.name.get("en") == "Life-threatening"


def test_a_life_threatening_report_also_gives_its_implied_grade_4_as_a_reason(
    instruments: dict[str, Instrument],
) -> None:
    """Criterion 2 implies grade 4: the grade-4 trigger fires at exactly its threshold."""
    result = check(instruments["ae_report"], "A", ENGLISH, {"ser_life": "yes"})
    assert result.grade == 4
    assert 'Life-threatening: "yes" (provisional grade 4)' in [r.get("en") for r in result.reasons]
    assert "emergency" in result.advice


def test_the_grade_4_trigger_fires_on_an_implied_grade_of_exactly_4(
    tmp_path: Path, instruments: dict[str, Instrument]
) -> None:
    """With criterion 2 advising a call (not the emergency), only the grade-4 trigger
    can add "emergency": it must fire at grade 4 itself."""
    data = yaml.safe_load((ROOT / "content" / "triage.yaml").read_text(encoding="utf-8"))
    data["seriousness_criteria"][2]["advice"] = "call_now"
    path = tmp_path / "triage.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    state = run(instruments["ae_report"], "A", ENGLISH, {"ser_life": "yes"})
    result = triage(instruments["ae_report"], state.answers, "A", None, table=load_triage_table(path))
    assert result.grade == 4 and set(result.advice) == {"call_now", "emergency"}


def test_every_fired_trigger_of_the_level_adds_its_advice(instruments: dict[str, Instrument]) -> None:
    """A red flag and a seriousness criterion in one report: both advices, not the last one's."""
    result = check(instruments["ae_report"], "B", ENGLISH, {"rf_mtx_infection": "yes", "ser_hospital": "yes"})
    assert result.level is Level.URGENT
    assert set(result.advice) == {"stop_mtx_call", "call_now"}


def test_an_instrument_without_symptoms_has_grade_0(instruments: dict[str, Instrument]) -> None:
    result = check(instruments["patient_global"], "A", ENGLISH)
    assert result.grade == 0 and result.grades == {} and result.level is Level.ROUTINE


def test_a_trigger_without_advice_adds_none(tmp_path: Path, instruments: dict[str, Instrument]) -> None:
    """A table whose SAME_DAY grade trigger gives no advice: the level still fires, and
    the participant's advice stays empty (no empty key)."""
    data = yaml.safe_load((ROOT / "content" / "triage.yaml").read_text(encoding="utf-8"))
    for level in data["levels"]:
        for trigger in level["triggers"]:
            if level["level"] == "SAME_DAY":
                trigger.pop("advice", None)
    path = tmp_path / "triage.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    table = load_triage_table(path)
    state = run(instruments["weekly_checkin"], "A", ENGLISH, {"mouth_stomach_any": "yes", "nausea": "severe"})
    result = triage(instruments["weekly_checkin"], state.answers, "A", None, table=table)
    assert result.level is Level.SAME_DAY and result.advice == ()


def test_a_triage_table_that_is_not_yaml_is_refused_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / "triage.yaml"
    path.write_text("levels: [unclosed\n", encoding="utf-8")
    with pytest.raises(TriageTableError, match=r"^triage\.yaml: not valid YAML"):
        load_triage_table(path)


def test_the_double_dose_rule_says_why_it_refuses_mixed_times() -> None:
    with pytest.raises(ValueError, match=r"^double_dose needs both datetimes aware \(or both naive\)$"):
        double_dose(datetime(2026, 11, 20, 9, 0), datetime(2026, 11, 22, 9, 0, tzinfo=UTC), timedelta(days=6))


# ---------------------------------------------------------------- the unit of work's replies


@pytest.mark.logs_errors("reply for update 7 not sent, a bug: ValueError")
async def test_replies_after_the_commit_give_up_per_reply_and_still_send_the_rest(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A refused reply (BadRequest) is not retried; a reply that keeps failing in
    transit is tried 1 + retries times; a reply that fails otherwise (a bug: logged as an
    error) is dropped; none of
    them stops the replies queued after it, and the queue is emptied."""
    from types import SimpleNamespace

    from telegram.error import BadRequest, NetworkError

    from bot import unit_of_work

    monkeypatch.setattr(
        unit_of_work, "REPLY_RETRY_DELAYS", (0.0, 0.0, 0.0)
    )  # the schedule, not the sleeping, is tested
    calls: list[str] = []

    def send(name: str, error: Exception | None = None) -> unit_of_work.Send:
        async def attempt() -> None:
            calls.append(name)
            if error is not None:
                raise error

        return attempt

    work = unit_of_work.UpdateWork(SimpleNamespace(update_id=7), None, datetime(2026, 10, 25, tzinfo=UTC), None)  # type: ignore[arg-type]
    work.after_commit(send("refused", BadRequest("Chat not found")))
    work.after_commit(send("in transit", NetworkError("connection reset")))
    work.after_commit(send("broken", ValueError("not a Telegram error")))
    work.after_commit(send("last"))
    await work.flush()
    assert calls == ["refused", "in transit", "in transit", "in transit", "in transit", "broken", "last"]
    assert work.outbox == []
    # The bug is logged with where it happened (its frames) and never its text, which
    # may quote a participant's answer.
    (bug,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    head, frames = bug.split("\n", 1)
    assert head == "reply for update 7 not sent, a bug: ValueError" and "not a Telegram error" not in bug
    assert "in attempt" in frames and "raise error" in frames
    assert all(line.startswith("  ") for line in frames.splitlines())  # traceback lines, nothing between


def test_current_work_outside_an_update_says_so() -> None:
    from bot.unit_of_work import current_work

    with pytest.raises(RuntimeError, match=r"^no update is being handled in this context$"):
        current_work()


@pytest.mark.logs_errors("error while handling update None")
async def test_an_error_outside_any_update_is_logged_and_the_bot_carries_on(caplog: pytest.LogCaptureFixture) -> None:
    """PTB reports errors that belong to no update (a failed getUpdates while polling)
    with `update=None`: the error handler logs the type and returns, it never raises."""
    from types import SimpleNamespace

    from bot.app import on_error

    caplog.set_level(logging.ERROR, logger="bot.app")
    context = SimpleNamespace(error=ConnectionResetError("peer went away"), bot=None)
    await on_error(None, context)  # type: ignore[arg-type]
    (record,) = [r for r in caplog.records if r.name == "bot.app"]
    assert record.getMessage() == "error while handling update None: ConnectionResetError\n"
