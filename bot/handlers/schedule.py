"""Participant side of reminders: /schedule, /settime, /stop, and the dose and visit buttons."""

from __future__ import annotations

from datetime import date, time

from telegram import Update

from bot import callbacks, reminder_texts
from bot.context import BotContext
from bot.handlers import common
from bot.i18n import _, format_date, format_time
from bot.texts import not_enrolled, with_contact
from domain import doses, participant_state, status_report, visits
from domain.doses import DoseOutcome
from domain.parsing import AmbiguousTime, ParseError, read_time
from domain.triage import advice_text
from domain.visits import VisitChoice
from models import DoseAnswer, Participant, ParticipantStatus, VisitStatus
from scheduler import store
from scheduler.calendar import local_date, to_local
from scheduler.planner import MessageKind


def _usable(context: BotContext) -> Participant | None:
    """The linked, not withdrawn participant; otherwise answer and return None."""
    participant = context.participant
    if participant is None:
        context.reply(not_enrolled(context.services.settings.study_contact_phone, context.services.protocol))
        return None
    if participant.status == ParticipantStatus.WITHDRAWN:
        context.reply(_("You have left the study, so I send no more reminders. Thank you for your help."))
        return None
    return participant


async def schedule(update: Update, context: BotContext) -> None:
    """/schedule: the next visits and doses, in the participant's language."""
    participant = _usable(context)
    if participant is None:
        return
    protocol = context.services.protocol
    today = local_date(context.now, protocol.tz)
    clinic_visits = await store.ensure_visits(context.db, participant, protocol)
    lines = [_("Your clinic visits:")]
    upcoming = [v for v in clinic_visits if v.week > 0 and v.status is VisitStatus.PLANNED and v.open_until >= today]
    for visit in upcoming:
        name = protocol.visit(visit.week)
        line = "{visit}: {date}".format(
            visit=name.name.bn if participant.language.value == "bn" else name.name.en,
            date=format_date(visit.due_date, "long"),
        )
        if visit.agreed_date is not None:
            line += " " + _("(the date agreed with the study team)")
        lines.append("• " + line)
    if not upcoming:
        lines.append("• " + _("No more visits are planned."))
    lines.append("")
    lines.append(_("Your next medicine reminders:"))
    reminders = await status_report.planned_rows(context.db, participant.id, MessageKind.DOSE_REMINDER, limit=4)
    for row in reminders:
        local = to_local(row.due_at, protocol.tz)
        drug = reminder_texts.drug_name(protocol, participant.arm, str(row.payload.get("regimen", "")))
        lines.append(
            "• "
            + _("{date} at {time}: {drug}").format(
                date=format_date(date.fromisoformat(str(row.payload["date"])), "long"),
                time=format_time(local),
                drug=drug,
            )
        )
    if not reminders:
        lines.append("• " + _("No reminders are planned."))
    if participant.status == ParticipantStatus.PAUSED:
        lines.append("")
        lines.append(_("Your reminders are paused. The study team can restart them."))
    lines.append("")
    lines.append(_("To change your reminder time, send /settime and the time, for example /settime 9:30 pm"))
    context.reply("\n".join(lines))


async def settime(update: Update, context: BotContext) -> None:
    """/settime TIME: the participant's daily medicine reminder time, typed as
    people say it ("রাত ৯:৩০", "9:30 pm", "21:30"); "৯:৩০" alone is asked back."""
    participant = _usable(context)
    if participant is None:
        return
    example = _("Please write the time after the command, for example: /settime 9:30 pm")
    if not context.args:
        context.reply(example)
        return
    try:
        at = read_time(" ".join(context.args))
    except ParseError:
        context.reply(_("I could not read that time.") + " " + example)
        return
    if isinstance(at, AmbiguousTime):
        context.reply(_("Which time do you mean? Please press a button."), reminder_texts.time_choice_buttons(at))
        return
    await _set_time(context, participant, at)


async def _set_time(context: BotContext, participant: Participant, at: time) -> None:
    """Store the reminder time, replan the doses and say the time back as people say it."""
    await participant_state.set_reminder_time(
        context.db, participant, at, now=context.now, protocol=context.services.protocol
    )
    context.reply(_("Done. I will remind you about your medicine at {time}.").format(time=format_time(at)))


async def settime_button(update: Update, context: BotContext) -> None:
    """One of the two buttons under an ambiguous /settime (morning or night)."""
    query = update.callback_query
    assert query is not None and query.data is not None
    participant = common.button_participant(context)
    if participant is None:
        return
    pressed = callbacks.parse_settime(query.data)
    if pressed is None:
        common.button_no_longer_active(context)
        return
    hour, minute = pressed
    context.answer(_("Saved"))
    context.edit_markup(None)
    await _set_time(context, participant, time(hour, minute))


