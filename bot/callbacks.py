"""Callback data, built and parsed in one place: every button's `prefix:fields`.

Telegram gives a button 64 bytes of data; ours are short ASCII fields separated
by ":". Each kind has a builder (used where the keyboard is made) and a parser
that returns None for anything malformed (an old or forged button), so that a
handler answers "This button is no longer active." instead of guessing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

LANG, DOSE, VISIT, STOP, SETTIME, ANSWER, START, ACK = "lang", "dose", "visit", "stop", "settime", "q", "qstart", "ack"
VISIT_DATE = "vdate"
MEDIA = "mrep"
DOSE_ANSWERS = ("taken", "later", "skipped")
VISIT_CHOICES = ("come", "other")
LANGUAGES = ("bn", "en")


def pattern(prefix: str) -> str:
    """The CallbackQueryHandler pattern of one kind of button."""
    return rf"^{prefix}:"


# ---------------------------------------------------------------- build


def lang(language: str, *, welcome: bool) -> str:
    """`lang:<bn|en>[:welcome]`: a language button (welcome: right after linking)."""
    return f"{LANG}:{language}" + (":welcome" if welcome else "")


def dose(reminder_id: int, answer: str) -> str:
    """`dose:<reminder row id>:<taken|later|skipped>`."""
    return f"{DOSE}:{reminder_id}:{answer}"


def visit(week: int, choice: str) -> str:
    """`visit:<week>:<come|other>`."""
    return f"{VISIT}:{week}:{choice}"


def stop(confirmed: bool) -> str:
    """`stop:yes` / `stop:no`: the /stop confirmation."""
    return f"{STOP}:{'yes' if confirmed else 'no'}"


def settime(hour: int, minute: int) -> str:
    """`settime:HHMM`: one of the two readings of an ambiguous /settime."""
    return f"{SETTIME}:{hour:02d}{minute:02d}"


def answer(session_id: int, item_id: str, value: str) -> str:
    """`q:<session>:<item>:<value>`: an old or foreign answer button can be recognised."""
    return f"{ANSWER}:{session_id}:{item_id}:{value}"


def start(instrument_id: str) -> str:
    """`qstart:<instrument>`: a reminder's button that opens a questionnaire."""
    return f"{START}:{instrument_id}"


def ack(alert_id: int) -> str:
    """`ack:<alert id>`: the Acknowledge button under an alert."""
    return f"{ACK}:{alert_id}"


def visit_date(study_id: str, week: int, on: str, confirmed: bool) -> str:
    """`vdate:<study id>:<week>:<YYYYMMDD>:<yes|no>`: the admin's answer to a visit date
    outside its window (a protocol deviation)."""
    return f"{VISIT_DATE}:{study_id}:{week}:{on.replace('-', '')}:{'yes' if confirmed else 'no'}"


def report_media(media_id: int) -> str:
    """`mrep:<media id>`: "Report a problem with this photo" under a file sent outside a report."""
    return f"{MEDIA}:{media_id}"


# ---------------------------------------------------------------- parse


@dataclass(frozen=True)
class LangPress:
    """A language button: which language, and whether it is the first choice."""

    language: str
    welcome: bool


@dataclass(frozen=True)
class AnswerPress:
    """An answer, Skip or Back button of a questionnaire session."""

    session_id: int
    item_id: str
    value: str


def parse_lang(data: str) -> LangPress | None:
    """`lang:…` → the language and the welcome flag (None: not a language we speak)."""
    parts = data.split(":")
    language = parts[1] if len(parts) > 1 and parts[1] in LANGUAGES else None
    if language is None:
        return None
    return LangPress(language, len(parts) > 2 and parts[2] == "welcome")


def parse_dose(data: str) -> tuple[int, str] | None:
    """`dose:…` → (reminder row id, answer)."""
    parts = data.split(":")
    if len(parts) != 3 or parts[2] not in DOSE_ANSWERS or not parts[1].isdigit():
        return None
    return int(parts[1]), parts[2]


def parse_visit(data: str) -> tuple[int, str] | None:
    """`visit:…` → (week, come|other)."""
    parts = data.split(":")
    if len(parts) != 3 or not parts[1].isdigit() or parts[2] not in VISIT_CHOICES:
        return None
    return int(parts[1]), parts[2]


def parse_stop(data: str) -> bool:
    """`stop:…` → whether the participant confirmed."""
    return data == stop(True)


def parse_settime(data: str) -> tuple[int, int] | None:
    """`settime:HHMM` → (hour, minute), None unless a real time of day."""
    raw = data.removeprefix(f"{SETTIME}:")
    if not raw.isdigit() or len(raw) != 4:
        return None
    hour, minute = int(raw[:2]), int(raw[2:])
    return (hour, minute) if hour <= 23 and minute <= 59 else None


def parse_answer(data: str) -> AnswerPress | None:
    """`q:…` → session, item and value."""
    parts = data.split(":", 3)
    if len(parts) != 4 or not parts[1].isdecimal():
        return None
    return AnswerPress(int(parts[1]), parts[2], parts[3])


def answer_value(data: str) -> str:
    """The value an answer button carries ("" when it is not one)."""
    return data.split(":", 3)[3] if data.count(":") >= 3 else ""


def parse_start(data: str) -> str:
    """`qstart:…` → the instrument id."""
    return data.partition(":")[2]


def ack_field(data: str) -> str:
    """`ack:…` → the alert id as typed (domain.acknowledgement.parse_alert_id reads it)."""
    return data.partition(":")[2]


@dataclass(frozen=True)
class VisitDatePress:
    """The admin's answer to an out-of-window visit date: which visit, which date, yes or no."""

    study_id: str
    week: int
    on: str  # ISO date
    confirmed: bool


def parse_visit_date(data: str) -> VisitDatePress | None:
    """`vdate:…` → study id, week, ISO date and the answer (None when malformed)."""
    parts = data.split(":")
    if len(parts) != 5 or not parts[2].isdigit() or parts[4] not in ("yes", "no"):
        return None
    day = parts[3]
    if len(day) != 8 or not day.isdigit():
        return None
    iso = f"{day[:4]}-{day[4:6]}-{day[6:]}"
    try:
        date.fromisoformat(iso)
    except ValueError:
        return None
    return VisitDatePress(parts[1], int(parts[2]), iso, parts[4] == "yes")


def parse_report_media(data: str) -> int | None:
    """`mrep:…` → the held file's id."""
    raw = data.partition(":")[2]
    return int(raw) if raw.isdecimal() else None
