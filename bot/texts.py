"""Participant-facing texts that are built from parts (regimen, help, refusals).
Every string goes through the gettext catalog; numbers and dates are localised."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from bot.i18n import N_, _, current_language, format_date, use_locale, weekday_name
from core.digits import phone_as_dialled
from models import Participant
from scheduler.planner import resolve_dose_weekdays, visit_schedule
from scheduler.protocol import Protocol, Regimen
from scheduler.store import plan_input


def bilingual(render: Callable[[], str], phone: str = "") -> str:
    """The same message in Bangla, then English: for people whose language we
    do not know yet (before enrollment). The study phone, when given, once at the
    end under a label in both languages (one number per message)."""
    with use_locale("bn"):
        bn = render()
        bn_label = _("Study phone")
    with use_locale("en"):
        en = render()
        en_label = _("Study phone")
    text = f"{bn}\n\n{en}"
    number = phone_as_dialled(phone)
    return f"{text}\n\n{bn_label} / {en_label}: {number}" if number else text


def with_contact(text: str, phone: str) -> str:
    """Add the study phone line, when one is configured and the text does not
    already give it: the number appears once per message, as dialled."""
    number = phone_as_dialled(phone)
    if not number or number in text:
        return text
    return text + "\n\n" + _("Study phone: {phone}").format(phone=number)


def site_names(protocol: Protocol) -> dict[str, str]:
    """The institution, department and everyday hospital name from the protocol
    file, in the current language, for texts that name the place."""
    site, condition = protocol.site, protocol.condition
    lang = current_language()
    return {
        "site": site.name.get(lang),
        "department": site.department.get(lang),
        "hospital": site.hospital.get(lang),
        "condition": condition.name.get(lang),
        "condition_explained": condition.explained.get(lang),
    }


def regimen(participant: Participant, protocol: Protocol) -> str:
    """The participant's medicines in plain words, for the welcome and /help: each
    regimen's reviewed wording from the protocol file (``instructions``), or its name
    and dose from the file when it has none."""
    regimens = protocol.arm(participant.arm).regimens
    # The days the planner uses for this participant (their own, or the protocol's rule).
    days = resolve_dose_weekdays(plan_input(participant, [], protocol), protocol)
    lang = current_language()
    return "\n".join(_regimen_line(reg, days, lang) for reg in regimens)


def _regimen_line(reg: Regimen, days: Mapping[str, int], lang: str) -> str:
    weekday = weekday_name(days[reg.id]) if reg.id in days else ""
    if reg.instructions is not None:
        return reg.instructions.get(lang).format(weekday=weekday)
    drug, dose = reg.drug.get(lang), reg.dose.get(lang)
    if reg.id in days:
        return _("{drug}: {dose}, every {weekday}.").format(weekday=weekday, drug=drug, dose=dose)
    if reg.frequency == "daily":
        return _("{drug}: {dose}, every day.").format(drug=drug, dose=dose)
    return _("{drug}: {dose}, once a week.").format(drug=drug, dose=dose)


def visit_lines(participant: Participant, protocol: Protocol) -> list[str]:
    """The participant's clinic visits after the first (the protocol's) with their dates, for the welcome."""
    lang = "bn" if participant.language.value == "bn" else "en"
    lines = [_("Your clinic visits:")]
    for vd in visit_schedule(plan_input(participant, [], protocol), protocol):
        if vd.week == 0:
            continue
        name = protocol.visit(vd.week).name
        lines.append(
            "• "
            + "{visit}: {date}".format(visit=name.bn if lang == "bn" else name.en, date=format_date(vd.date, "long"))
        )
    return lines


def not_enrolled(phone: str, protocol: Protocol) -> str:
    """For someone the bot does not know: what it is and how to join. Bilingual."""
    return bilingual(
        lambda: _(
            "Hello! This bot is only for people taking part in the {condition_explained} "
            "study at {hospital} ({site}). To use it you need a personal link "
            "or code from the study team. If you are in the study, please ask them for it."
        ).format_map(site_names(protocol)),
        phone,
    )


REFUSALS = {
    "unknown": N_("This code is not right. Please check it, or ask the study team for a new one."),
    "expired": N_("This code is too old and no longer works. Please ask the study team for a new one."),
    "used": N_(
        "This code has already been used. Each code works only once. "
        "If you need to link a new phone, please contact the study team."
    ),
    "withdrawn": N_("This code can no longer be used. Please contact the study team."),
    "revoked": N_("This code can no longer be used. Please contact the study team."),
    "too_many_attempts": N_("Too many wrong codes. Please wait one hour and try again, or contact the study team."),
}


def help_text(participant: Participant, phone: str, protocol: Protocol) -> str:
    """/help: what the bot does, the commands, the study phone."""
    lines = [
        _("I am the helper of the {condition} study at {hospital} ({site}). Your study number is {study_id}.").format(
            study_id=participant.study_id, **site_names(protocol)
        ),
        "",
        _("Your medicine:"),
        regimen(participant, protocol),
        "",
        _("What you can send me:"),
        _("/checkin: answer this week's health questions"),
        _("/report: tell us about a health problem, at any time"),
        _("/cancel: stop the questions you are answering"),
        _("/language: change the language (বাংলা / English)"),
        _("/schedule: your next clinic visits and medicine reminders"),
        _("/settime 9:30 pm: change the time of your medicine reminder"),
        _("/stop: stop all reminders"),
        _("/help: this message"),
    ]
    text = "\n".join(lines)
    text = with_contact(text, phone)
    return text + "\n\n" + _("If you feel very unwell, go to the nearest hospital emergency department now.")


def welcome(participant: Participant, phone: str, protocol: Protocol) -> str:
    """The first message in the chosen language, right after linking."""
    lines = [
        _("Welcome! Thank you for taking part in the {condition} study at {hospital} ({site}).").format_map(
            site_names(protocol)
        ),
        _("Your study number is {study_id}.").format(study_id=participant.study_id),
        "",
        _("Your medicine:"),
        regimen(participant, protocol),
        "",
        *visit_lines(participant, protocol),
        "",
        _("I will remind you of your medicines and clinic visits, and ask each week how you feel."),
        _("Send /help at any time to see what I can do."),
    ]
    return with_contact("\n".join(lines), phone)