async def stop(update: Update, context: BotContext) -> None:
    """/stop: ask to confirm before pausing everything."""
    participant = _usable(context)
    if participant is None:
        return
    context.reply(
        _("Do you want to stop all reminders and messages from this bot?"), reminder_texts.stop_confirm_buttons()
    )


async def stop_button(update: Update, context: BotContext) -> None:
    """The /stop confirmation buttons."""
    query = update.callback_query
    assert query is not None and query.data is not None
    participant = common.button_participant(context)
    if participant is None:
        return
    context.edit_markup(None)
    phone = context.services.settings.study_contact_phone
    if not callbacks.parse_stop(query.data):
        context.answer(_("Saved"))
        context.reply(_("Good. Your reminders continue as before."))
        return
    await participant_state.stop_by_participant(
        context.db,
        participant,
        now=context.now,
        protocol=context.services.protocol,
        coordinator_chats=context.services.settings.coordinator_chat_ids,
    )
    context.answer(_("Saved"))
    context.reply(
        with_contact(
            _(
                "All reminders are stopped. The study team has been told and may call you. "
                "If you want the reminders again, please ask the study team to restart them."
            ),
            phone,
        )
    )


_DOSE_ANSWERS = {"taken": DoseAnswer.TAKEN, "later": DoseAnswer.LATER, "skipped": DoseAnswer.SKIPPED}


async def dose_button(update: Update, context: BotContext) -> None:
    """Taken / Remind me later / Skipped under a dose reminder."""
    query = update.callback_query
    assert query is not None and query.data is not None
    participant = common.button_participant(context, withdrawn_too=True)
    if participant is None:
        return
    pressed = callbacks.parse_dose(query.data)
    if pressed is None:
        common.button_no_longer_active(context)
        return
    reminder_id, answer = pressed
    services = context.services
    result = await doses.answer_dose(
        context.db,
        participant,
        reminder_id,
        _DOSE_ANSWERS[answer],
        now=context.now,
        protocol=services.protocol,
        coordinator_chats=services.settings.coordinator_chat_ids,
    )
    outcome = result.outcome
    if outcome is DoseOutcome.UNKNOWN:
        common.button_no_longer_active(context)
        return
    if outcome is DoseOutcome.ALREADY:
        context.answer(_("Already saved. Thank you."))
        context.edit_markup(None)
        return
    if outcome is DoseOutcome.CLOSED:
        context.answer(_("This reminder has closed. If you have a question, please call the study team."))
        context.edit_markup(None)
        return
    context.answer(_("Saved"))
    context.edit_markup(None)
    if outcome is DoseOutcome.LATER:
        assert result.later_at is not None
        local = to_local(result.later_at, services.protocol.tz)
        context.reply(_("All right. I will remind you again at {time}.").format(time=format_time(local)))
    elif outcome is DoseOutcome.TOO_LATE_FOR_LATER:
        context.reply(
            _("It is too late today for another reminder. If you have not taken today's dose, do not take it later.")
        )
    elif outcome is DoseOutcome.TAKEN:
        context.reply(_("Thank you. I have noted that you took your medicine."))
    elif outcome is DoseOutcome.SKIPPED:
        context.reply(_("Noted: you did not take this dose. Do not take a double dose to make up for it."))
    elif outcome is DoseOutcome.DOUBLE_DOSE:
        assert result.advice is not None
        phone = services.settings.study_contact_phone
        context.reply(advice_text(result.advice, participant.language.value, phone, services.content.triage))


async def visit_button(update: Update, context: BotContext) -> None:
    """I will come / I need another date under a visit reminder."""
    query = update.callback_query
    assert query is not None and query.data is not None
    participant = common.button_participant(context, withdrawn_too=True)
    if participant is None:
        return
    pressed = callbacks.parse_visit(query.data)
    if pressed is None:
        common.button_no_longer_active(context)
        return
    week, choice = pressed
    visit = await visits.answer_visit(
        context.db,
        participant,
        week,
        VisitChoice(choice),
        now=context.now,
        protocol=context.services.protocol,
        coordinator_chats=context.services.settings.coordinator_chat_ids,
    )
    if visit is None:
        common.button_no_longer_active(context)
        return
    context.answer(_("Saved"))
    context.edit_markup(None)
    if choice == "come":
        context.reply(_("Thank you. See you at the clinic."))
    else:
        context.reply(
            with_contact(
                _("Thank you for telling us. The study team will call you to agree another date."),
                context.services.settings.study_contact_phone,
            )
        )
