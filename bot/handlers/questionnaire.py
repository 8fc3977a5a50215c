"""Questionnaires in the chat: /checkin, /report, /cancel, the reminder's start
button, the answer buttons (with Skip and Back) and typed answers.

One question per message with big buttons; typed answers are read by the
engine (Bengali digits, "হ্যাঁ"/"yes"). The safety advice goes out in the same
reply as the answer that triggered it: it never waits for anything. The
progress itself lives in the database (domain.questionnaire_sessions)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from telegram import InlineKeyboardMarkup, Update

from bot import callbacks, calls
from bot.context import BotContext
from bot.handlers import common
from bot.i18n import N_, _, current_language, format_number, localize_digits, ngettext
from bot.keyboards import Keyboard, keyboard, rows_of
from bot.services import Services
from bot.texts import not_enrolled, with_contact
from core.digits import phone_as_dialled
from core.text import Text
from domain import audit, questionnaire_sessions, visit_questionnaires
from domain.questionnaires import (
    BACK_VALUE,
    SKIP_VALUE,
    AnswerError,
    can_go_back,
    options,
    progress,
    prompt,
)
from domain.questionnaires.model import FreeTextItem, Item, NumberItem
from domain.triage import TriageTable, advice_text
from models import Participant, ParticipantStatus, QuestionnaireSession

if TYPE_CHECKING:
    from bot.app import TrialApplication

CHOSEN = "✓ "
SHORT_LABEL = 14
"""Buttons with labels up to this length go two to a row; longer ones get a row each."""

HINTS = {
    "expected_button": N_("Please tap one of the buttons, or type the number of your answer."),
    "not_a_number": N_("Please type a number from {min} to {max}{unit}."),
    "not_whole_number": N_("Please type a whole number from {min} to {max}."),
    "out_of_range": N_("That number is outside {min} to {max}{unit}. Please check it and type it again."),
    "bad_date": N_("Please tap Today or Yesterday, or type the date like 25/10/2026."),
    "date_in_future": N_("That date is in the future. Please type the day it started."),
    "date_too_old": N_("That date is too long ago. Please type a date after {earliest}."),
    "empty": N_("Please type a few words."),
    "not_skippable": N_("This question cannot be skipped. Please answer it."),
    "nothing_before": N_("This is the first question; there is nothing to go back to."),
    "stale_button": N_("That button belongs to a question you already answered. Nothing was changed."),
    "already_complete": N_("These questions are already finished. Nothing was changed."),
    "instrument_changed": N_("These questions have been updated. Please start again."),
}

HINTS_WITH_ALT_UNIT = {
    "not_a_number": N_("Please type a number from {alt_min} to {alt_max}{alt_unit}, or from {min} to {max}{unit}."),
    "out_of_range": N_(
        "That number is outside {alt_min} to {alt_max}{alt_unit} and {min} to {max}{unit}. "
        "Please check it and type it again."
    ),
}


def env(context: BotContext) -> questionnaire_sessions.Env:
    """The questionnaire environment of this process."""
    return env_of(context.services)


def env_of(services: Services) -> questionnaire_sessions.Env:
    """The questionnaire environment from the process's services (handlers and ticks)."""
    protocol = services.protocol
    return questionnaire_sessions.Env(
        instruments=services.instruments,
        triage=services.content.triage,
        tz=services.settings.tz,
        switches=visit_questionnaires.default_instruments(protocol),
        coordinator_chats=services.settings.coordinator_chat_ids,
        report_instrument=protocol.report_instrument,
        checkin_instrument=protocol.checkin.instrument,
        same_day_window=protocol.same_day_window,
        report_idle_close=protocol.report_idle_close,
        protocol=protocol,
    )


