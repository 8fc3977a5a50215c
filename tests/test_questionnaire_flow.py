"""Questionnaires end to end: the real bot over HTTP, on SQLite and PostgreSQL.

Check-in in Bangla with a red flag, the report with a seriousness criterion,
a routine check-in, typed answers and hints, restart in the middle, /report
inside a check-in, /cancel, stale and foreign buttons."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, select

from bot.jobs import run_tick
from core.digits import to_bengali_digits
from devtools.botapi_server import BotAPIServer, QueuedUpdate, SentMessage, SimUser
from devtools.harness import COORDINATOR_CHAT, STUDY_PHONE, BotHarness
from models import (
    AdverseEvent,
    Alert,
    AlertLevel,
    AuditEntry,
    QuestionnaireAnswer,
    QuestionnaireSession,
    QuestionnaireStatus,
)
from tests.bothelpers import enroll, link, says

THANKS = ("ধন্যবাদ", "Thank you")


def q_item(message: SentMessage) -> str | None:
    """The item id a question message asks (from its buttons' callback data)."""
    for row in message.buttons:
        for _text, data in row:
            if data and data.startswith("q:"):
                return data.split(":")[2]
    return None


def is_answered(message: SentMessage) -> bool:
    """An answered red-flag or seriousness question: it keeps its buttons, one marked ✓."""
    return any(text.startswith("✓ ") for row in message.buttons for text, _data in row)


def is_question(message: SentMessage) -> bool:
    """A question message waiting for its answer (has answer buttons, none marked ✓)."""
    return q_item(message) is not None and not is_answered(message)


def latest_question(server: BotAPIServer, user: SimUser) -> SentMessage:
    """The newest question message in the participant's chat."""
    questions = [m for m in server.messages(user.id) if is_question(m)]
    assert questions, [m.content for m in server.messages(user.id)]
    return questions[-1]


def button_for(message: SentMessage, value: str) -> str:
    """The callback data of the button with this value."""
    for row in message.buttons:
        for _text, data in row:
            if data and data.startswith("q:") and data.split(":", 3)[3] == value:
                return data
    raise AssertionError(f"no button {value!r} in {message.buttons}")


async def press_value(server: BotAPIServer, user: SimUser, message: SentMessage, value: str) -> SentMessage:
    """Press the button with `value`; returns the next question or the closing message."""
    update = await user.press(message, button_for(message, value))
    found = await server.wait_for(
        user.id, lambda m: is_question(m) or any(t in m.content for t in THANKS), since=update
    )
    return found[0]


async def answer_all(
    server: BotAPIServer, user: SimUser, answers: Mapping[str, str], default: str = "no", limit: int = 80
) -> SentMessage:
    """Answer every question (by item id, else `default`, Skip for optional typed
    items) until the closing message; returns it."""
    message = latest_question(server, user)
    for _ in range(limit):
        if not is_question(message):
            return message
        item = q_item(message)
        assert item is not None
        values = [data.split(":", 3)[3] for row in message.buttons for _t, data in row if data]
        value = answers.get(item)
        if value is None:
            value = default if default in values else ("none" if "none" in values else values[0])
            if item in ("anything_else", "ae_more", "fever_temp"):
                value = "__skip__"
        message = await press_value(server, user, message, value)
    raise AssertionError("questionnaire did not end")


async def linked(server: BotAPIServer, study_id: str, arm: str, user_id: int, lang: str = "bn") -> SimUser:
    """Enroll and link a participant in `lang`."""
    weekday = " fri" if arm == "B" else ""
    code = await enroll(server, f"{study_id} {arm} 2026-10-25 {lang}{weekday}")
    user = server.user(user_id, f"P{user_id}", language_code=lang)
    await link(server, user, code, "বাংলা" if lang == "bn" else "English")
    return user


def push_press(server: BotAPIServer, user: SimUser, message: SentMessage, data: str) -> QueuedUpdate:
    """A press with any callback data, as if from `user` (an old or forged button)."""
    query_id = server._new_query_id(user.id, user.id)
    query = {
        "id": query_id,
        "from": user.user_dict,
        "message": {**message.raw, "chat": user.chat_dict},
        "chat_instance": "1",
        "data": data,
    }
    return server.push_update({"callback_query": query})


async def callback_text(server: BotAPIServer, update: QueuedUpdate) -> str:
    """The text the bot answered a press with (waits up to 5 s)."""
    for _ in range(250):
        answer = server.callback_answer(update)
        if answer is not None:
            return answer.text or ""
        await asyncio.sleep(0.02)
    raise AssertionError("the press was not answered")


async def rows(bot: BotHarness, model: type, *where: object) -> list:
    assert bot.services is not None
    async with bot.services.sessions() as session:
        return list(await session.scalars(select(model).where(*where)))


async def count(bot: BotHarness, model: type, *where: object) -> int:
    assert bot.services is not None
    async with bot.services.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def test_bangla_checkin_with_methotrexate_double_dose_alerts_at_once(
    bot: BotHarness, server: BotAPIServer
) -> None:
    user = await linked(server, "BSM-001", "B", 1001)
    first = await says(server, user, "/checkin", is_question)
    assert "সাপ্তাহিক খোঁজখবর" in first.content  # the title, in Bangla
    assert "মেথোট্রেক্সেট" in first.content and q_item(first) == "rf_mtx_extra_dose"
    assert to_bengali_digits("1") in first.content  # "প্রশ্ন ১ …" in Bengali digits
    assert next(len(row) for row in first.buttons) <= 2  # big buttons, at most two a row

    update = await user.press(first, button_for(first, "yes"))
    advice, following = await server.wait_for(user.id, lambda m: "⚠️" in m.content or is_question(m), 2, since=update)
    assert "মেথোট্রেক্সেট খাবেন না" in advice.content  # stop methotrexate, in Bangla
    assert advice.content.count(STUDY_PHONE) == 1 and to_bengali_digits(STUDY_PHONE) not in advice.content
    assert is_question(following) and q_item(following) == "rf_mtx_lung"

    # Within seconds, before the check-in is finished: the coordinators' alert.
    (alert_msg,) = await server.wait_for(COORDINATOR_CHAT, "URGENT")
    text = alert_msg.content
    assert text.splitlines()[0].startswith("🚨 URGENT · BSM-001 · arm B")
    assert "methotrexate on more than one day" in text
    assert "Aware:" in text and "Alert #" in text
    assert "P1001" not in text and "1001" not in text.replace("BSM-001", "")  # no name, no Telegram id
    assert alert_msg.button_texts == ["✅ Acknowledge"]

    # Another red flag in the same check-in, before the acknowledgement: the same alert,
    # told in a NEW message (the first one is never edited in silence).
    await press_value(server, user, following, "yes")
    closing = await answer_all(server, user, {})
    assert "ধন্যবাদ" in closing.content
    (update_msg,) = await server.wait_for(COORDINATOR_CHAT, "NEW FINDINGS")
    assert bot.app is not None
    # Counted after the alert tick has run (the one after the last answer's commit may not
    # have yet): an extra message to the coordinators would be there by now.
    assert await run_tick(bot.app, "alerts") is None
    assert "flag:mtx_pneumonitis" in update_msg.content and "pneumonitis" in update_msg.content
    assert len(server.messages(COORDINATOR_CHAT)) == 2 and "pneumonitis" not in alert_msg.content
    [alert] = await rows(bot, Alert)
    assert alert.level is AlertLevel.URGENT and alert.kind == "red_flag"
    assert set(alert.details["keys"]) == {"flag:mtx_extra_dose", "flag:mtx_pneumonitis"}
    [session] = await rows(bot, QuestionnaireSession)
    assert session.status is QuestionnaireStatus.COMPLETED and session.scores is not None
    assert session.triage is not None and session.triage["result"]["level"] == "URGENT"
    stored = await rows(bot, QuestionnaireAnswer, QuestionnaireAnswer.item_id == "rf_mtx_extra_dose")
    assert [a.value for a in stored] == [True] and stored[0].instrument_version == "1.1"


async def test_routine_checkin_raises_nothing(bot: BotHarness, server: BotAPIServer) -> None:
    user = await linked(server, "BSM-002", "A", 1002, "en")
    first = await says(server, user, "/checkin", is_question)
    assert "Weekly check-in" in first.content
    closing = await answer_all(server, user, {})
    assert "Thank you" in closing.content
    assert not any("⚠️" in m.content for m in server.messages(user.id))
    assert await count(bot, Alert) == 0
    bot.clock.advance(timedelta(days=1))
    await bot.tick()  # the next 08:00 digest has nothing to list
    assert server.messages(COORDINATOR_CHAT) == []


async def test_typed_answers_and_hints(bot: BotHarness, server: BotAPIServer) -> None:
    user = await linked(server, "BSM-003", "B", 1003)
    first = await says(server, user, "/checkin", is_question)
    again = await says(server, user, "হয়তো", is_question)  # "maybe": a button was expected
    assert q_item(again) == "rf_mtx_extra_dose" and "বোতাম" in again.content
    assert server.messages(user.id)[-2].buttons == [] or first.buttons == []  # old keyboard taken away
    nxt = await says(server, user, "না", is_question)  # typed "no" in Bangla
    assert q_item(nxt) == "rf_mtx_lung"
    back = await says(server, user, "পিছনে", is_question)  # typed "back"
    assert q_item(back) == "rf_mtx_extra_dose"
    sticker = await user.send_sticker()
    (reply,) = await server.wait_for(user.id, is_question, since=sticker)
    assert "ছবি" in reply.content and q_item(reply) == "rf_mtx_extra_dose"
    # a photo during a check-in is offered as a report (issue 14); the question keeps its buttons
    photo = await user.send_photo()
    (offer,) = await server.wait_for(user.id, "বোতামটি চাপুন", since=photo)
    assert offer.button_texts == ["এই ছবির সমস্যাটা জানান"] and is_question(latest_question(server, user))
    [session] = await rows(bot, QuestionnaireSession)
    assert session.state["answers"] == {"rf_mtx_extra_dose": False}


async def test_checkin_resumes_at_the_right_question_after_restart(bot: BotHarness, server: BotAPIServer) -> None:
    user = await linked(server, "BSM-004", "B", 1004)
    first = await says(server, user, "/checkin", is_question)
    second = await press_value(server, user, first, "no")
    third = await press_value(server, user, second, "no")
    assert q_item(third) == "rf_mtx_infection"
    await bot.restart()
    # the button of the question on screen still works after the restart …
    fourth = await press_value(server, user, third, "no")
    assert q_item(fourth) == "rf_mtx_bleeding"
    # … and /checkin continues, it does not start again
    await bot.restart()
    resumed = await says(server, user, "/checkin", is_question)
    assert q_item(resumed) == "rf_mtx_bleeding"
    assert await count(bot, QuestionnaireSession) == 1


async def test_report_inside_checkin_suspends_and_resumes_it(bot: BotHarness, server: BotAPIServer) -> None:
    user = await linked(server, "BSM-005", "A", 1005, "en")
    first = await says(server, user, "/checkin", is_question)
    second = await press_value(server, user, first, "no")
    report = await says(server, user, "/report", is_question)
    assert "Report a problem" in report.content and q_item(report) == "ae_what"
    checkin, _report = await rows(bot, QuestionnaireSession)  # type: ignore[misc]
    assert checkin.status is QuestionnaireStatus.SUSPENDED
    press = await user.press(second, button_for(second, "yes"))  # the check-in's button, mid-report
    assert "finish your problem report first" in await callback_text(server, press)
    update = await user.send("/cancel")
    (resumed,) = await server.wait_for(user.id, is_question, since=update)
    assert "continue" in resumed.content and q_item(resumed) == q_item(second)
    statuses = sorted(s.status.value for s in await rows(bot, QuestionnaireSession))
    assert statuses == ["cancelled", "in_progress"]
    assert await count(bot, AdverseEvent) == 0  # a cancelled report is not a report


async def test_old_and_foreign_buttons_change_nothing(bot: BotHarness, server: BotAPIServer) -> None:
    alice = await linked(server, "BSM-006", "B", 1006, "en")
    first = await says(server, alice, "/checkin", is_question)
    old_yes = button_for(first, "yes")
    second = await press_value(server, alice, first, "no")
    second_yes = button_for(second, "yes")
    # an answered red-flag question keeps its buttons, the answer marked (see test_findings)
    assert first.button_texts == ["Yes", "✓ No"] and old_yes in str(first.buttons)
    [session] = await rows(bot, QuestionnaireSession)
    before = dict(session.state)

    # An old button of a question that is not a red flag: says so, changes nothing.
    stale = push_press(server, alice, first, f"q:{session.id}:nausea:severe")
    assert "Nothing was changed" in await callback_text(server, stale)

    # Another participant's forged button for Alice's session: refused and audited.
    mallory = await linked(server, "BSM-007", "B", 1007, "en")
    forged = push_press(server, mallory, second, second_yes)
    assert "not for you" in await callback_text(server, forged)
    [after] = await rows(bot, QuestionnaireSession, QuestionnaireSession.id == session.id)
    assert after.state == before and await count(bot, Alert) == 0
    assert await count(bot, AuditEntry, AuditEntry.action == "questionnaire.foreign_button") == 1

    # After the end, the (non red-flag) buttons of the finished check-in say it is finished.
    await answer_all(server, alice, {})
    late = push_press(server, alice, second, f"q:{session.id}:anything_else:__skip__")
    assert "already finished" in await callback_text(server, late)
    assert await count(bot, Alert) == 0
    assert not [a for a in await rows(bot, QuestionnaireAnswer) if a.value is True]


async def test_reminder_start_button_starts_then_continues_the_checkin(bot: BotHarness, server: BotAPIServer) -> None:
    user = await linked(server, "BSM-008", "A", 1008, "en")
    reminder = server.messages(user.id)[-1]  # any bot message: the button's data is what counts
    update = push_press(server, user, reminder, "qstart:weekly_checkin")
    (first,) = await server.wait_for(user.id, is_question, since=update)
    assert "Weekly check-in" in first.content
    second = await press_value(server, user, first, "no")
    second_item = q_item(second)
    update = push_press(server, user, reminder, "qstart:weekly_checkin")
    (again,) = await server.wait_for(user.id, is_question, since=update)
    assert q_item(again) == second_item == "rf_bari_shingles" and "continue" in again.content
    assert second.buttons == []  # the earlier copy of the question lost its buttons
    assert await count(bot, QuestionnaireSession) == 1
    update = push_press(server, user, reminder, "qstart:haq_di_unknown")
    (refused,) = await server.wait_for(user.id, "not for you", since=update)
    assert refused.buttons == []


MESSAGE_ID_WRITE = "UPDATE questionnaire_sessions SET current_message_id"


@contextmanager
def statements(bot: BotHarness) -> Iterator[list[tuple[str, str]]]:
    """The statements the bot's engine runs meanwhile, each with its parameters."""
    assert bot.services is not None
    engine = bot.services.engine.sync_engine
    seen: list[tuple[str, str]] = []

    def counted(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        seen.append((" ".join(statement.split()), repr(parameters)))

    event.listen(engine, "before_cursor_execute", counted)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", counted)


async def until_stored(seen: list[tuple[str, str]], writes: int = 1) -> None:
    """Wait (up to 5 s) until the question's message id has been written `writes` times."""
    for _ in range(250):
        if sum(1 for statement, _p in seen if statement.startswith(MESSAGE_ID_WRITE)) >= writes:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"the message id was not stored: {[s for s, _p in seen]}")


def answer_cost(seen: list[tuple[str, str]]) -> list[str]:
    """The statements of an answer's unit of work (the message id's write set aside);
    fails when one SELECT ran twice with the same parameters (a re-read)."""
    selects = [(s, p) for s, p in seen if s.startswith("SELECT")]
    assert len(selects) == len(set(selects)), [s[:90] for s, _p in selects]
    return [s for s, _p in seen if not s.startswith(MESSAGE_ID_WRITE)]


async def test_an_answer_is_a_few_statements_and_reads_nothing_twice(bot: BotHarness, server: BotAPIServer) -> None:
    """A pressed answer is one transaction of six statements: the update id stored (a
    re-delivery finds it there), the participant by chat, the session with last week's
    triage (one SELECT), the answer and its audit row, the session's new state and
    triage in one UPDATE. A typed answer is seven: it finds the open session by its
    participant, and reads last week's triage apart. Nothing the unit of work loaded is
    read again (a typed answer read the open session twice), and the session is written
    once (reading last week's grades flushed its state, then the commit wrote its
    triage)."""
    user = await linked(server, "BSM-009", "A", 1009, "en")
    first = await says(server, user, "/checkin", is_question)
    with statements(bot) as seen:
        second = await press_value(server, user, first, "no")  # the session's first triage
        await until_stored(seen)
    opening = answer_cost(seen)
    assert len(opening) <= 6, opening
    assert len([s for s in opening if s.startswith("UPDATE questionnaire_sessions")]) == 1, opening
    with statements(bot) as seen:
        await press_value(server, user, second, "no")
        await until_stored(seen)
    pressed = answer_cost(seen)
    assert len(pressed) <= 6, pressed
    with statements(bot) as seen:
        await says(server, user, "no", is_question)
        await until_stored(seen)
    typed = answer_cost(seen)
    assert len(typed) <= 7, typed


async def test_a_chats_next_update_waits_until_the_question_is_remembered(
    bot: BotHarness, server: BotAPIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The id of the question a press brought is stored (group commit) before the chat's
    next update is handled: with that write slowed down, a typed answer right behind the
    press still marks the question the press brought, not the one before it."""
    user = await linked(server, "BSM-010", "A", 1010, "en")
    first = await says(server, user, "/checkin", is_question)
    assert bot.app is not None
    app = bot.app
    write = app._write_shown

    async def slow(shown: list[tuple[int, int]]) -> None:
        await asyncio.sleep(0.3)
        await write(shown)

    monkeypatch.setattr(app, "_write_shown", slow)
    press = await user.press(first, button_for(first, "no"))
    await user.send("no")
    asked = await server.wait_for(
        user.id, lambda m: q_item(m) is not None and m.message_id > first.message_id, 2, since=press
    )
    second, _third = sorted(asked, key=lambda m: m.message_id)
    assert q_item(first) == "rf_bari_infection" and first.button_texts == ["Yes", "✓ No"]
    assert q_item(second) == "rf_bari_shingles" and second.button_texts == ["Yes", "✓ No"]


async def test_questions_sent_together_are_remembered_together(
    bot: BotHarness, server: BotAPIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Participants answering at once: the message ids of the questions sent while one
    id write runs (slowed down here, so that they surely do) are stored together, in
    fewer transactions than there are answers, each the id of the question shown."""
    users = [await linked(server, f"BSM-{20 + i:03d}", "A", 1020 + i, "en") for i in range(12)]
    firsts = [await says(server, user, "/checkin", is_question) for user in users]
    await shown_are_stored(bot, [m.message_id for m in firsts])
    assert bot.app is not None
    write = bot.app._write_shown

    async def slow(shown: list[tuple[int, int]]) -> None:
        await asyncio.sleep(0.2)
        await write(shown)

    monkeypatch.setattr(bot.app, "_write_shown", slow)
    with statements(bot) as seen:
        presses = [await user.press(first, button_for(first, "no")) for user, first in zip(users, firsts, strict=True)]
        seconds = [
            (await server.wait_for(user.id, is_question, since=press))[0]
            for user, press in zip(users, presses, strict=True)
        ]
        await shown_are_stored(bot, [m.message_id for m in seconds])
    writes = [p for s, p in seen if s.startswith(MESSAGE_ID_WRITE)]
    assert 1 <= len(writes) < len(users), writes


async def shown_are_stored(bot: BotHarness, message_ids: list[int]) -> None:
    """Wait (up to 5 s) until the sessions' current message ids are these (in any order)."""
    for _ in range(250):
        stored = sorted(s.current_message_id or 0 for s in await rows(bot, QuestionnaireSession))
        if stored == sorted(message_ids):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"stored {stored}, shown {message_ids}")


async def test_the_press_is_answered_beside_the_edit_and_the_next_question(
    bot: BotHarness, server: BotAPIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Answering the press (it only stops the spinner) goes at once after the commit,
    beside the other calls: when it fails in transit and waits for its retry, the
    answered question is still marked and the next one sent meanwhile, in that order."""
    from bot import unit_of_work

    monkeypatch.setattr(unit_of_work, "REPLY_RETRY_DELAYS", (1.0, 1.0, 1.0))
    user = await linked(server, "BSM-011", "A", 1011, "en")
    first = await says(server, user, "/checkin", is_question)
    server.faults.add("answerCallbackQuery", "500", times=1)
    start = len(server.requests)
    press = await user.press(first, button_for(first, "no"))
    (second,) = await server.wait_for(user.id, is_question, since=press)
    assert await callback_text(server, press) == ""  # answered, after its retry
    calls = [r.method for r in list(server.requests)[start:] if r.method != "getUpdates"]
    assert [c for c in calls if c != "answerCallbackQuery"] == ["editMessageReplyMarkup", "sendMessage"]
    assert calls[-1] == "answerCallbackQuery" and calls.count("answerCallbackQuery") == 2, calls
    assert first.button_texts == ["Yes", "✓ No"] and q_item(second) == "rf_bari_shingles"


def test_every_engine_error_has_a_translated_hint() -> None:
    from bot.handlers.questionnaire import HINTS, hint
    from bot.i18n import use_locale
    from domain.questionnaires import AnswerError
    from domain.questionnaires.parsing import ERROR_CODES

    assert set(HINTS) | {"too_long"} == set(ERROR_CODES)  # too_long: a plural (ngettext), below
    data = {
        "min": 34,
        "max": 43,
        "unit": {"en": "°C", "bn": "ডিগ্রি (সেলসিয়াস)"},
        "earliest": "2025-10-25",
        "max_length": 500,
    }
    for code in ERROR_CODES:
        with use_locale("bn"):
            bn = hint(AnswerError(code, "x", data))
        with use_locale("en"):
            en = hint(AnswerError(code, "x", data))
        assert bn != en and "{" not in bn + en, code
    with use_locale("bn"):
        assert "৩৪ থেকে ৪৩ ডিগ্রি (সেলসিয়াস)" in hint(AnswerError("out_of_range", "x", data))
    # With a second unit (the thermometer's Fahrenheit), that one first and the main one beside it.
    fahrenheit = {**data, "alt_units": [{"unit": {"en": "°F", "bn": "ডিগ্রি (ফারেনহাইট)"}, "min": 93, "max": 109.4}]}
    with use_locale("bn"):
        assert "৯৩ থেকে ১০৯.৪ ডিগ্রি (ফারেনহাইট), অথবা ৩৪ থেকে ৪৩ ডিগ্রি (সেলসিয়াস)" in hint(
            AnswerError("not_a_number", "x", fahrenheit)
        )
    with use_locale("en"):
        assert "93 to 109.4 °F, or from 34 to 43 °C" in hint(AnswerError("not_a_number", "x", fahrenheit))
    # A count in English takes its plural; Bangla needs none ("১টি", "৫০০টি").
    with use_locale("en"):
        assert hint(AnswerError("too_long", "x", {"max_length": 1})).endswith("at most 1 letter.")
        assert hint(AnswerError("too_long", "x", {"max_length": 500})).endswith("at most 500 letters.")
    with use_locale("bn"):
        assert "৫০০টি অক্ষরের" in hint(AnswerError("too_long", "x", {"max_length": 500}))


def test_every_answer_button_fits_telegram_64_bytes() -> None:
    from bot import callbacks
    from domain.content import load_content
    from domain.questionnaires import BACK_VALUE, SKIP_VALUE, options

    instruments = load_content().instruments
    for instrument in instruments.values():
        for item in instrument.items:
            for value in [o.value for o in options(item, "en")] + [SKIP_VALUE, BACK_VALUE]:
                data = callbacks.answer(999_999_999, item.id, value)
                assert len(data.encode()) <= 64, data
