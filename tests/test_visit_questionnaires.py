"""Visit-week questionnaires end to end: the real bot over HTTP, on SQLite and PostgreSQL.

HAQ-DI and the patient global at the week-4 visit, in Bangla and English, numbers
typed in Bengali digits; the visit week stored with the response and carried into
every export (CSV, SPSS, REDCap, the ODM under the week-4 event, still valid); a
response started in the window and finished the next day keeps its visit; a second
response for the same visit refused kindly; the Raynaud's diary switched on for one
participant only."""

from __future__ import annotations

import csv
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta
from pathlib import Path

import pyreadstat
import pytest
from sqlalchemy import select

from devtools.botapi_server import BotAPIServer, SentMessage, SimUser
from devtools.harness import BotHarness
from models import AuditEntry, QuestionnaireSession, QuestionnaireStatus, ScheduledMessage
from tests.bothelpers import admin_says
from tests.schedule_helpers import dhaka, next_due
from tests.test_export_edc import export
from tests.test_questionnaire_flow import (
    THANKS,
    callback_text,
    is_question,
    latest_question,
    linked,
    press_value,
    push_press,
    q_item,
    rows,
)

ODM = "{http://www.cdisc.org/ns/odm/v1.3}"
WEEK4_VISIT = dhaka(2026, 11, 22, 10, 0)  # baseline Sunday 25 October 2026: week 4 is Sunday 22 November
WINDOW_END = dhaka(2026, 11, 25, 23, 30)  # the last evening of the week-4 window (±3 days)
YES = {"bn": "হ্যাঁ", "en": "yes"}
NO = {"bn": "না", "en": "no"}
LANGS = pytest.mark.parametrize("lang", ["bn", "en"])

# HAQ-DI answers: every activity "with SOME difficulty" (choice ২, score 1) except chores
# "UNABLE" (choice ৪, score 3); a cane (aid) lifts walking to 2 and help from another person
# with gripping lifts grip to 2: categories 1+1+1+2+1+1+2+3 = 12 over 8, index 1.5.
HAQ_CHOICE = {"haq_chores": "৪"}
HAQ_YES = {"aids_1_any", "aid_cane", "help_2_any", "help_grip"}
HAQ_INDEX = 1.5


async def catch_up(bot: BotHarness, when: datetime) -> None:
    """Move the clock to `when` and let the dispatcher send what is due (stale rows skipped)."""
    bot.clock.set(when)
    for _ in range(20):
        due = await next_due(bot)
        if due is None or due > when:
            return
        await bot.tick()
    raise AssertionError("the dispatcher keeps finding rows due")


def invitations(server: BotAPIServer, user: SimUser, instrument: str) -> list[SentMessage]:
    """The invitations with a Start button for `instrument` the participant received."""
    data = f"qstart:{instrument}"
    return [m for m in server.messages(user.id) if any(d == data for row in m.buttons for _t, d in row)]


def answered(m: SentMessage) -> bool:
    """The next question, or the closing thanks (also the kind refusal starts with thanks)."""
    return is_question(m) or any(t in m.content for t in THANKS)


async def start(server: BotAPIServer, user: SimUser, instrument: str) -> SentMessage:
    """Press the latest invitation's Start button; returns the first question."""
    invitation = invitations(server, user, instrument)[-1]
    update = await user.press(invitation, f"qstart:{instrument}")
    (first,) = await server.wait_for(user.id, is_question, since=update)
    return first


async def typed(server: BotAPIServer, user: SimUser, text: str) -> SentMessage:
    """The participant types an answer; returns the next question or the thanks."""
    update = await user.send(text)
    return (await server.wait_for(user.id, answered, since=update))[0]