async def expiry_tick(app: TrialApplication) -> None:
    """Close the questionnaires whose time is over (a check-in whose week ended, a report
    idle too long) and raise what they found; each in its own transaction, exactly once."""
    services = app.services
    now = services.clock.now()
    environment = env_of(services)
    async with services.one_writer(), services.sessions() as db:
        if await questionnaire_sessions.backfill_expiry(db, environment):
            await db.commit()
    async with services.sessions() as db:
        due = await questionnaire_sessions.expire_due(db, now, environment)
    for session_id in due:
        async with services.one_writer(), services.sessions() as db:
            session = await db.get(QuestionnaireSession, session_id)
            participant = await db.get(Participant, session.participant_id) if session else None
            if session is None or participant is None:
                continue
            if await questionnaire_sessions.expire(db, participant, session, now=now, env=environment):
                await db.commit()
            else:
                await db.rollback()


def marked_keyboard(markup: InlineKeyboardMarkup | Keyboard | None, chosen: str) -> Keyboard | None:
    """An answered red-flag or seriousness question keeps its answer buttons, the
    chosen one marked ✓ (so "Yes" can still be pressed); Back and Skip go. `markup`: the
    pressed message's (PTB's, as the update brought it) or `question`'s."""
    if markup is None:
        return None
    rows = []
    for row in rows_of(markup):
        kept = []
        for label, data in row:
            value = callbacks.answer_value(data)
            if value in (BACK_VALUE, SKIP_VALUE) or not value:
                continue
            kept.append(((CHOSEN if value == chosen else "") + label.removeprefix(CHOSEN), data))
        if kept:
            rows.append(kept)
    return keyboard(rows) if rows else None


def hint(error: AnswerError) -> str:
    """The participant's hint for an answer the engine refused, in their language."""
    data = error.data
    if error.code == "too_long":
        limit = int(data.get("max_length", 0))
        return ngettext(
            "That is too long. Please write it in at most {max_length} letter.",
            "That is too long. Please write it in at most {max_length} letters.",
            limit,
        ).format(max_length=format_number(limit))
    template = HINTS.get(error.code, HINTS["expected_button"])
    values = {
        "min": format_number(data.get("min", 0)),
        "max": format_number(data.get("max", 0)),
        "unit": _unit_text(data.get("unit")),
        "earliest": localize_digits("/".join(reversed(str(data.get("earliest", "")).split("-")))),
    }
    alts = data.get("alt_units") or []
    if error.code in HINTS_WITH_ALT_UNIT and alts:
        # The other unit first (Fahrenheit: what home thermometers show), the main one beside it.
        template = HINTS_WITH_ALT_UNIT[error.code]
        values.update(
            alt_min=format_number(alts[0]["min"]),
            alt_max=format_number(alts[0]["max"]),
            alt_unit=_unit_text(alts[0]["unit"]),
        )
    return _(template).format(**values)


def _unit_text(unit: object) -> str:
    """A unit after a number (" °F"), in the current language; empty when there is none."""
    return " " + Text(**unit).get(current_language()) if isinstance(unit, dict) else ""


def question(current: questionnaire_sessions.Progress) -> tuple[str, Keyboard | None]:
    """The message for the current question: where we are, the question, its buttons."""
    item = current.item
    assert item is not None
    lang = current.context.language
    done, total = progress(current.instrument, current.state, current.context)
    number = min(done + 1, total)
    header = _("Question {number} of {total}").format(number=format_number(number), total=format_number(total))
    text = header + "\n\n" + prompt(item, lang)
    choices = options(item, lang)
    if not choices or isinstance(item, NumberItem | FreeTextItem):
        text += "\n\n" + _("Please type your answer.")
    sid = current.session.id
    buttons = [(o.label, callbacks.answer(sid, item.id, o.value)) for o in choices]
    per_row = 2 if all(len(o.label) <= SHORT_LABEL for o in choices) else 1
    rows = [buttons[i : i + per_row] for i in range(0, len(buttons), per_row)]
    extra = []
    if can_go_back(current.instrument, current.state, current.context):
        extra.append(("◀ " + _("Back"), callbacks.answer(sid, item.id, BACK_VALUE)))
    if item.optional:
        extra.append((_("Skip") + " ▶", callbacks.answer(sid, item.id, SKIP_VALUE)))
    if extra:
        rows.append(extra)
    return text, keyboard(rows) if rows else None


