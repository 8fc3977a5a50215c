"""Parsers for what people type: study ids, arms, dates, weekdays, times.

Pure functions, exhaustively unit-tested. Every one accepts Bengali digits
(participants' keyboards type them) and raises `ParseError` with an English
message for admins; participant-facing handlers map failures to translated text.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, time

from core.digits import to_ascii_digits
from domain.errors import DomainError
from scheduler import calendar


class ParseError(DomainError):
    """Text that does not say what it must."""


STUDY_ID_RE = re.compile(r"^[A-Z][A-Z0-9]{1,9}-[0-9]{1,6}$")


def normalize(text: str) -> str:
    """Trim, fold case and turn Bengali digits into ASCII ones."""
    return to_ascii_digits(text).strip().casefold()


def parse_study_id(text: str) -> str:
    """A study id such as BSM-001 (letters, a hyphen, digits), upper-cased."""
    value = to_ascii_digits(text).strip().upper()
    if not STUDY_ID_RE.match(value):
        raise ParseError(f"'{text[:40]}' is not a study id (expected letters-digits, e.g. BSM-001)")
    return value


def parse_arm(text: str, arms: tuple[str, ...]) -> str:
    """One of the protocol's arm ids (``tuple(protocol.arms)``), case-insensitive."""
    value = text.strip().upper()
    if value not in arms:
        raise ParseError(f"arm must be one of {', '.join(arms)} (got '{text[:20]}')")
    return value


_DATE_FORMS = (
    re.compile(r"^(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})$"),
    re.compile(r"^(?P<d>\d{1,2})[/.-](?P<m>\d{1,2})[/.-](?P<y>\d{4})$"),
)


def parse_date(text: str) -> date:
    """A calendar date: YYYY-MM-DD (preferred) or DD/MM/YYYY, DD-MM-YYYY, DD.MM.YYYY."""
    value = to_ascii_digits(text).strip()
    for form in _DATE_FORMS:
        match = form.match(value)
        if match:
            try:
                return date(int(match["y"]), int(match["m"]), int(match["d"]))
            except ValueError:
                break
    raise ParseError(f"'{text[:40]}' is not a date (use YYYY-MM-DD, e.g. 2026-10-25)")


def parse_weekday(text: str) -> int:
    """A weekday name (English or Bangla, short or long) → 0 = Monday … 6 = Sunday."""
    try:
        return calendar.parse_weekday(normalize(text).rstrip("."))
    except ValueError:
        pass
    raise ParseError(f"'{text[:20]}' is not a weekday (use mon, tue, wed, thu, fri, sat or sun)")


def parse_language(text: str) -> str:
    """bn or en (also 'bangla', 'bengali', 'english', 'বাংলা')."""
    value = normalize(text)
    if value in ("bn", "bangla", "bengali", "বাংলা"):
        return "bn"
    if value in ("en", "english", "ইংরেজি"):
        return "en"
    raise ParseError(f"language must be bn or en (got '{text[:20]}')")


_TIME_RE = re.compile(r"^(?P<h>\d{1,2})[:.](?P<m>\d{2})$")


def parse_time(text: str) -> time:
    """A 24-hour clock time HH:MM (also H.MM), Bengali digits accepted."""
    match = _TIME_RE.match(to_ascii_digits(text).strip())
    if match:
        hour, minute = int(match["h"]), int(match["m"])
        if 0 <= hour <= 23 and 0 <= minute <= 59:
            return time(hour, minute)
    raise ParseError(f"'{text[:20]}' is not a time (use HH:MM, 24-hour, e.g. 21:30)")


# ---------------------------------------------------------------- times as people type them


@dataclass(frozen=True)
class AmbiguousTime:
    """A clock time typed without the part of the day ("৯:৩০"): which of the
    two it is must be asked, never guessed (09:30 and 21:30 are both a dose time)."""

    first: time  # the earlier reading (morning, or noon for 12)
    second: time  # the later reading (evening/night, or midnight for 12)


# The part-of-day words, Bangla (with their locative forms) and English, and
# how each turns a 12-hour hour (1-12) into a 24-hour one.
def _am(hour: int) -> int:
    return hour % 12


def _pm(hour: int) -> int:
    return hour % 12 + 12