async def answer_haq(server: BotAPIServer, user: SimUser, lang: str, stop_after: int | None = None) -> SentMessage:
    """Answer the open HAQ-DI by typing (choices by their number in Bengali digits,
    yes/no as words); Skip the optional "other aid" boxes. `stop_after`: answers to give."""
    message = latest_question(server, user)
    for given in range(80):
        if not is_question(message) or given == stop_after:
            return message
        item = q_item(message)
        assert item is not None
        if item.startswith("aid_other"):
            message = await press_value(server, user, message, "__skip__")
        elif item.startswith("haq_"):
            message = await typed(server, user, HAQ_CHOICE.get(item, "২"))
        else:
            message = await typed(server, user, YES[lang] if item in HAQ_YES else NO[lang])
    raise AssertionError("HAQ-DI did not end")


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def odm_values(odm: Path, study_id: str, week: int, group: str) -> dict[str, str]:
    """The item values of `group` in `study_id`'s visit event of `week` (ODM)."""
    root = ET.parse(odm).getroot()
    subject = next(s for s in root.iter(f"{ODM}SubjectData") if s.get("SubjectKey") == study_id)
    event = next(e for e in subject.iter(f"{ODM}StudyEventData") if e.get("StudyEventOID") == f"SE.WEEK{week}")
    data = next(g for g in event.iter(f"{ODM}ItemGroupData") if g.get("ItemGroupOID") == group)
    return {str(d.get("ItemOID")): str(d.get("Value")) for d in data.iter(f"{ODM}ItemData")}


@LANGS
async def test_haq_di_and_patient_global_at_week_4_carry_the_visit_into_every_export(
    bot: BotHarness, server: BotAPIServer, tmp_path: Path, lang: str
) -> None:
    user = await linked(server, "BSM-101", "A", 1101, lang)
    await catch_up(bot, WEEK4_VISIT)
    assert invitations(server, user, "patient_global") and invitations(server, user, "haq_di")

    # Patient global: a number from 0 to 10, typed in Bengali digits.
    question = await start(server, user, "patient_global")
    assert ("০ থেকে ১০" if lang == "bn" else "from 0 to 10") in question.content
    closing = await typed(server, user, "৭")
    assert THANKS[0 if lang == "bn" else 1] in closing.content

    # HAQ-DI: choices typed by their number in Bengali digits, aids and help by words.
    first = await start(server, user, "haq_di")
    assert q_item(first) == "haq_dress"
    if lang == "bn":
        assert "যাচাই" in first.content  # the Bangla version is marked not validated
    closing = await answer_haq(server, user, lang)
    assert THANKS[0 if lang == "bn" else 1] in closing.content

    by_instrument = {s.instrument_id: s for s in await rows(bot, QuestionnaireSession)}
    pga, haq = by_instrument["patient_global"], by_instrument["haq_di"]
    assert pga.status is haq.status is QuestionnaireStatus.COMPLETED
    assert (pga.visit_week, haq.visit_week) == (4, 4)
    assert pga.scores == {"patient_global": 7}
    assert haq.scores is not None and haq.scores["haq_di"]["index"] == HAQ_INDEX
    assert haq.scores["haq_di"]["categories"]["walking"] == 2 and haq.scores["haq_di"]["categories"]["grip"] == 2

    out = await export(bot, tmp_path / "export")  # the ODM is validated against the official schema
    [haq_row] = read_csv(out / "responses_haq_di.csv")
    assert haq_row["visit_week"] == "4" and float(haq_row["score_haq_di_index"]) == HAQ_INDEX
    [pga_row] = read_csv(out / "responses_patient_global.csv")
    assert pga_row["visit_week"] == "4" and pga_row["score_patient_global"] == "7"
    frame, _meta = pyreadstat.read_sav(str(out / "responses_haq_di.sav"))
    assert list(frame["visit_week"]) == [4] and list(frame["score_haq_di_index"]) == [HAQ_INDEX]
    [redcap] = read_csv(out / "redcap" / "records_responses_haq_di.csv")
    assert redcap["redcap_event_name"] == "week_4_arm_1"
    assert [float(v) for k, v in redcap.items() if k.endswith("score_haq_di_index")] == [HAQ_INDEX]
    odm = out / "trial_record_odm.xml"
    haq_odm = odm_values(odm, "BSM-101", 4, "IG.RESPONSES_HAQ_DI")
    assert float(haq_odm["I.RESPONSES_HAQ_DI.SCORE_HAQ_DI_INDEX"]) == HAQ_INDEX
    pga_odm = odm_values(odm, "BSM-101", 4, "IG.RESPONSES_PATIENT_GLOBAL")
    assert pga_odm["I.RESPONSES_PATIENT_GLOBAL.SCORE_PATIENT_GLOBAL"] == "7"


