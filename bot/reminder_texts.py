"""What reminders say and which buttons they carry, rendered at send time in the
participant's language (the stored payload is language-neutral). Callback data:
``dose:<reminder row id>:taken|later|skipped``, ``visit:<week>:come|other``,
``qstart:<instrument id>`` (started by the questionnaire handlers), ``stop:yes|no``,
``settime:HHMM`` (one reading of an ambiguous /settime)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot import callbacks
from bot.i18n import _, current_language, format_date, format_number, format_time, weekday_name
from bot.keyboards import Keyboard, keyboard
from domain.parsing import AmbiguousTime
from domain.questionnaires import Instrument
from scheduler.calendar import parse_weekday
from scheduler.planner import MessageKind
from scheduler.protocol import BilingualText, Protocol


def _regimen_text(protocol: Protocol, arm: str, regimen: str) -> tuple[str, str]:
    """(drug name, dose in words) from the protocol file, in the current language."""
    lang = current_language()
    for reg in protocol.arm(arm).regimens:
        if reg.id == regimen:
            return (reg.drug.bn if lang == "bn" else reg.drug.en), (reg.dose.bn if lang == "bn" else reg.dose.en)
    return regimen, ""


def _own_reminder(protocol: Protocol, arm: str, regimen: str) -> BilingualText | None:
    """The regimen's own reminder wording from the protocol file, if it has one."""
    return next((reg.reminder for reg in protocol.arm(arm).regimens if reg.id == regimen), None)


def drug_name(protocol: Protocol, arm: str, regimen: str) -> str:
    """The drug's name in the current language (for /schedule)."""
    return _regimen_text(protocol, arm, regimen)[0]


def dose_text(kind: str, payload: Mapping[str, Any], protocol: Protocol, arm: str) -> str:
    """A dose reminder, its 2-hour follow-up or its "remind me later" repeat."""
    regimen = str(payload.get("regimen", ""))
    drug, dose = _regimen_text(protocol, arm, regimen)
    own_words = _own_reminder(protocol, arm, regimen)
    if own_words is not None and payload.get("weekday"):
        # The regimen's reviewed reminder from the protocol file (e.g. weekly methotrexate).
        amount = payload.get("dose_amount", 0)
        body = own_words.get(current_language()).format(
            weekday=weekday_name(parse_weekday(str(payload["weekday"]))),
            amount=format_number(int(float(str(amount)))),
        )
    elif payload.get("frequency") == "weekly" and payload.get("weekday"):
        # The participant's own day, not the protocol's default rule ("the day after methotrexate").
        body = _("Today is {weekday}, your {drug} day. Time for your medicine: {drug}, {dose}.").format(
            weekday=weekday_name(parse_weekday(str(payload["weekday"]))), drug=drug, dose=dose
        )
    else:
        body = _("Time for your medicine: {drug}, {dose}.").format(drug=drug, dose=dose)
    question = _("Did you take it? Please press a button.")
    if kind == MessageKind.DOSE_FOLLOWUP.value:
        return _("A gentle reminder, in case you missed my earlier message.") + "\n" + body + "\n" + question
    if kind == MessageKind.DOSE_REMIND_LATER.value:
        return _("Here is the reminder you asked for.") + "\n" + body + "\n" + question
    return body + "\n" + question


def dose_buttons(reminder_id: int) -> Keyboard:
    """Taken / Remind me later / Skipped, one per row (big targets for stiff fingers)."""
    return keyboard(
        [
            [(_("✅ Taken"), callbacks.dose(reminder_id, "taken"))],
            [(_("⏰ Remind me later"), callbacks.dose(reminder_id, "later"))],
            [(_("Skipped"), callbacks.dose(reminder_id, "skipped"))],
        ]
    )


def visit_text(payload: Mapping[str, Any], protocol: Protocol) -> str:
    """A visit reminder: 7 days before, the day before, or the morning of the visit."""
    week = int(payload["week"])
    visit = protocol.visit(week)
    name = visit.name.bn if current_language() == "bn" else visit.name.en
    when = format_date(date.fromisoformat(str(payload["visit_date"])), "long")
    offset = int(payload.get("offset_days", 0))
    if offset == 0:
        head = _("Today is your {visit} ({date}), at the {department}, {hospital} ({site}).")
    elif offset == -1:
        head = _("Tomorrow is your {visit} ({date}), at the {department}, {hospital} ({site}).")
    else:
        head = _("Your {visit} is in one week: {date}, at the {department}, {hospital} ({site}).")
    site = protocol.site
    lang = current_language()
    return (
        head.format(
            visit=name,
            date=when,
            department=site.department.get(lang),
            hospital=site.hospital.get(lang),
            site=site.name.get(lang),
        )
        + "\n"
        + _("Will you come? If this day is not possible, press the second button and the study team will call you.")
    )


def visit_date_notice(payload: Mapping[str, Any], protocol: Protocol) -> str:
    """The visit date agreed with the study team (after "I need another date")."""
    visit = protocol.visit(int(payload["week"]))
    lang = current_language()
    day = date.fromisoformat(str(payload["visit_date"]))
    site = protocol.site
    return _(
        "Your {visit} is now on {date}, at the {department}, {hospital} ({site}), as agreed with "
        "the study team. I will remind you before the day."
    ).format(
        visit=visit.name.bn if lang == "bn" else visit.name.en,
        date=format_date(day, "long"),
        department=site.department.get(lang),
        hospital=site.hospital.get(lang),
        site=site.name.get(lang),
    )


def visit_buttons(week: int) -> Keyboard:
    """I will come / I need another date."""
    return keyboard(
        [
            [(_("I will come"), callbacks.visit(week, "come"))],
            [(_("I need another date"), callbacks.visit(week, "other"))],
        ]
    )


def invitation_text(kind: str, payload: Mapping[str, Any], instruments: Mapping[str, Instrument]) -> str:
    """The weekly check-in or a visit questionnaire: an invitation with one Start button."""
    instrument = instruments.get(str(payload.get("instrument", "")))
    title = instrument.title.get(current_language()) if instrument is not None else ""
    if kind == MessageKind.CHECKIN_PROMPT.value:
        return _(
            "Time for your weekly check-in: a few short questions about how you felt in the last 7 days. "
            "Press Start when you are ready."
        )
    return _("Please answer a short questionnaire: {title}. Press Start when you are ready.").format(title=title)


def invitation_buttons(instrument_id: str) -> Keyboard:
    """One Start button that the questionnaire handlers pick up."""
    return keyboard([[(_("Start"), callbacks.start(instrument_id))]])


def time_choice_buttons(choice: AmbiguousTime) -> InlineKeyboardMarkup:
    """The two readings of a time typed without the part of the day, one per row."""
    return InlineKeyboardMarkup(
        [
            [InlineKeyboardButton(format_time(at), callback_data=callbacks.settime(at.hour, at.minute))]
            for at in (choice.first, choice.second)
        ]
    )


def stop_confirm_buttons() -> InlineKeyboardMarkup:
    """/stop asks first: Yes, stop / No, keep them."""
    return InlineKeyboardMarkup(
        [
            [InlineKeyboardButton(_("Yes, stop all messages"), callback_data=callbacks.stop(True))],
            [InlineKeyboardButton(_("No, keep the reminders"), callback_data=callbacks.stop(False))],
        ]
    )