def _midday(hour: int) -> int:
    """দুপুর: 12 is noon, 1-5 are afternoon, 11 is late morning."""
    return 12 if hour == 12 else hour + 12 if hour <= 5 else hour


def _night(hour: int) -> int:
    """রাত: 12 is midnight, 1-4 after midnight ("রাত ২টা"), 5-11 the evening."""
    return 0 if hour == 12 else hour if hour <= 4 else hour + 12


_PARTS: dict[str, Callable[[int], int]] = {}
for _words, _rule in (
    (("ভোর", "ভোরে"), _am),
    (("সকাল", "সকালে"), _am),
    (("দুপুর", "দুপুরে"), _midday),
    (("বিকাল", "বিকালে", "বিকেল", "বিকেলে"), _pm),
    (("সন্ধ্যা", "সন্ধ্যায়", "সন্ধ্যে", "সন্ধ্যেয়"), _pm),
    (("রাত", "রাতে", "রাত্রে", "রাত্রি"), _night),
    (("am", "a.m.", "a.m"), _am),
    (("pm", "p.m.", "p.m"), _pm),
):
    for _w in _words:
        _PARTS[unicodedata.normalize("NFC", _w)] = _rule

# "সাড়ে ৯টা" = 9:30, "সোয়া ৯টা" = 9:15, "পৌনে ১০টা" = 9:45.
_QUARTERS = {unicodedata.normalize("NFC", k): v for k, v in {"সাড়ে": (0, 30), "সোয়া": (0, 15), "পৌনে": (-1, 45)}.items()}

_CLOCK_RE = re.compile(unicodedata.normalize("NFC", r"^(?P<h>\d{1,2})(?:[:.](?P<m>\d{2}))?\s*(?:টা|টায়|টার|টে)?$"))


def _split_words(text: str) -> list[str]:
    """Words of a typed time: digits ASCII, lower case, the part-of-day word
    split off even when typed without a space ("9pm", "৯টায়")."""
    value = unicodedata.normalize("NFC", to_ascii_digits(text)).strip().casefold().rstrip("।")
    value = re.sub(r"(\d)\s*(a\.?m\.?|p\.?m\.?)$", r"\1 \2", value)
    return value.split()


def read_time(text: str) -> time | AmbiguousTime:
    """A clock time as a participant types it, in Bangla or English.

    With a part of the day before or after ("রাত ৯:৩০", "৯:৩০ রাতে",
    "সকাল ৮টা", "9:30 pm", "সাড়ে ৯টা রাতে") it is that time. Without one, an
    hour of 13-23, an hour written with two digits ("09:30", "21:30",
    "২১:৩০") or 0 is the 24-hour clock; an hour of 1-12 ("৯:৩০", "9", "৯টা")
    is ambiguous and returned as such, for the caller to ask.
    """
    words = _split_words(text)
    part = None
    for index in (0, -1):
        if len(words) > 1 and words[index] in _PARTS:
            part = _PARTS[words.pop(index)]
            break
    shift = None
    if len(words) > 1 and words[0] in _QUARTERS:
        shift = _QUARTERS[words.pop(0)]
    match = _CLOCK_RE.match(" ".join(words)) if len(words) == 1 else None
    if not match:
        raise ParseError(f"'{text[:30]}' is not a time (e.g. 21:30, 9:30 pm, রাত ৯:৩০)")
    hour, minute = int(match["h"]), int(match["m"] or 0)
    if shift is not None:
        if match["m"] is not None or not 1 <= hour <= 12:
            raise ParseError(f"'{text[:30]}' is not a time")
        hour, minute = (hour + shift[0] - 1) % 12 + 1, shift[1]
    if minute > 59 or hour > 23:
        raise ParseError(f"'{text[:30]}' is not a time (hours 0-23, minutes 0-59)")
    if part is not None:
        if hour == 0 or hour > 12:
            # "রাত ২১:৩০" is 21:30; "সকাল ২১:৩০" says two different things.
            if part(hour % 12 or 12) != hour:
                raise ParseError(f"'{text[:30]}': the part of the day does not match the 24-hour time")
            return time(hour, minute)
        return time(part(hour), minute)
    if hour == 0 or hour > 12 or (len(match["h"]) == 2 and match["h"].startswith("0")):
        return time(hour, minute)
    return AmbiguousTime(first=time(hour, minute), second=time(0 if hour == 12 else hour + 12, minute))