@LANGS
async def test_started_in_the_window_finished_the_next_day_keeps_its_visit_and_a_second_is_refused(
    bot: BotHarness, server: BotAPIServer, lang: str
) -> None:
    user = await linked(server, "BSM-102", "B", 1102, lang)
    await catch_up(bot, WEEK4_VISIT)
    await catch_up(bot, WINDOW_END)  # the invitation is still on screen on the window's last evening
    [invitation] = invitations(server, user, "haq_di")
    await start(server, user, "haq_di")
    await answer_haq(server, user, lang, stop_after=3)
    await catch_up(bot, WINDOW_END + timedelta(hours=10))  # the next morning, after the window
    closing = await answer_haq(server, user, lang)
    assert THANKS[0 if lang == "bn" else 1] in closing.content
    [session] = await rows(bot, QuestionnaireSession)
    assert session.status is QuestionnaireStatus.COMPLETED and session.visit_week == 4
    assert session.completed_at is not None and session.completed_at > WINDOW_END + timedelta(hours=1)

    # Starting it again for the same visit (the invitation's button): refused kindly, in the
    # participant's language.
    update = push_press(server, user, invitation, "qstart:haq_di")
    (refusal,) = await server.wait_for(user.id, answered, since=update)
    if lang == "bn":
        assert "আগেই দিয়েছেন" in refusal.content and "৪ সপ্তাহের চেকআপ" in refusal.content
    else:
        assert "already answered" in refusal.content and "Week 4 visit" in refusal.content
    assert not is_question(refusal)
    assert len(await rows(bot, QuestionnaireSession)) == 1  # the first response stands, nothing new
    [refused] = await rows(bot, AuditEntry, AuditEntry.action == "questionnaire.refuse_second")
    assert refused.after == {"instrument": "haq_di", "visit_week": 4}


async def test_a_late_response_stays_with_its_visit_when_finished_in_the_next_visit_window(
    bot: BotHarness, server: BotAPIServer
) -> None:
    user = await linked(server, "BSM-103", "A", 1103, "en")
    await catch_up(bot, WEEK4_VISIT)
    [invitation] = invitations(server, user, "haq_di")
    # Late at night on 9 January 2027, the last day before the week-12 period (window 10-24
    # January): the week-4 invitation, pressed at last, starts the week-4 response …
    await catch_up(bot, dhaka(2027, 1, 9, 23, 30))
    update = await user.press(invitation, "qstart:haq_di")
    await server.wait_for(user.id, is_question, since=update)
    await answer_haq(server, user, "en", stop_after=2)
    # … continued the next morning, inside the week-12 window (the Start button again: it
    # continues where it stopped), and finished: it stays the week-4 response.
    await catch_up(bot, dhaka(2027, 1, 10, 9, 0))
    update = push_press(server, user, invitation, "qstart:haq_di")
    (resumed,) = await server.wait_for(user.id, is_question, since=update)
    assert "continue" in resumed.content and q_item(resumed) not in (None, "haq_dress")
    await answer_haq(server, user, "en")
    [late] = await rows(bot, QuestionnaireSession)
    assert late.status is QuestionnaireStatus.COMPLETED and late.visit_week == 4
    # The week-12 invitation still comes, and its response is the week-12 one.
    await catch_up(bot, dhaka(2027, 1, 17, 10, 0))
    await start(server, user, "haq_di")
    await answer_haq(server, user, "en")
    weeks = sorted(
        s.visit_week
        for s in await rows(bot, QuestionnaireSession, QuestionnaireSession.status == QuestionnaireStatus.COMPLETED)
    )
    assert weeks == [4, 12]