def send_question(context: BotContext, current: questionnaire_sessions.Progress, lead: str | None = None) -> None:
    """Queue the current question; once sent, remember its message id in the row (with
    the other questions sent meanwhile: `TrialApplication.store_shown_question`)."""
    text, markup = question(current)
    if lead:
        text = lead + "\n\n" + text
    chat = context.work.update.effective_chat
    assert chat is not None
    bot = context.bot
    app: TrialApplication = context.application  # type: ignore[assignment]
    session_id = current.session.id
    chat_id = chat.id

    async def send() -> None:
        await app.store_shown_question(session_id, await calls.send_text(bot, chat_id, text, markup))

    context.work.after_commit(send)


def _drop_old_keyboard(context: BotContext, current: questionnaire_sessions.Progress | None) -> None:
    """Typed answers leave the previous question's buttons: take them away."""
    chat = context.work.update.effective_chat
    if current is None or chat is None or current.session.current_message_id is None:
        return
    bot = context.bot
    chat_id, message_id = chat.id, current.session.current_message_id
    context.work.after_commit(lambda: calls.set_markup(bot, chat_id, message_id, None))


def intro(current: questionnaire_sessions.Progress) -> str:
    """Title and instructions of a questionnaire that is starting."""
    lang = current.context.language
    instrument = current.instrument
    parts = [instrument.title.get(lang)]
    if instrument.instructions is not None:
        parts.append(instrument.instructions.get(lang))
    if lang == "bn" and instrument.validated.en and not instrument.validated.bn:
        parts.append(_("Note: the Bangla version of these questions has not been validated yet."))
    return "\n".join(parts)


def advice_message(keys: tuple[str, ...], phone: str, table: TriageTable) -> str:
    """What the participant must do now, with the study phone (never delayed)."""
    lang = current_language()
    lines = ["⚠️ " + _("Important: please read this now.")]
    # The number once, in the first (most urgent) advice; the others point to it.
    lines += [
        advice_text(key, lang, phone_as_dialled(phone) if i == 0 else _("the number above"), table)
        for i, key in enumerate(keys)
    ]
    lines.append(_("The study team has been told."))
    return with_contact("\n\n".join(lines), phone)


def show(context: BotContext, outcome: questionnaire_sessions.Outcome) -> None:
    """Put an outcome into words: advice first, then thanks, then the next question."""
    phone = context.services.settings.study_contact_phone
    if outcome.advice:
        context.reply(advice_message(outcome.advice, phone, context.services.content.triage))
    lead: str | None = None
    if outcome.completed is not None:
        if outcome.completed.instrument_id == context.services.protocol.report_instrument:
            context.reply(_("Thank you. Your report is saved and the study team will see it."))
        else:
            context.reply(_("Thank you! You have answered all the questions."))
    if outcome.cancelled is not None:
        context.reply(_("Stopped. These questions are not counted as finished; the answers you gave are kept."))
    current = outcome.current
    if current is None or current.item is None:
        return
    title = current.instrument.title.get(current.context.language)
    if outcome.finish_report_first:
        lead = _("Please finish your problem report first, or send /cancel to stop it.")
    elif outcome.started:
        lead = intro(current)
    elif outcome.resumed:
        lead = _("Let us continue where you stopped: {title}.").format(title=title)
    send_question(context, current, lead)


def _participant(context: BotContext) -> Participant | None:
    participant = context.participant
    if participant is None:
        context.reply(not_enrolled(context.services.settings.study_contact_phone, context.services.protocol))
    return participant