async def test_an_unfinished_response_of_an_earlier_visit_is_closed_not_continued_at_the_next(
    bot: BotHarness, server: BotAPIServer
) -> None:
    user = await linked(server, "BSM-104", "A", 1104, "en")
    await catch_up(bot, WEEK4_VISIT)
    await start(server, user, "haq_di")
    await answer_haq(server, user, "en", stop_after=2)
    await catch_up(bot, dhaka(2027, 1, 17, 10, 0))  # the week-12 visit: its own invitation
    first = await start(server, user, "haq_di")
    assert q_item(first) == "haq_dress" and "Question 1 of" in first.content
    sessions = await rows(bot, QuestionnaireSession)
    assert [(s.visit_week, s.status) for s in sessions] == [
        (4, QuestionnaireStatus.EXPIRED),  # answers kept, never continued as week 12's
        (12, QuestionnaireStatus.IN_PROGRESS),
    ]
    assert len(sessions[0].state["answers"]) == 2


@LANGS
async def test_raynaud_diary_switched_on_for_one_participant_only(
    bot: BotHarness, server: BotAPIServer, tmp_path: Path, lang: str
) -> None:
    diary = await linked(server, "BSM-201", "A", 1201, lang)
    other = await linked(server, "BSM-202", "A", 1202, lang)
    reply = await admin_says(server, "/raynaud BSM-201 on", "BSM-201")
    assert "ON" in reply.content and "21 planned" in reply.content  # 7 days before weeks 4, 12 and 24
    listed = await admin_says(server, "/participants", "BSM-201")
    assert ["raynaud on" in line for line in listed.content.splitlines()[1:]] == [True, False]
    [switched] = await rows(bot, AuditEntry, AuditEntry.action == "participant.switch")
    assert switched.after == {"switch": "raynaud", "on": True} and switched.actor.startswith("admin:")

    # The 7 days before the week-4 visit, at 20:00: only BSM-201 is asked.
    await catch_up(bot, dhaka(2026, 11, 15, 20, 0))
    [first_day] = invitations(server, diary, "raynaud_condition_score")
    assert invitations(server, other, "raynaud_condition_score") == []
    question = await start(server, diary, "raynaud_condition_score")
    assert ("১০ = প্রচণ্ড কষ্ট" if lang == "bn" else "10 = Extreme difficulty") in question.content
    closing = await typed(server, diary, "৬")
    assert THANKS[0 if lang == "bn" else 1] in closing.content
    # The next evening the diary asks again (daily: yesterday's answer does not stop it).
    await catch_up(bot, dhaka(2026, 11, 16, 20, 0))
    [invitation] = invitations(server, diary, "raynaud_condition_score")  # the first one's button is gone
    assert invitation.message_id != first_day.message_id
    assert invitations(server, other, "raynaud_condition_score") == []

    # The other participant's forged Start button: not for them.
    update = push_press(server, other, invitation, "qstart:raynaud_condition_score")
    await callback_text(server, update)
    (refusal,) = await server.wait_for(other.id, None, since=update)
    assert ("এখন আপনার জন্য নয়" if lang == "bn" else "not for you") in refusal.content
    assert [s.instrument_id for s in await rows(bot, QuestionnaireSession)] == ["raynaud_condition_score"]
    [session] = await rows(bot, QuestionnaireSession)
    assert session.visit_week == 4 and session.scores == {"rcs": 6}

    # Day 2 answered too; a second rating the same day is refused kindly.
    await start(server, diary, "raynaud_condition_score")
    await typed(server, diary, "৩")
    update = push_press(server, diary, invitation, "qstart:raynaud_condition_score")
    (again,) = await server.wait_for(diary.id, answered, since=update)
    assert ("আজ আগেই দিয়েছেন" if lang == "bn" else "already answered") in again.content and not is_question(again)
    # Day 3's rating started and left: it closes at midnight (the next day is another rating).
    await catch_up(bot, dhaka(2026, 11, 17, 20, 0))
    await start(server, diary, "raynaud_condition_score")
    bot.clock.set(dhaka(2026, 11, 18, 0, 5))
    await bot.tick()
    sessions = await rows(bot, QuestionnaireSession)
    assert [(s.visit_week, s.status.value, s.scores) for s in sessions] == [
        (4, "completed", {"rcs": 6}),
        (4, "completed", {"rcs": 3}),
        (4, "expired", None),
    ]

    # Every day's rating under the week-4 visit in the exports (the ODM repeats the form).
    out = await export(bot, tmp_path / "export")
    exported = read_csv(out / "responses_raynaud_condition_score.csv")
    assert [(r["study_id"], r["visit_week"], r["status"], r["score_rcs"]) for r in exported] == [
        ("BSM-201", "4", "completed", "6"),
        ("BSM-201", "4", "completed", "3"),
        ("BSM-201", "4", "expired", ""),
    ]
    root = ET.parse(out / "trial_record_odm.xml").getroot()
    subject = next(x for x in root.iter(f"{ODM}SubjectData") if x.get("SubjectKey") == "BSM-201")
    week4 = next(e for e in subject.iter(f"{ODM}StudyEventData") if e.get("StudyEventOID") == "SE.WEEK4")
    scores = [
        d.get("Value")
        for d in week4.iter(f"{ODM}ItemData")
        if d.get("ItemOID") == "I.RESPONSES_RAYNAUD_CONDITION_SCORE.SCORE_RCS"
    ]
    assert sorted(scores) == ["3", "6"]

    # Off again: the remaining diary prompts are cancelled, the answer is kept.
    reply = await admin_says(server, "/raynaud BSM-201 off", "BSM-201")
    assert "OFF" in reply.content
    planned = await rows(bot, ScheduledMessage, ScheduledMessage.key.startswith("questionnaire:raynaud"))
    assert planned and {r.status.value for r in planned} <= {"sent", "cancelled", "skipped"}
    assert {r.participant_id for r in planned} == {session.participant_id}