async def _begin(context: BotContext, participant: Participant, instrument_id: str, origin: str) -> None:
    if (
        participant.status is ParticipantStatus.WITHDRAWN
        and instrument_id != context.services.protocol.report_instrument
    ):
        context.reply(_("You are no longer in the study follow-up, so there are no questions for you."))
        return
    outcome = await questionnaire_sessions.begin(
        context.db, participant, instrument_id, origin, now=context.now, env=env(context)
    )
    if outcome.already_answered is not None:
        context.reply(already_answered(context, instrument_id, outcome.already_answered))
        return
    if outcome.not_available or outcome.current is None:
        context.reply(_("These questions are not for you right now."))
        return
    if not outcome.started:
        _drop_old_keyboard(context, outcome.current)
    show(context, outcome)


def already_answered(context: BotContext, instrument_id: str, week: int) -> str:
    """The kind refusal of a second response for a visit (or a diary day) that has one."""
    services = context.services
    instrument = services.instruments.get(instrument_id)
    title = instrument.title.get(current_language()) if instrument is not None else ""
    rule = visit_questionnaires.rule_for(services.protocol, instrument_id)
    if rule is not None and rule.daily_before_visit is not None:
        return _("Thank you, you have already answered “{title}” today. Please answer it again tomorrow.").format(
            title=title
        )
    visit = services.protocol.visit(week).name.get(current_language())
    return _(
        "Thank you, you have already answered “{title}” for your {visit}. Your answers are kept; "
        "there is nothing more to answer until your next visit."
    ).format(title=title, visit=visit)


async def checkin_command(update: Update, context: BotContext) -> None:
    """/checkin: start (or continue) the weekly check-in now."""
    participant = _participant(context)
    if participant is not None:
        await _begin(
            context, participant, context.services.protocol.checkin.instrument, questionnaire_sessions.ORIGIN_COMMAND
        )


async def report_command(update: Update, context: BotContext) -> None:
    """/report: report a problem at any time, also in the middle of another questionnaire."""
    participant = _participant(context)
    if participant is not None:
        await _begin(
            context, participant, context.services.protocol.report_instrument, questionnaire_sessions.ORIGIN_REPORT
        )


async def cancel_command(update: Update, context: BotContext) -> None:
    """/cancel: leave the questions without counting them as finished."""
    participant = _participant(context)
    if participant is None:
        return
    current = await questionnaire_sessions.current_progress(context.db, participant, context.now, env(context))
    outcome = await questionnaire_sessions.cancel(context.db, participant, now=context.now, env=env(context))
    if outcome.cancelled is None:
        context.reply(_("There is nothing to cancel."))
        return
    _drop_old_keyboard(context, current)
    show(context, outcome)


async def start_button(update: Update, context: BotContext) -> None:
    """The reminder's button `qstart:<instrument>`: start or continue that questionnaire."""
    query = update.callback_query
    assert query is not None and query.data is not None
    participant = common.button_participant(context, withdrawn_too=True)
    if participant is None:
        return
    instrument_id = callbacks.parse_start(query.data)
    context.answer()
    context.edit_markup(None)
    await _begin(context, participant, instrument_id, questionnaire_sessions.ORIGIN_PROMPT)


async def answer_button(update: Update, context: BotContext) -> None:
    """An answer, Skip or Back button (`q:<session>:<item>:<value>`)."""
    query = update.callback_query
    assert query is not None and query.data is not None
    participant = common.button_participant(context, withdrawn_too=True)
    if participant is None:
        return
    pressed = callbacks.parse_answer(query.data)
    if pressed is None:
        common.button_no_longer_active(context)
        return
    session_id, item_id, value = pressed.session_id, pressed.item_id, pressed.value
    try:
        outcome = await questionnaire_sessions.answer(
            context.db, participant, value, now=context.now, env=env(context), session_id=session_id, item_id=item_id
        )
    except questionnaire_sessions.NotYours:
        audit.record(
            context.db,
            at=context.now,
            actor=audit.participant_actor(participant.study_id),
            action="questionnaire.foreign_button",
            participant_id=participant.id,
            detail=f"session {session_id}",
        )
        context.answer(_("This button is not for you. Nothing was changed."), alert=True)
        return
    if outcome.error is not None and outcome.error.code == questionnaire_sessions.SUSPENDED:
        context.answer(_("Please finish your problem report first, or send /cancel to stop it."), alert=True)
        return
    if outcome.error is not None:
        context.answer(hint(outcome.error), alert=True)
        if outcome.error.code in ("already_complete", "stale_button", "instrument_changed"):
            context.edit_markup(None)
        return
    message = query.message
    markup = message.reply_markup if message is not None and hasattr(message, "reply_markup") else None
    if outcome.corrected is not None:
        context.answer()
        context.edit_markup(marked_keyboard(markup, value))
        _show_correction(context, outcome)
        return
    context.answer()
    answered = _answered_item(context, item_id)
    keep = (
        answered is not None
        and questionnaire_sessions.is_safety_item(answered)
        and value not in (BACK_VALUE, SKIP_VALUE)
    )
    context.edit_markup(marked_keyboard(markup, value) if keep else None)
    show(context, outcome)


def _mark_typed_safety_answer(context: BotContext, current: questionnaire_sessions.Progress, asked: Item) -> None:
    """A red-flag or seriousness question answered by typing keeps its buttons too, the
    answer marked ✓ (the edit is queued after the removal, so it wins)."""
    chat = context.work.update.effective_chat
    message_id = current.session.current_message_id
    value = current.session.state.get("answers", {}).get(asked.id)
    if (
        chat is None
        or message_id is None
        or not questionnaire_sessions.is_safety_item(asked)
        or not isinstance(value, bool)
    ):
        return
    markup = marked_keyboard(question(current)[1], "yes" if value else "no")
    bot, chat_id = context.bot, chat.id
    context.work.after_commit(lambda: calls.set_markup(bot, chat_id, message_id, markup))


def _answered_item(context: BotContext, item_id: str) -> Item | None:
    """The item a pressed answer button belongs to (None when unknown)."""
    for instrument in context.services.instruments.values():
        try:
            return instrument.item(item_id)
        except KeyError:
            continue
    return None


def _show_correction(context: BotContext, outcome: questionnaire_sessions.Outcome) -> None:
    """Confirm a corrected red-flag or seriousness answer, with advice for a Yes."""
    phone = context.services.settings.study_contact_phone
    if outcome.advice:
        context.reply(advice_message(outcome.advice, phone, context.services.content.triage))
    if outcome.corrected_to is True:
        context.reply(_("Your answer is changed to Yes. The study team has been told."))
    else:
        context.reply(_("Your answer is changed to No. The study team sees both answers."))


async def typed_answer(update: Update, context: BotContext) -> None:
    """Text (or a photo, sticker …) in a private chat: an answer to the open
    question if there is one, else the usual "not understood"."""
    participant = context.participant
    current = (
        await questionnaire_sessions.current_progress(context.db, participant, context.now, env(context))
        if participant is not None
        else None
    )
    message = update.effective_message
    if participant is None or current is None or message is None or current.item is None:
        await common.not_understood(update, context)
        return
    _drop_old_keyboard(context, current)
    if message.text is None:
        lead = _("I cannot open photos, stickers, voice or other files. Please tap a button or type your answer.")
        send_question(context, current, lead)
        return
    asked = current.item
    outcome = await questionnaire_sessions.answer(
        context.db, participant, message.text, now=context.now, env=env(context), open_now=current.session
    )
    if outcome.error is None:
        _mark_typed_safety_answer(context, current, asked)
    if outcome.error is not None:
        if outcome.current is not None and outcome.current.item is not None:
            send_question(context, outcome.current, hint(outcome.error))
        else:
            context.reply(hint(outcome.error))
        return
    show(context, outcome)