async def test_raynaud_command_refuses_bad_arguments(bot: BotHarness, server: BotAPIServer) -> None:
    await linked(server, "BSM-203", "A", 1203, "en")
    reply = await admin_says(server, "/raynaud BSM-203 maybe", "Not done")
    assert "usage: /raynaud STUDY_ID on|off" in reply.content
    reply = await admin_says(server, "/raynaud BSM-999 on", "Not done")
    assert await rows(bot, AuditEntry, AuditEntry.action == "participant.switch") == []
    async with bot.services.sessions() as db:  # type: ignore[union-attr]
        assert await db.scalar(select(ScheduledMessage.id).where(ScheduledMessage.key.contains("raynaud"))) is None


async def test_raynaud_from_the_shell_is_audited_as_cli_and_plans_the_diary(
    bot: BotHarness, server: BotAPIServer, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cli.admin import run

    await linked(server, "BSM-204", "B", 1204, "bn")
    monkeypatch.setenv("DATABASE_URL", db_url)
    status, text = await run(["raynaud", "BSM-204", "on"], bot.clock)
    assert status == 0 and "ON" in text and "21 planned" in text, text
    status, again = await run(["raynaud", "BSM-204", "on"], bot.clock)
    assert status == 0 and "already ON" in again
    status, refused = await run(["raynaud", "BSM-204", "sometimes"], bot.clock)
    assert status == 1 and "usage" in refused
    audits = await rows(bot, AuditEntry, AuditEntry.action == "participant.switch")
    assert [a.actor.split(":")[0] for a in audits] == ["cli", "cli"] and audits[1].detail == "unchanged"
    planned = await rows(bot, ScheduledMessage, ScheduledMessage.key.startswith("questionnaire:raynaud"))
    assert len(planned) == 21 and {r.status.value for r in planned} == {"planned"}


def test_the_switch_command_turns_the_protocols_one_switch_and_refuses_to_guess() -> None:
    from domain.content import load_content
    from domain.errors import DomainError
    from domain.visit_questionnaires import the_switch

    protocol = load_content().protocol
    assert the_switch(protocol) == "raynaud"  # content/protocol.yaml: switch: raynaud
    (diary,) = [q for q in protocol.questionnaires if q.switch is not None]
    other = diary.model_copy(update={"switch": "second_diary"})
    several = protocol.model_copy(update={"questionnaires": [*protocol.questionnaires, other]})
    with pytest.raises(DomainError, match="several switches"):
        the_switch(several)
    none = protocol.model_copy(update={"questionnaires": [q for q in protocol.questionnaires if q.switch is None]})
    with pytest.raises(DomainError, match="no per-participant switch"):
        the_switch(none)
